#!/usr/bin/env python3
"""Turn raw documents, a CSV/JSON/JSONL/Parquet file of triplets or a BEIR folder into triplets with
train/val/test splits, optionally with hard negatives mined by the base model.

    python jobs/prepare_data.py --documents docs.txt --generate_pairs --split 0.8 0.1 0.1 --output_dir data/processed
    python jobs/prepare_data.py --csv_file pairs.csv --split 0.8 0.1 0.1 --output_dir data/processed
    python jobs/prepare_data.py --beir_dir data/scifact --beir_split train --split 0.9 0.1 0 \
        --beir_eval_split test --mine_negatives --output_dir data/processed/scifact
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ragcun.cli import run_main  # noqa: E402
from ragcun.config import EncoderPoolConfig, PrepareConfig  # noqa: E402
from ragcun.flags import add_flags, from_args  # noqa: E402


def parse_args(argv: list[str] | None = None) -> PrepareConfig:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(p, PrepareConfig, EncoderPoolConfig)
    a = p.parse_args(argv)
    try:
        return from_args(PrepareConfig, a, encoders=from_args(EncoderPoolConfig, a))
    except ValueError as exc:
        p.error(str(exc))


def main(argv: list[str] | None = None) -> int:
    from ragcun.data.prepare import prepare

    summary = prepare(parse_args(argv))
    print(json.dumps({"counts": summary["counts"], "files": summary["files"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
