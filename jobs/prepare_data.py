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
from ragcun.config import DEFAULT_BASE_MODEL, PrepareConfig  # noqa: E402


def parse_args(argv: list[str] | None = None) -> PrepareConfig:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--documents", help="raw documents: one per line (or JSONL/JSON/CSV/Parquet with 'text')")
    src.add_argument("--csv_file", help="CSV with a header query,positive[,negative]")
    src.add_argument("--input", help="JSON/JSONL/Parquet triplets, or a directory of them")
    src.add_argument("--beir_dir", help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv")
    p.add_argument("--beir_split", default="train", help="qrels split that gives the triplets (default: train)")
    p.add_argument("--beir_eval_split", default=None,
                   help="write test_eval.json from this BEIR split (then --split's test ratio must be 0)")
    p.add_argument("--generate_pairs", action="store_true", help="make query/positive pairs from --documents (ICT)")
    p.add_argument("--num_pairs", type=int, default=None, help="number of pairs to generate (default: all)")
    p.add_argument("--pair_method", choices=["ict", "crop"], default="ict",
                   help="ict: a sentence vs the rest of its document; crop: two random spans (Contriever)")
    p.add_argument("--pairs_per_document", type=int, default=1, help="pairs drawn from each document")
    p.add_argument("--add_negatives", action=argparse.BooleanOptionalAction, default=True,
                   help="add a random negative to triplets that have none (default: on; --no-add_negatives)")
    p.add_argument("--mine_negatives", action="store_true", help="mine hard negatives with --base_model")
    p.add_argument("--num_negatives", type=int, default=1, help="mined negatives per pair (one triplet each)")
    p.add_argument("--mining_range_max", type=int, default=30, help="pick negatives among the top N candidates")
    p.add_argument("--mining_relative_margin", type=float, default=0.05,
                   help="skip candidates scoring above (1 - margin) x the positive's score")
    p.add_argument("--mining_sampling", choices=["random", "top"], default="random")
    p.add_argument("--base_model", default=DEFAULT_BASE_MODEL, help="model used for mining (hub id or folder)")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--cache_dir", default=None,
                   help="embedding cache: the mining model's corpus embeddings are kept here for jobs/evaluate.py")
    p.add_argument("--split", nargs=3, type=float, metavar=("TRAIN", "VAL", "TEST"),
                   help="split ratios by query, e.g. 0.8 0.1 0.1 (must sum to 1)")
    p.add_argument("--no_shuffle", action="store_true", help="split in input order")
    p.add_argument("--output_dir", default="data/processed")
    p.add_argument("--output", default=None, help="without --split: the single triplet file to write")
    p.add_argument("--format", choices=["json", "jsonl", "parquet"], default="json", help="triplet file format")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--strict", action="store_true",
                   help="refuse a corpus with a document whose title and text are both empty (default: skip "
                        "such documents with one warning)")
    a = p.parse_args(argv)
    return PrepareConfig(
        documents=a.documents, csv_file=a.csv_file, input=a.input, beir_dir=a.beir_dir, beir_split=a.beir_split,
        beir_eval_split=a.beir_eval_split, generate_pairs=a.generate_pairs, num_pairs=a.num_pairs,
        pair_method=a.pair_method, pairs_per_document=a.pairs_per_document,
        add_negatives=a.add_negatives, mine_negatives=a.mine_negatives, num_negatives=a.num_negatives,
        mining_range_max=a.mining_range_max, mining_relative_margin=a.mining_relative_margin,
        mining_sampling=a.mining_sampling, base_model=a.base_model, batch_size=a.batch_size,
        cache_dir=a.cache_dir, split=tuple(a.split) if a.split else None, shuffle=not a.no_shuffle, output_dir=a.output_dir,
        output=a.output, format=a.format, seed=a.seed, strict=a.strict,
    )


def main(argv: list[str] | None = None) -> int:
    from ragcun.data.prepare import prepare

    summary = prepare(parse_args(argv))
    print(json.dumps({"counts": summary["counts"], "files": summary["files"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
