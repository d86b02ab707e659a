#!/usr/bin/env python3
"""Train a Gaussian embedding model with Ray Train (DDP over --num_workers workers).

    python jobs/train.py --train_data data/processed/train.json --val_data data/processed/val.json --epochs 3
    ray job submit --working-dir . -- python jobs/train.py --train_data ... --storage_path /shared/ray_results

Runs on the Ray cluster it finds (RAY_ADDRESS, or one started with `ray start`), else starts a local one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ragcun.cli import run_main  # noqa: E402
from ragcun.config import TrainJobConfig  # noqa: E402
from ragcun.flags import add_flags  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """Every field of the job's model, loss, training and Ray configuration, as a flag."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(p, *TrainJobConfig.SECTIONS)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        job = TrainJobConfig.from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    import ray

    from ragcun.train.trainer import run_training

    if not ray.is_initialized():
        ray.init(log_to_driver=True)  # joins RAY_ADDRESS / a `ray start` cluster, else starts a local one
    outcome = run_training(job)
    print(json.dumps({"best_model": str(outcome.best_model), "final_model": str(outcome.final_model),
                      "epochs": outcome.metrics, "run": outcome.run_name, "wall_s": round(outcome.wall_s, 1)},
                     indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
