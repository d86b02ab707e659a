#!/usr/bin/env python3
"""The Gaussian recipe's table: every evaluation JSON in bench/results/gaussian/ (jobs/evaluate.py output of
bench/scifact_gaussian.sh), one row per dataset, recipe and ranking, averaged over the seeds that ran it.

Files are named ``<run>.json`` (SciFact test) or ``<run>_<set>.json`` (medline, cacm, npl), runs
``gauss_<init>_iso<λ>_tau<τ>_e<epochs>_s<seed>``; ``baselines_<set>.json`` holds the untrained model and BM25.
Each trained row is compared by the paired sign-flip test (ragcun.eval.significance) of its per-query nDCG@10
with the same recipe at λ_iso 0 (paired by seed, averaged over the seeds both ran) and with the untrained model
ranked the same way (every seed against the one untrained run), then averaged over queries.
``--baselines`` reads the ``baselines_<set>.json`` files from another directory (runs evaluated elsewhere).
Writes the rows as JSON and, for SciFact, a plot of nDCG@10 against the Epps–Pulley statistic.

    python bench/gaussian_table.py [--results bench/results/gaussian] [--output bench/results/gaussian_table.json]
    python bench/gaussian_table.py --results bench/results/gaussian_opq --output bench/results/gaussian_opq_table.json
    python bench/gaussian_table.py --results bench/results/recipe_sweep --baselines bench/results/gaussian \
        --output bench/results/recipe_sweep_table.json --plot ""
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
    """``baselines_<set>`` → (set, "baselines"); ``<run>_<set>`` → (set, run); ``<run>`` → ("scifact", run)."""
    if stem.startswith("baselines_"):
        return stem[len("baselines_"):], "baselines"
    for name in OUT_OF_DOMAIN:
        if stem.endswith(f"_{name}"):
            return name, stem[: -len(name) - 1]
    return "scifact", stem


def read_rows(paths: list[Path]) -> list[dict]:
    """One row per (file, variant): its dataset, recipe (the run name without its seed), seed and figures."""
    rows = []
    for path in paths:
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


def _versus(members: list[dict], reference: list[dict] | None) -> dict | None:
    """Per-query nDCG@10 of ``members`` minus ``reference``'s: paired by seed, or every seed against an unseeded
    reference (the untrained model); the mean difference and its sign-flip p-value."""
    if not reference:
        return None
    by_seed = {m["seed"]: m for m in reference}
    pairs = [(m, by_seed.get(m["seed"], by_seed.get(None))) for m in members]
    pairs = [(a, b) for a, b in pairs if b is not None and a["per_query"] and b["per_query"]]
    if not pairs:
        return None
    values = list(paired_differences([a["per_query"] for a, _ in pairs], [b["per_query"] for _, b in pairs]).values())
    return {"seeds": [a["seed"] for a, _ in pairs], "queries": len(values), "mean_difference": float(np.mean(values)),
            "p_value": sign_flip_p_value(values)}


def summarise(rows: list[dict]) -> list[dict]:
    """Rows of the same dataset, recipe and ranking averaged over seeds, with p-values against λ_iso 0 and against
    the untrained model."""
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
        lambda0 = groups.get((dataset, LAMBDA.sub("_iso0_", recipe + "_")[:-1], ranking)) if lam else None
        entry["vs_lambda0"] = _versus(members, lambda0) if entry["lambda_iso"] != 0 else None
        trained = not recipe.startswith("baselines") and ranking in ("(l2)", "(cosine)")
        untrained = groups.get((dataset, "baselines", f"base {ranking}")) if trained else None
        entry["vs_untrained"] = _versus(members, untrained)
        table.append(entry)
    order = {name: i for i, name in enumerate(("scifact", *OUT_OF_DOMAIN))}
    return sorted(table, key=lambda e: (order.get(e["dataset"], 9), not e["recipe"].startswith("baselines"),
                                        e["recipe"].split("_iso")[0], e["lambda_iso"] or 0, e["ranking"]))


def markdown(table: list[dict]) -> str:
    def cell(value, digits=4):
        return "–" if value is None else f"{value:.{digits}f}"

    header = ["data", "model", "ranking", "seeds", "nDCG@10", "R@10", "Epps–Pulley", "IsoScore", "int8",
              "binary rescored", "binary", "PQ 32×", "OPQ + PQ 32×", "Δ vs λ 0 (p)", "Δ vs untrained (p)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for e in table:
        lines.append("| " + " | ".join([
            e["dataset"], "untrained / BM25" if e["recipe"] == "baselines" else e["recipe"], e["ranking"],
            str(len(e["seeds"]) or "–"), cell(e["ndcg@10"]), cell(e["recall@10"]), cell(e["epps_pulley"], 1),
            cell(e["isoscore"], 3), cell(e["int8 ndcg@10"]), cell(e["binary ndcg@10"]),
            cell(e["binary-hamming ndcg@10"]), cell(e["ivfpq32 ndcg@10"]), cell(e["opq-ivfpq32 ndcg@10"]),
            _difference(e["vs_lambda0"]), _difference(e["vs_untrained"])]) + " |")
    return "\n".join(lines)


def _difference(versus: dict | None) -> str:
    return "–" if versus is None else f"{versus['mean_difference']:+.4f} ({_p(versus['p_value'])})"


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
    p.add_argument("--baselines", default=None,
                   help="directory of the baselines_<set>.json files, if not --results")
    p.add_argument("--plot", default="bench/results/gaussian_frontier.png", help='"" for no plot')
    a = p.parse_args()
    paths = sorted(Path(a.results).glob("*.json"))
    if a.baselines and Path(a.baselines) != Path(a.results):
        paths += sorted(Path(a.baselines).glob("baselines_*.json"))
    rows = read_rows(paths)
    if not rows:
        print(f"no evaluation JSON under {a.results}", file=sys.stderr)
        return 2
    table = summarise(rows)
    print(markdown(table))
    write_json(table, a.output)
    if a.plot and plot_frontier(table, Path(a.plot)):
        print(f"\nplot: {a.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
