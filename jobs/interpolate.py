#!/usr/bin/env python3
"""Interpolate a fine-tuned checkpoint with the checkpoint its training started from (WiSE-FT,
Wortsman et al. 2022): θ = (1 − α) θ_start + α θ_finetuned, written as a new checkpoint that every ragcun
command loads. With --head_init scale the start ranks like the untrained model, so α trades the fine-tuned
collection's gain against the untrained model's quality elsewhere (ragcun.interpolate).

    python jobs/interpolate.py --start runs/x/fitted_start_model.pt --finetuned runs/x/best_model.pt \
        --alpha 0.5 --output runs/x/wise_0.5.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ragcun.cli import run_main  # noqa: E402
from ragcun.config import InterpolateConfig  # noqa: E402
from ragcun.flags import add_flags, from_args  # noqa: E402


def parse_args(argv: list[str] | None = None) -> InterpolateConfig:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(parser, InterpolateConfig)
    try:
        return from_args(InterpolateConfig, parser.parse_args(argv))
    except ValueError as exc:
        parser.error(str(exc))


def main(argv: list[str] | None = None) -> int:
    from ragcun.interpolate import interpolate_checkpoints

    config = parse_args(argv)
    path = interpolate_checkpoints(config.start, config.finetuned, config.alpha, config.output)
    print(f"wrote {path} (alpha {config.alpha})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
