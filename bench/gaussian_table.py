#!/usr/bin/env python3
"""The Gaussian recipe's table: every evaluation JSON in bench/results/gaussian/ (jobs/evaluate.py output) beside
the plain recipe's rows of bench/results/scifact_science*.json, as a Markdown table, also written as JSON.

    python bench/gaussian_table.py [--results bench/results/gaussian] [--output bench/results/gaussian_table.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ragcun.data.io import write_json  # noqa: E402

COLUMNS = ("ndcg@10", "recall@10", "epps_pulley", "isoscore", "mean_std")


def rows_of(path: Path) -> list[dict]:
    data = json.loads(path.read_text())
    rows = []
    for variant in data.get("variants", []):
        row = {"file": path.name, "data": data.get("data", ""), "name": variant["name"],
               "distance": variant["distance"], **{k: variant["metrics"].get(k) for k in COLUMNS[:2]},
               **{k: variant.get("isotropy", {}).get(k) for k in COLUMNS[2:]}}
        for index_type, result in (variant.get("compression") or {}).items():
            row[f"{index_type} rel."] = result.get("relative_ndcg@10")
        rows.append(row)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default="bench/results/gaussian")
    p.add_argument("--plain", nargs="*", default=["bench/results/scifact_science.json"],
                   help="plain-recipe evaluations to show beside (same data)")
    p.add_argument("--output", default="bench/results/gaussian_table.json")
    a = p.parse_args()
    files = [Path(f) for f in a.plain if Path(f).is_file()] + sorted(Path(a.results).glob("*.json"))
    rows = [r for f in files for r in rows_of(f)]
    if not rows:
        print(f"no evaluation JSON under {a.results}", file=sys.stderr)
        return 2
    extra = sorted({k for r in rows for k in r if k.endswith(" rel.")})
    header = ["data", "model", "distance", *COLUMNS, *extra]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        cells = [Path(r["data"].split(" ")[0]).name or r["data"], r["name"], r["distance"]]
        cells += ["–" if r.get(k) is None else f"{r[k]:.4f}" if k in COLUMNS[:2] else f"{r[k]:.3f}"
                  for k in (*COLUMNS, *extra)]
        print("| " + " | ".join(cells) + " |")
    write_json(rows, a.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
