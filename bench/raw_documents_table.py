#!/usr/bin/env python3
"""The raw-documents path against the untrained model: every evaluation JSON of bench/raw_documents.sh
(bench/results/raw_documents/raw_<set>_<method>_n<pairs>[_<tag>]_s<seed>.json), each ranking (L2, cosine) set
beside the untrained model ranked the same way on the same real test queries
(bench/results/gaussian/baselines_<set>.json), with the paired sign-flip p-value of the per-query nDCG@10
differences, and BM25. Prints a markdown table and writes it as JSON.

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
from ragcun.eval.significance import sign_flip_p_value  # noqa: E402

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
                differences = [ours[q] - theirs[q] for q in ours if q in theirs]
                row["difference"] = float(np.mean(differences))
                row["p_value"] = sign_flip_p_value(differences)
            table.append(row)
    return table


def markdown(table: list[dict]) -> str:
    def cell(value, fmt="{:.4f}"):
        return "–" if value is None else fmt.format(value)

    header = ["data", "pairs", "training", "ranking", "nDCG@10", "R@10", "untrained, same ranking", "Δ (p)", "BM25"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in table:
        p = "–" if r["p_value"] is None else (f"p {r['p_value']:.3f}" if r["p_value"] >= 0.001 else "p < 0.001")
        lines.append("| " + " | ".join([
            r["dataset"], f"{r['method']} × {r['pairs']}", r["variant"], r["ranking"], cell(r["ndcg@10"]),
            cell(r["recall@10"]), cell(r["untrained ndcg@10"]), f"{cell(r['difference'], '{:+.4f}')} ({p})",
            cell(r["bm25 ndcg@10"])]) + " |")
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
    print(markdown(table))
    write_json(table, a.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
