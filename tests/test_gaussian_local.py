"""The one-process path of the Gaussian grid: torch search and trec_eval measures equal FAISS's and
pytrec_eval's; training in one process; bench/gaussian_local.py end to end with Ray, FAISS and pytrec_eval
not importable (as on a GPU image), its JSON read by bench/gaussian_table.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ragcun.eval.in_process import exact_search, mean_metrics, per_query_metrics

from .conftest import REPO, SAMPLE_DOCS

BLOCKED = """
import builtins, runpy, sys
real = builtins.__import__
def guard(name, *args, **kwargs):
    if name.split(".")[0] in ("ray", "faiss", "pytrec_eval"):
        raise ImportError(f"{name} is not on a GPU image")
    return real(name, *args, **kwargs)
builtins.__import__ = guard
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.parametrize("distance", ["l2", "ip", "cosine"])
def test_torch_search_equals_faiss(distance):
    from ragcun.index.faiss_index import exact_search as faiss_search

    rng = np.random.default_rng(0)
    corpus, queries = rng.normal(size=(500, 16)).astype(np.float32), rng.normal(size=(40, 16)).astype(np.float32)
    ids = exact_search(corpus, queries, 10, distance)
    _, expected = faiss_search(corpus, queries, 10, distance)
    assert np.array_equal(ids, expected)


def test_measures_equal_pytrec_eval():
    from ragcun.eval.metrics import compute_metrics

    rng = np.random.default_rng(1)
    docs = [f"d{i}" for i in range(60)]
    qrels = {f"q{q}": {d: int(rng.integers(0, 3)) for d in rng.choice(docs, 8, replace=False)} for q in range(30)}
    qrels["q_none"] = {"d1": 0}  # no relevant document: not counted, as in trec_eval
    ranked = {q: list(rng.choice(docs, 100 if q != "q3" else 5, replace=True).tolist()) for q in qrels}
    ranked = {q: list(dict.fromkeys(r)) for q, r in ranked.items()}
    run = {q: {d: float(len(r) - i) for i, d in enumerate(r)} for q, r in ranked.items()}
    ours = mean_metrics(per_query_metrics(qrels, ranked, k_values=(10, 20)))
    theirs = compute_metrics(qrels, run, k_values=(10, 20))
    for name in ("ndcg@10", "recall@10", "recall@20", "num_queries"):
        assert ours[name] == pytest.approx(theirs[name], abs=1e-9), name


def test_gaussian_local_trains_and_evaluates_without_ray_faiss_or_pytrec_eval(tiny_bert_dir, tiny_triplets,
                                                                              tmp_path):
    from ragcun.data.retrieval_sets import RetrievalSet, write_test_eval

    train, _ = tiny_triplets
    test_eval = write_test_eval(RetrievalSet([f"d{i}" for i in range(6)], SAMPLE_DOCS, ["q0", "q1"],
                                             ["python language", "cats sleep"], {"q0": {"d0": 1}, "q1": {"d1": 1}}),
                                tmp_path / "test_eval.json")
    results = tmp_path / "gaussian"
    out = results / "gauss_local_iso0.1_tau0.5_e1_s3.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKED, str(REPO / "bench" / "gaussian_local.py"), "--train_data", str(train),
         "--test_data", str(test_eval), "--base_model", tiny_bert_dir, "--output_dim", "0", "--head_init", "scale",
         "--learn_scale", "--distance_scale", "batch", "--temperature", "0.5", "--lambda_isotropy", "0.1",
         "--lambda_variance", "0", "--epochs", "1", "--batch_size", "8", "--mini_batch_size", "4",
         "--warmup_steps", "1", "--num_slices", "32", "--seed", "3", "--device", "cpu", "--output_file", str(out)],
        capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert [v["distance"] for v in result["variants"]] == ["l2", "cosine"]
    assert len(result["training_log"]) == 6 and "sigreg" in result["training_log"][0]  # 48 triplets / 8
    for variant in result["variants"]:
        per_query = variant["per_query"]["ndcg@10"]
        assert np.mean(list(per_query.values())) == pytest.approx(variant["metrics"]["ndcg@10"], abs=1e-6)
        assert variant["isotropy"]["epps_pulley"] > 0
    table = subprocess.run([sys.executable, str(REPO / "bench" / "gaussian_table.py"), "--results", str(results),
                            "--output", str(tmp_path / "t.json"), "--plot", str(tmp_path / "t.png")],
                           capture_output=True, text=True, cwd=REPO)
    assert table.returncode == 0 and "| scifact | gauss_local_iso0.1_tau0.5_e1 | (l2) | 1 |" in table.stdout
