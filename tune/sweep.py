#!/usr/bin/env python3
"""Search lambda_isotropy, lambda_reg and margin (and other loss/optimiser settings) with Ray Tune.
Every trial is a real Ray Train run of jobs/train.py's loop; ASHA stops poor trials after each epoch.

    python tune/sweep.py --train_data runs/demo/data/train.json --val_data runs/demo/data/val.json \
        --epochs 2 --num_samples 8 --output_dir sweeps
    python tune/sweep.py ... --param lambda_isotropy=loguniform:0.005:0.2 --param margin=0.1
    python tune/sweep.py ... --search_space space.yaml --search_alg optuna
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
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))

from ragcun.cli import run_main  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    import train as train_job  # jobs/train.py: the same data/model flags

    p = train_job.build_parser()
    p.description = __doc__
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.set_defaults(output_dir="sweeps", epochs=2)
    p.add_argument("--name", default=None, help="sweep name (default: unique); an existing name is resumed")
    p.add_argument("--num_samples", type=int, default=8, help="trials to sample (times each grid point)")
    p.add_argument("--max_concurrent_trials", type=int, default=1)
    p.add_argument("--metric", default="val_ndcg@10", help="reported metric to optimise")
    p.add_argument("--mode", choices=["min", "max"], default=None, help="default: max for IR metrics, min for losses")
    p.add_argument("--scheduler", choices=["asha", "fifo"], default="asha")
    p.add_argument("--grace_period", type=int, default=1, help="ASHA: epochs before a trial can be stopped")
    p.add_argument("--reduction_factor", type=int, default=2, help="ASHA: keep the top 1/N at each rung")
    p.add_argument("--search_alg", choices=["random", "optuna"], default="random")
    p.add_argument("--search_space", default=None, help="YAML/JSON file: {name: spec}; replaces the defaults")
    p.add_argument("--param", action="append", default=[], help="NAME=SPEC, e.g. margin=uniform:0:0.5 (repeatable)")
    return p


def main(argv: list[str] | None = None) -> int:
    import train as train_job

    from ragcun.sweep import (
        DEFAULT_SEARCH_SPACE,
        SweepConfig,
        load_search_space_file,
        parse_param_override,
        run_sweep,
    )

    args = build_parser().parse_args(argv)
    job = train_job.job_from_args(args)
    space = load_search_space_file(args.search_space) if args.search_space else dict(DEFAULT_SEARCH_SPACE)
    space.update(dict(parse_param_override(p) for p in args.param))
    sweep = SweepConfig(name=args.name, storage_path=args.storage_path, output_dir=args.output_dir,
                        num_samples=args.num_samples, max_concurrent_trials=args.max_concurrent_trials,
                        metric=args.metric, mode=args.mode, scheduler=args.scheduler, grace_period=args.grace_period,
                        reduction_factor=args.reduction_factor, search_alg=args.search_alg, seed=args.seed)
    outcome = run_sweep(job, space, sweep)  # joins RAY_ADDRESS or starts a local Ray with its dashboard
    import pandas as pd

    print(pd.DataFrame(outcome.trials).drop(columns=["best_checkpoint"], errors="ignore").to_string(index=False))
    print(json.dumps({"best_config": outcome.best_config, args.metric: outcome.best_metric,
                      "best_model": str(outcome.best_model), "results": str(outcome.results_dir),
                      "wall_s": round(outcome.wall_s, 1)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
