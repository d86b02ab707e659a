#!/usr/bin/env python3
"""Evaluate a ragcun checkpoint (or an untrained backbone) on a retrieval set: Recall@1/5/10/20/50/100,
MRR@10, MRR, nDCG@10 and MAP@100 with trec_eval's definitions (pytrec_eval), plus a TREC run file.

    python jobs/evaluate.py --model_path checkpoints/best_model.pt --test_data data/processed/test_eval.json
    python jobs/evaluate.py --base_model sentence-transformers/all-MiniLM-L6-v2 --beir_dir data/scifact \
        --split test --distance cosine --output_file results/minilm_scifact.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ragcun.cli import run_main  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--model_path", help="a ragcun checkpoint (.pt)")
    model.add_argument("--base_model", help="an untrained backbone (hub id or folder), evaluated as is")
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument("--test_data", help="test_eval.json written by jobs/prepare_data.py")
    data.add_argument("--beir_dir", help="a BEIR folder (corpus.jsonl, queries.jsonl, qrels/)")
    p.add_argument("--split", default="test", help="BEIR qrels split (default: test)")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--top_k", type=int, default=100, help="documents retrieved per query (default: 100)")
    p.add_argument("--distance", choices=["l2", "ip", "cosine"], default="l2",
                   help="ranking distance (default: l2, the Gaussian model's)")
    p.add_argument("--pooling", choices=["mean", "cls", "last"], default="mean", help="with --base_model")
    p.add_argument("--max_query_length", type=int, default=None, help="override the model's query max tokens")
    p.add_argument("--max_doc_length", type=int, default=None, help="override the model's document max tokens")
    p.add_argument("--output_file", default=None, help="metrics JSON")
    p.add_argument("--run_file", default=None, help="TREC run file (default: beside --output_file)")
    a = p.parse_args(argv)
    if a.top_k < 1:
        p.error("--top_k must be >= 1")
    if a.batch_size < 1:
        p.error("--batch_size must be >= 1")
    return a


def main(argv: list[str] | None = None) -> int:
    from ragcun.data.retrieval import load_beir, read_test_eval
    from ragcun.eval.retrieval import evaluate_model, write_trec_run
    from ragcun.model import load_encoder

    a = parse_args(argv)
    retrieval_set = load_beir(a.beir_dir, a.split) if a.beir_dir else read_test_eval(a.test_data)
    model = load_encoder(a.model_path, a.base_model, a.pooling, a.max_query_length, a.max_doc_length)
    if a.top_k > len(retrieval_set.corpus_ids):
        print(f"note: --top_k {a.top_k} > corpus size {len(retrieval_set.corpus_ids)}; retrieving the whole corpus",
              file=sys.stderr)
    print(f"evaluating on {retrieval_set.source}: {len(retrieval_set.query_ids)} queries, "
          f"{len(retrieval_set.corpus_ids)} documents, distance={a.distance}", file=sys.stderr)
    result = evaluate_model(model, retrieval_set, batch_size=a.batch_size, top_k=a.top_k, distance=a.distance)
    report = {
        "metrics": result["metrics"],
        "model": a.model_path or a.base_model,
        "data": retrieval_set.source,
        "distance": a.distance,
        "top_k": a.top_k,
        "timing": result["timing"],
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    print(json.dumps(report, indent=2))
    if a.output_file:
        from ragcun.data.io import write_json

        out = Path(a.output_file)
        write_json(report, out)
        write_trec_run(result["run"], a.run_file or out.with_suffix(".run"), tag=Path(a.model_path or a.base_model).name)
    elif a.run_file:
        write_trec_run(result["run"], a.run_file)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
