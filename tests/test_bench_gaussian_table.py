"""bench/gaussian_table.py: rows averaged over seeds, datasets from file names, p-values against λ_iso 0."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ragcun.eval.significance import sign_flip_p_value

from .conftest import REPO

SCRIPT = REPO / "bench" / "gaussian_table.py"


def variant(name: str, distance: str, per_query: dict[str, float], ep: float) -> dict:
    ndcg = sum(per_query.values()) / len(per_query)
    return {"name": name, "distance": distance, "metrics": {"ndcg@10": ndcg, "recall@10": 0.8},
            "isotropy": {"epps_pulley": ep, "isoscore": 0.3},
            "compression": {"int8": {"metrics": {"ndcg@10": ndcg - 0.01}}}, "per_query": {"ndcg@10": per_query}}


def write_run(results, run: str, per_query: dict[str, float], ep: float, dataset: str = "") -> None:
    name = f"{run}_{dataset}" if dataset else run
    (results / f"{name}.json").write_text(json.dumps({"variants": [
        variant(f"{run} (l2)", "l2", per_query, ep),
        variant(f"{run} (cosine)", "cosine", {q: v + 0.1 for q, v in per_query.items()}, ep)]}))


def test_seeds_averaged_and_paired_against_lambda0(tmp_path):
    results = tmp_path / "gaussian"
    results.mkdir()
    zero = {7: {"q1": 0.5, "q2": 0.6, "q3": 0.7}, 42: {"q1": 0.4, "q2": 0.6, "q3": 0.8}}
    one = {7: {"q1": 0.3, "q2": 0.5, "q3": 0.7}, 42: {"q1": 0.2, "q2": 0.3, "q3": 0.8}}
    for seed in (7, 42):
        write_run(results, f"gauss_scale_iso0_tau0.1_e2_s{seed}", zero[seed], 200.0)
        write_run(results, f"gauss_scale_iso1_tau0.1_e2_s{seed}", one[seed], 20.0)
    write_run(results, "gauss_scale_iso1_tau0.1_e2_s42", one[42], 30.0, dataset="cacm")
    output, plot = tmp_path / "table.json", tmp_path / "frontier.png"
    done = subprocess.run([sys.executable, str(SCRIPT), "--results", str(results), "--output", str(output),
                           "--plot", str(plot)], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    table = {(e["dataset"], e["recipe"], e["ranking"]): e for e in json.loads(output.read_text())}
    assert set(table) == {("scifact", f"gauss_scale_iso{lam}_tau0.1_e2", r) for lam in (0, 1)
                          for r in ("(l2)", "(cosine)")} | {("cacm", "gauss_scale_iso1_tau0.1_e2", "(l2)"),
                                                            ("cacm", "gauss_scale_iso1_tau0.1_e2", "(cosine)")}
    row = table[("scifact", "gauss_scale_iso1_tau0.1_e2", "(l2)")]
    assert row["seeds"] == [7, 42] and row["ndcg@10"] == pytest.approx((0.5 + 1.3 / 3) / 2)
    assert row["epps_pulley"] == pytest.approx(20.0) and row["int8 ndcg@10"] == pytest.approx(row["ndcg@10"] - 0.01)
    # Per query, the mean over seeds of λ1 − λ0: q1 −0.2, q2 −0.2, q3 0.0.
    versus = row["vs_lambda0"]
    assert versus["seeds"] == [7, 42] and versus["queries"] == 3
    assert versus["mean_difference"] == pytest.approx(-0.4 / 3)
    assert versus["p_value"] == pytest.approx(sign_flip_p_value([-0.2, -0.2, 0.0]))
    assert table[("scifact", "gauss_scale_iso0_tau0.1_e2", "(l2)")]["vs_lambda0"] is None
    assert table[("cacm", "gauss_scale_iso1_tau0.1_e2", "(l2)")]["vs_lambda0"] is None  # no λ 0 on cacm
    assert "| scifact | gauss_scale_iso1_tau0.1_e2 | (l2) | 2 |" in done.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_results_is_an_error(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--results", str(tmp_path)], capture_output=True, text=True,
                          cwd=REPO)
    assert done.returncode == 2 and "no evaluation JSON" in done.stderr


def test_paired_against_the_untrained_model_from_another_directory(tmp_path):
    results, baselines = tmp_path / "recipe", tmp_path / "gaussian"
    results.mkdir()
    baselines.mkdir()
    runs = {42: {"q1": 0.6, "q2": 0.2, "q3": 0.9}, 7: {"q1": 0.4, "q2": 0.4, "q3": 0.7}}
    for seed, per_query in runs.items():
        write_run(results, f"recipe_lr5e-5_e4_s{seed}", per_query, 900.0, dataset="npl")
    untrained = {"q1": 0.5, "q2": 0.5, "q3": 0.5}
    (baselines / "baselines_npl.json").write_text(json.dumps({"variants": [
        variant("base (l2)", "l2", untrained, 1000.0), variant("BM25", "bm25", untrained, 0.0)]}))
    (baselines / "gauss_scale_iso0_tau0.1_e2_s42.json").write_text("{}")  # not a baseline: not read
    output = tmp_path / "table.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--results", str(results), "--baselines", str(baselines),
                           "--output", str(output), "--plot", ""], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    table = {(e["dataset"], e["recipe"], e["ranking"]): e for e in json.loads(output.read_text())}
    assert set(table) == {("npl", "recipe_lr5e-5_e4", "(l2)"), ("npl", "recipe_lr5e-5_e4", "(cosine)"),
                          ("npl", "baselines", "base (l2)"), ("npl", "baselines", "BM25")}
    # Per query, the mean over the two seeds minus the one untrained run: q1 0.0, q2 −0.2, q3 +0.3.
    versus = table[("npl", "recipe_lr5e-5_e4", "(l2)")]["vs_untrained"]
    assert versus["seeds"] == [7, 42] and versus["queries"] == 3
    assert versus["mean_difference"] == pytest.approx(0.1 / 3)
    assert versus["p_value"] == pytest.approx(sign_flip_p_value([0.0, -0.2, 0.3]))
    assert table[("npl", "recipe_lr5e-5_e4", "(cosine)")]["vs_untrained"] is None  # no untrained cosine run
    assert table[("npl", "baselines", "base (l2)")]["vs_untrained"] is None
    assert "| npl | untrained / BM25 | BM25 |" in done.stdout
