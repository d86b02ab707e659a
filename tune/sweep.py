#!/usr/bin/env python3
"""Search lambda_isotropy, lambda_variance and margin (and other loss/optimiser settings) with Ray Tune.
Every trial is a real Ray Train run of jobs/train.py's loop; ASHA stops poor trials after each epoch.

    python tune/sweep.py --train_data runs/demo/data/train.json --val_data runs/demo/data/val.json \
        --epochs 2 --num_samples 8 --output_dir sweeps
    python tune/sweep.py ... --param lambda_isotropy=loguniform:0.005:0.2 --param margin=0.1
    python tune/sweep.py ... --search_space space.yaml --search_alg optuna
    python tune/sweep.py ... --epochs 4 --trial_epochs 2 --param temperature=grid:0.05,0.2   # screening
    ray job submit --working-dir . -- python tune/sweep.py --train_data /abs/train.json ...

Writes <output_dir>/<name>/best_config.json, trials.csv and best_model.pt; the Ray Tune results (for
ResultGrid / TensorBoard) are in <storage_path>/<name>. The same --name again resumes an interrupted sweep.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ragcun.cli import run_main  # noqa: E402
from ragcun.config import SweepConfig, TrainJobConfig  # noqa: E402
from ragcun.flags import add_flags, from_args  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """jobs/train.py's flags (the trials' job) and the search's."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(p, *TrainJobConfig.SECTIONS, defaults={"output_dir": "sweeps", "epochs": 2})
    add_flags(p, SweepConfig)
    p.add_argument("--search_space", default=None, help="YAML/JSON file: {name: spec}; replaces the defaults")
    p.add_argument("--param", action="append", default=[], help="NAME=SPEC, e.g. margin=uniform:0:0.5 (repeatable)")
    return p


def main(argv: list[str] | None = None) -> int:
    from ragcun.sweep import DEFAULT_SEARCH_SPACE, load_search_space_file, parse_param_override, run_sweep

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        job, sweep = TrainJobConfig.from_args(args), from_args(SweepConfig, args)
    except ValueError as exc:
        parser.error(str(exc))
    space = load_search_space_file(args.search_space) if args.search_space else dict(DEFAULT_SEARCH_SPACE)
    space.update(dict(parse_param_override(p) for p in args.param))
    outcome = run_sweep(job, space, sweep)  # joins RAY_ADDRESS or starts a local Ray with its dashboard
    import pandas as pd

    print(pd.DataFrame(outcome.trials).drop(columns=["best_checkpoint"], errors="ignore").to_string(index=False))
    print(json.dumps({"best_config": outcome.best_config, args.metric: outcome.best_metric,
                      "best_model": str(outcome.best_model), "results": str(outcome.results_dir),
                      "wall_s": round(outcome.wall_s, 1)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
