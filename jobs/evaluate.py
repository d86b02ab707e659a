#!/usr/bin/env python3
"""Evaluate ragcun checkpoints (or an untrained backbone) on a retrieval set: Recall@1/5/10/20/50/100,
MRR@10, MRR, nDCG@10 and MAP@100 with trec_eval's definitions (pytrec_eval), the isotropy of the corpus
embeddings, optionally nDCG@10 over compressed FAISS indexes, a TREC run file, and a report with plots.

    python jobs/evaluate.py --model_path checkpoints/best_model.pt --test_data data/processed/test_eval.json
    python jobs/evaluate.py --base_model sentence-transformers/all-MiniLM-L6-v2 --beir_dir data/scifact \
        --split test --distance cosine --output_file results/minilm_scifact.json
    python jobs/evaluate.py --model_path trained=runs/x/best_model.pt --test_data test_eval.json \
        --baselines base whitening --compress sq8 ivfpq --report runs/x/report

Several --model_path values (each optionally NAME=PATH) are evaluated side by side; --baselines adds the
checkpoints' base model as is (cosine) and whitened (BERT-whitening fitted on the corpus).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ragcun.cli import run_main  # noqa: E402
from ragcun.config import EvalConfig  # noqa: E402
from ragcun.flags import add_flags, from_args  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(p, EvalConfig)
    return p


def parse_args(argv: list[str] | None = None) -> EvalConfig:
    parser = build_parser()
    try:
        return from_args(EvalConfig, parser.parse_args(argv))
    except ValueError as exc:
        parser.error(str(exc))


def main(argv: list[str] | None = None) -> int:
    from ragcun.eval.job import run_evaluation

    evaluation = run_evaluation(parse_args(argv))
    print(json.dumps(evaluation.output, indent=2))
    if evaluation.report is not None:
        print(f"report: {evaluation.report / 'report.html'} (and report.md, metrics.json, PNG plots)", file=sys.stderr)
    print("\n" + evaluation.table, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
