#!/usr/bin/env python3
"""The science table over seeds: mean and per-seed figures of each variant, and its paired change vs a reference.

    python bench/science_seeds.py bench/results/scifact_science.json bench/results/scifact_science_seed7.json

Each input is one ``jobs/evaluate.py`` output (one seed of ``bench/scifact_train.sh``); variants are matched
by name (``iso0``, ``iso0.05``, ``base``, ...). The paired change subtracts the reference variant's figure of
the same seed, so seed-to-seed noise shared by all λ (data order, hardware) cancels. Prints a Markdown table
and writes JSON (default bench/results/scifact_science_seeds.json).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from ragcun.data.io import write_json

# column → (how to read it from a variant, how to print its mean)
COLUMNS = {
    "nDCG@10": (lambda v: v["metrics"]["ndcg@10"], "{:.4f}"),
    "Recall@10": (lambda v: v["metrics"]["recall@10"], "{:.4f}"),
    "MRR@10": (lambda v: v["metrics"]["mrr@10"], "{:.4f}"),
    "IsoScore": (lambda v: v["isotropy"]["isoscore"], "{:.3f}"),
    "eff. rank": (lambda v: v["isotropy"]["effective_rank"], "{:.1f}"),
    "SQ8 / flat": (lambda v: v.get("compression", {}).get("sq8", {}).get("relative_ndcg@10"), "{:.3f}"),
    "IVF-PQ 16x / flat": (lambda v: v.get("compression", {}).get("ivfpq", {}).get("relative_ndcg@10"), "{:.3f}"),
}


def read_variants(path: Path) -> dict[str, dict]:
    """name → variant of one ``jobs/evaluate.py`` output; ValueError naming the file if it is not one."""
    try:
        variants = {v["name"]: v for v in json.loads(path.read_text())["variants"]}
        for variant in variants.values():
            for get, _ in COLUMNS.values():  # every column this table reads is there (or optional)
                get(variant)
        return variants
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: not a jobs/evaluate.py output with 'variants' ({type(err).__name__}: {err})") from err


def collect(runs: list[dict[str, dict]]) -> dict[str, dict[str, list[float | None]]]:
    """variant → column → one value per run (None where that run lacks the variant or column)."""
    names = list(dict.fromkeys(name for run in runs for name in run))
    return {name: {col: [get(run[name]) if name in run else None for run in runs] for col, (get, _) in COLUMNS.items()}
            for name in names}


def summarise(values: list[float | None]) -> dict:
    present = [v for v in values if v is not None]
    return {"per_seed": values, "mean": statistics.fmean(present) if present else None,
            "spread": (max(present) - min(present)) if len(present) > 1 else None}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", type=Path, help="jobs/evaluate.py outputs, one per seed")
    p.add_argument("--reference", default="iso0", help="variant the paired change is taken against")
    p.add_argument("--output", type=Path, default=Path("bench/results/scifact_science_seeds.json"))
    a = p.parse_args()
    runs = []
    for path in a.results:
        if not path.is_file():
            p.error(f"{path}: no such file")
        try:
            runs.append(read_variants(path))
        except ValueError as err:
            p.error(str(err))
    table = collect(runs)
    if a.reference not in table:
        p.error(f"--reference {a.reference!r} is not a variant of the inputs (have: {', '.join(table)})")
    reference = table[a.reference]["nDCG@10"]
    out = {"inputs": [str(x) for x in a.results], "reference": a.reference, "variants": {}}
    header = ["variant", *COLUMNS, "nDCG@10 per seed", f"ΔnDCG@10 vs {a.reference} per seed"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, columns in table.items():
        summary = {col: summarise(values) for col, values in columns.items()}
        deltas = [None if v is None or r is None else v - r for v, r in zip(columns["nDCG@10"], reference)]
        summary["delta_ndcg@10_vs_reference"] = summarise(deltas)
        out["variants"][name] = summary
        cells = ["–" if summary[c]["mean"] is None else fmt.format(summary[c]["mean"]) for c, (_, fmt) in COLUMNS.items()]
        per_seed = " / ".join("–" if v is None else f"{v:.4f}" for v in columns["nDCG@10"])
        delta = " / ".join("–" if d is None else f"{d:+.4f}" for d in deltas)
        print("| " + " | ".join([name, *cells, per_seed, delta]) + " |")
    write_json(out, a.output)
    print(f"wrote {a.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
