#!/usr/bin/env python3
"""Two recipes compared query by query: nDCG@10 of run A minus run B on each dataset, per query averaged over
the seeds both ran (paired by seed), with the paired sign-flip test (ragcun.eval.significance).

Reads jobs/evaluate.py JSONs named as bench/scifact_recipe_sweep.sh writes them: ``<recipe>_s<seed>.json``
(SciFact test) and ``<recipe>_s<seed>_<set>.json`` (medline, cacm, npl). Prints a table, writes JSON.

    python bench/paired_runs.py --results bench/results/recipe_sweep --seeds 42 7 \
        --pair recipe_lr8e-5_e4 recipe_lr5e-5_e4 --pair recipe_lr8e-5_e4_wise0.5 recipe_lr5e-5_e4_wise0.5 \
        --output bench/results/recipe_lr8e-5_vs_5e-5.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ragcun.data.io import write_json  # noqa: E402
from ragcun.eval.significance import paired_differences, sign_flip_p_value  # noqa: E402

DATASETS = ("scifact", "medline", "cacm", "npl")


def per_query(results: Path, recipe: str, seed: str, dataset: str, variant: str) -> dict[str, float] | None:
    path = results / (f"{recipe}_s{seed}.json" if dataset == "scifact" else f"{recipe}_s{seed}_{dataset}.json")
    if not path.is_file():
        return None
    for v in json.loads(path.read_text())["variants"]:
        if v["name"].endswith(variant):
            return v["per_query"]["ndcg@10"]
    return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default="bench/results/recipe_sweep")
    p.add_argument("--seeds", nargs="+", required=True)
    p.add_argument("--pair", nargs=2, action="append", required=True, metavar=("A", "B"), help="recipes A and B")
    p.add_argument("--variants", nargs="+", default=["(l2)", "(l2) + BM25 (RRF)"],
                   help="ranking(s) compared: the end of the variant's name in the JSON")
    p.add_argument("--output", required=True)
    a = p.parse_args()
    results = Path(a.results)
    rows = []
    for recipe_a, recipe_b in a.pair:
        for dataset in DATASETS:
            for variant in a.variants:
                runs = [(per_query(results, recipe_a, s, dataset, variant), per_query(results, recipe_b, s, dataset,
                                                                                        variant)) for s in a.seeds]
                if any(x is None or y is None for x, y in runs):
                    continue  # not evaluated (e.g. no hybrid out of domain) at every seed
                diff = np.array(list(paired_differences([x for x, _ in runs], [y for _, y in runs]).values()))
                rows.append({"a": recipe_a, "b": recipe_b, "dataset": dataset, "variant": variant,
                             "seeds": a.seeds, "queries": len(diff), "ndcg@10_difference": float(diff.mean()),
                             "p": sign_flip_p_value(diff)})
    print("| A | B | dataset | ranking | Δ nDCG@10 (points) | p |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['a']} | {r['b']} | {r['dataset']} | {r['variant']} | {100 * r['ndcg@10_difference']:+.2f} | "
              f"{r['p']:.3f} |")
    write_json({"command": " ".join(["bench/paired_runs.py", *sys.argv[1:]]), "rows": rows}, a.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
