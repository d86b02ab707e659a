#!/usr/bin/env python3
"""The Gaussian recipe's table: every evaluation JSON in bench/results/gaussian/ (jobs/evaluate.py output of
bench/scifact_gaussian.sh), one row per dataset, recipe and ranking, averaged over the seeds that ran it.

Files are named ``<run>.json`` (SciFact test) or ``<run>_<set>.json`` (medline, cacm, npl), runs
``gauss_<init>_iso<λ>_tau<τ>_e<epochs>_s<seed>``; ``baselines_<set>.json`` holds the untrained model and BM25.
Each trained row's p-value is the paired sign-flip test (ragcun.eval.significance) of its per-query nDCG@10
against the same recipe at λ_iso 0, paired by seed and averaged over the seeds both ran, then over queries.
Writes the rows as JSON and, for SciFact, a plot of nDCG@10 against the Epps–Pulley statistic.

    python bench/gaussian_table.py [--results bench/results/gaussian] [--output bench/results/gaussian_table.json]
    python bench/gaussian_table.py --results bench/results/gaussian_opq --output bench/results/gaussian_opq_table.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ragcun.data.io import write_json  # noqa: E402
from ragcun.eval.report import plot_frontier_points  # noqa: E402
from ragcun.eval.significance import paired_differences, sign_flip_p_value  # noqa: E402

OUT_OF_DOMAIN = ("medline", "cacm", "npl")
COMPRESSED = ("int8", "binary", "binary-hamming", "ivfpq32", "opq-ivfpq32")
SEED = re.compile(r"_s(\d+)$")
LAMBDA = re.compile(r"_iso([0-9.]+)_")


def dataset_and_run(stem: str) -> tuple[str, str]:
    for name in OUT_OF_DOMAIN:
        if stem.endswith(f"_{name}"):
            return name, stem[: -len(name) - 1]
    if stem.startswith("baselines_"):
        return stem[len("baselines_"):], stem
    return "scifact", stem


def read_rows(results: Path) -> list[dict]:
    """One row per (file, variant): its dataset, recipe (the run name without its seed), seed and figures."""
    rows = []
    for path in sorted(results.glob("*.json")):
        data = json.loads(path.read_text())
        dataset, run = dataset_and_run(path.stem)
        seed = SEED.search(run)
        recipe = SEED.sub("", run)
        for variant in data.get("variants", []):
            # The variant's name is the run's (the model) plus what evaluate added: " + rotation", " (cosine)".
            suffix = variant["name"][len(run):] if variant["name"].startswith(run) else " " + variant["name"]
            rows.append({
                "dataset": dataset, "recipe": recipe, "ranking": suffix.strip() or variant["distance"],
                "seed": int(seed.group(1)) if seed else None, "distance": variant["distance"],
                "ndcg@10": variant["metrics"]["ndcg@10"], "recall@10": variant["metrics"]["recall@10"],
                "epps_pulley": variant.get("isotropy", {}).get("epps_pulley"),
                "isoscore": variant.get("isotropy", {}).get("isoscore"),
                **{f"{c} ndcg@10": (variant.get("compression") or {}).get(c, {}).get("metrics", {}).get("ndcg@10")
                   for c in COMPRESSED},
                "per_query": variant.get("per_query", {}).get("ndcg@10"),
            })
    return rows


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def summarise(rows: list[dict]) -> list[dict]:
    """Rows of the same dataset, recipe and ranking averaged over seeds, with the p-value against λ_iso 0."""
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["dataset"], row["recipe"], row["ranking"])].append(row)
    table = []
    for (dataset, recipe, ranking), members in groups.items():
        members.sort(key=lambda r: r["seed"] or 0)
        entry = {"dataset": dataset, "recipe": recipe, "ranking": ranking,
                 "seeds": [m["seed"] for m in members if m["seed"] is not None],
                 "ndcg@10 per seed": [round(m["ndcg@10"], 4) for m in members]}
        for key in ("ndcg@10", "recall@10", "epps_pulley", "isoscore", *(f"{c} ndcg@10" for c in COMPRESSED)):
            entry[key] = _mean([m[key] for m in members])
        lam = LAMBDA.search(recipe + "_")
        entry["lambda_iso"] = float(lam.group(1)) if lam else None
        baseline = groups.get((dataset, LAMBDA.sub("_iso0_", recipe + "_")[:-1], ranking)) if lam else None
        entry["vs_lambda0"] = None
        if baseline and entry["lambda_iso"] != 0:
            by_seed = {m["seed"]: m for m in baseline}
            pairs = [(m, by_seed[m["seed"]]) for m in members if m["seed"] in by_seed and m["per_query"]
                     and by_seed[m["seed"]]["per_query"]]
            if pairs:
                diffs = paired_differences([a["per_query"] for a, _ in pairs], [b["per_query"] for _, b in pairs])
                values = list(diffs.values())
                entry["vs_lambda0"] = {"seeds": [a["seed"] for a, _ in pairs], "queries": len(values),
                                       "mean_difference": float(np.mean(values)),
                                       "p_value": sign_flip_p_value(values)}
        table.append(entry)
    order = {name: i for i, name in enumerate(("scifact", *OUT_OF_DOMAIN))}
    return sorted(table, key=lambda e: (order.get(e["dataset"], 9), not e["recipe"].startswith("baselines"),
                                        e["recipe"].split("_iso")[0], e["lambda_iso"] or 0, e["ranking"]))


def markdown(table: list[dict]) -> str:
    def cell(value, digits=4):
        return "–" if value is None else f"{value:.{digits}f}"

    header = ["data", "model", "ranking", "seeds", "nDCG@10", "R@10", "Epps–Pulley", "IsoScore", "int8",
              "binary rescored", "binary", "PQ 32×", "OPQ + PQ 32×", "Δ vs λ 0 (p)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for e in table:
        versus = e["vs_lambda0"]
        lines.append("| " + " | ".join([
            e["dataset"], e["recipe"].replace("baselines_" + e["dataset"], "untrained / BM25"), e["ranking"],
            str(len(e["seeds"]) or "–"), cell(e["ndcg@10"]), cell(e["recall@10"]), cell(e["epps_pulley"], 1),
            cell(e["isoscore"], 3), cell(e["int8 ndcg@10"]), cell(e["binary ndcg@10"]),
            cell(e["binary-hamming ndcg@10"]), cell(e["ivfpq32 ndcg@10"]), cell(e["opq-ivfpq32 ndcg@10"]),
            "–" if versus is None else f"{versus['mean_difference']:+.4f} ({_p(versus['p_value'])})"]) + " |")
    return "\n".join(lines)


def _p(value: float) -> str:
    return f"p {value:.3f}" if value >= 0.001 else "p < 0.001"


def plot_frontier(table: list[dict], path: Path) -> bool:
    """SciFact, L2: nDCG@10 against Epps–Pulley (log), one point per recipe, the seeds' range as a bar."""
    points = [e for e in table if e["dataset"] == "scifact" and e["ranking"] == "(l2)" and e["epps_pulley"]
              and not e["recipe"].startswith("baselines")]
    if len(points) < 2:
        return False
    plot_frontier_points(
        [(f"{e['recipe']} ({len(e['seeds'])} seeds)", e["epps_pulley"], e["ndcg@10"],
          (min(e["ndcg@10 per seed"]), max(e["ndcg@10 per seed"]))) for e in points],
        path, ylabel="nDCG@10 (SciFact test, L2)", title="what Gaussianity costs: the λ_iso frontier")
    return True


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default="bench/results/gaussian")
    p.add_argument("--output", default="bench/results/gaussian_table.json")
    p.add_argument("--plot", default="bench/results/gaussian_frontier.png")
    a = p.parse_args()
    rows = read_rows(Path(a.results))
    if not rows:
        print(f"no evaluation JSON under {a.results}", file=sys.stderr)
        return 2
    table = summarise(rows)
    print(markdown(table))
    write_json(table, a.output)
    if plot_frontier(table, Path(a.plot)):
        print(f"\nplot: {a.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
