#!/usr/bin/env python3
"""The raw-documents path against the untrained model: every evaluation JSON of bench/raw_documents.sh
(bench/results/raw_documents/raw_<set>_<method>_n<pairs>[_<tag>]_s<seed>.json), each ranking (L2, cosine) set
beside the untrained model ranked the same way on the same real test queries
(bench/results/gaussian/baselines_<set>.json), with the paired sign-flip p-value of the per-query nDCG@10
differences, and BM25; then the same settings averaged over the seeds that ran them (per query, the mean over
seeds of the difference, and its sign-flip p-value). Prints two markdown tables and writes both as JSON
({"runs": […], "mean_over_seeds": […]}).

    python bench/raw_documents_table.py [--results bench/results/raw_documents] [--baselines bench/results/gaussian]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ragcun.data.io import write_json  # noqa: E402
from ragcun.eval.significance import paired_differences, sign_flip_p_value  # noqa: E402

RUN = re.compile(r"^raw_(?P<set>[a-z]+)_(?P<method>[a-z]+)_n(?P<pairs>\d+)(?:_(?P<tag>.+?))?_s(?P<seed>\d+)$")
RANKING = re.compile(r"\((l2|cosine)\)$")


def variants_by_ranking(path: Path) -> dict[str, dict]:
    """The variants of one evaluation JSON keyed by ranking ("l2", "cosine", or the name: "BM25")."""
    out = {}
    for variant in json.loads(path.read_text())["variants"]:
        match = RANKING.search(variant["name"])
        out[match.group(1) if match else variant["name"]] = variant
    return out


def rows(results: Path, baselines: Path) -> list[dict]:
    table = []
    for path in sorted(results.glob("raw_*.json")):
        run = RUN.match(path.stem)
        if run is None:
            continue
        base_file = baselines / f"baselines_{run['set']}.json"
        base = variants_by_ranking(base_file) if base_file.is_file() else {}
        for ranking, variant in variants_by_ranking(path).items():
            untrained = base.get(ranking)
            row = {"dataset": run["set"], "method": run["method"], "pairs": int(run["pairs"]),
                   "variant": run["tag"] or "recipe", "seed": int(run["seed"]), "ranking": ranking,
                   "ndcg@10": variant["metrics"]["ndcg@10"], "recall@10": variant["metrics"]["recall@10"],
                   "untrained ndcg@10": untrained["metrics"]["ndcg@10"] if untrained else None,
                   "bm25 ndcg@10": base["BM25"]["metrics"]["ndcg@10"] if "BM25" in base else None,
                   "difference": None, "p_value": None}
            ours, theirs = variant.get("per_query", {}).get("ndcg@10"), (untrained or {}).get("per_query", {}).get("ndcg@10")
            if ours and theirs:
                row["difference"], row["p_value"] = _versus([ours], theirs)
                row["per_query"], row["untrained per_query"] = ours, theirs
            table.append(row)
    return table


def _versus(ours: list[dict[str, float]], untrained: dict[str, float]) -> tuple[float, float]:
    """Mean over queries of (the mean over runs of) ours − untrained, and its sign-flip p-value."""
    differences = list(paired_differences(ours, [untrained] * len(ours)).values())
    return float(np.mean(differences)), sign_flip_p_value(differences)


def mean_over_seeds(table: list[dict]) -> list[dict]:
    """One row per setting (data, pairs, training, ranking) with every seed that ran it."""
    groups: dict[tuple, list[dict]] = {}
    for row in table:
        key = (row["dataset"], row["method"], row["pairs"], row["variant"], row["ranking"])
        groups.setdefault(key, []).append(row)
    summary = []
    for (dataset, method, pairs, variant, ranking), members in groups.items():
        entry = {"dataset": dataset, "method": method, "pairs": pairs, "variant": variant, "ranking": ranking,
                 "seeds": [m["seed"] for m in members], "ndcg@10": float(np.mean([m["ndcg@10"] for m in members])),
                 "ndcg@10 per seed": [round(m["ndcg@10"], 4) for m in members],
                 "untrained ndcg@10": members[0]["untrained ndcg@10"], "difference": None, "p_value": None}
        if all("per_query" in m for m in members):
            entry["difference"], entry["p_value"] = _versus([m["per_query"] for m in members],
                                                            members[0]["untrained per_query"])
        summary.append(entry)
    return summary


def _cell(value, fmt="{:.4f}") -> str:
    return "–" if value is None else fmt.format(value)


def _difference(r: dict) -> str:
    p = "–" if r["p_value"] is None else (f"p {r['p_value']:.3f}" if r["p_value"] >= 0.001 else "p < 0.001")
    return f"{_cell(r['difference'], '{:+.4f}')} ({p})"


def markdown(table: list[dict]) -> str:
    header = ["data", "pairs", "training", "seed", "ranking", "nDCG@10", "R@10", "untrained, same ranking", "Δ (p)",
              "BM25"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in table:
        lines.append("| " + " | ".join([
            r["dataset"], f"{r['method']} × {r['pairs']}", r["variant"], str(r["seed"]), r["ranking"],
            _cell(r["ndcg@10"]), _cell(r["recall@10"]), _cell(r["untrained ndcg@10"]), _difference(r),
            _cell(r["bm25 ndcg@10"])]) + " |")
    return "\n".join(lines)


def markdown_summary(summary: list[dict]) -> str:
    header = ["data", "pairs", "training", "ranking", "seeds", "nDCG@10 (per seed)", "untrained", "Δ (p)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in summary:
        per_seed = ", ".join(f"{v:.4f}" for v in r["ndcg@10 per seed"])
        lines.append("| " + " | ".join([
            r["dataset"], f"{r['method']} × {r['pairs']}", r["variant"], r["ranking"], str(len(r["seeds"])),
            f"{r['ndcg@10']:.4f} ({per_seed})", _cell(r["untrained ndcg@10"]), _difference(r)]) + " |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default="bench/results/raw_documents")
    p.add_argument("--baselines", default="bench/results/gaussian")
    p.add_argument("--output", default="bench/results/raw_documents_table.json")
    a = p.parse_args()
    table = rows(Path(a.results), Path(a.baselines))
    if not table:
        print(f"no raw_*.json under {a.results}", file=sys.stderr)
        return 2
    summary = mean_over_seeds(table)
    print(markdown(table), "", "Mean over seeds:", "", markdown_summary(summary), sep="\n")
    runs = [{k: v for k, v in row.items() if "per_query" not in k} for row in table]
    write_json({"runs": runs, "mean_over_seeds": summary}, a.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
