#!/usr/bin/env python3
"""Encode a corpus with Ray Data batch inference and write a FAISS index directory (index.faiss,
documents.parquet, model.pt, manifest.json) that GaussianRetriever.load and the Serve app read.

    python jobs/build_index.py --corpus data/scifact --model_path checkpoints/best_model.pt --output_dir runs/index
    python jobs/build_index.py --corpus docs.jsonl --base_model sentence-transformers/all-MiniLM-L6-v2 \
        --distance cosine --index_type hnsw --output_dir runs/index_hnsw

Runs on the Ray cluster it finds (RAY_ADDRESS, or one started with `ray start`), else starts a local one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ragcun.cli import run_main  # noqa: E402
from ragcun.config import DEFAULT_BASE_MODEL, IndexBuildConfig  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True,
                   help="JSONL/JSON/Parquet with _id (or id), text[, title, other fields -> metadata], "
                        "a .txt file with one document per line, or a BEIR folder (corpus.jsonl)")
    p.add_argument("--output_dir", required=True, help="the index directory to write (replaced if it exists)")
    model = p.add_mutually_exclusive_group()
    model.add_argument("--model_path", help="a ragcun checkpoint (.pt)")
    model.add_argument("--base_model", default=DEFAULT_BASE_MODEL,
                       help="an untrained backbone, used as is (identity head); default: the packaged MiniLM")
    p.add_argument("--pooling", choices=["mean", "cls", "last"], default="mean", help="with --base_model")
    p.add_argument("--index_type", default="flat",
                   help="flat | hnsw | ivfpq (16x) | ivfpq32 | sq8 (calibrated) | int8 (fixed range) | binary "
                        "(sign bits + rescoring) | binary-hamming | a FAISS factory string")
    p.add_argument("--int8_range", type=float, default=4.0,
                   help="int8: quantise every coordinate over [-r, r] (r = 4 covers N(0, 1) but for 6e-5)")
    p.add_argument("--rescore_multiplier", type=int, default=10,
                   help="binary: rescore the top k x M Hamming candidates with the float vectors")
    p.add_argument("--bm25", action="store_true",
                   help="also build a BM25 index (bm25s) for the bm25 and hybrid search modes")
    p.add_argument("--distance", choices=["l2", "ip", "cosine"], default="l2",
                   help="ranking distance (default: l2, the Gaussian model's)")
    p.add_argument("--batch_size", type=int, default=64, help="documents per encoder call")
    p.add_argument("--num_encoders", type=int, default=1, help="encoder actors in the Ray Data pool")
    p.add_argument("--cpus_per_encoder", type=float, default=None,
                   help="CPUs per encoder actor (default: what reading leaves, shared)")
    p.add_argument("--use_gpu", action="store_true", help="one GPU per encoder actor")
    p.add_argument("--max_doc_length", type=int, default=None, help="override the model's document max tokens")
    p.add_argument("--cache_dir", default=None,
                   help="embedding cache (shared with jobs/evaluate.py): reuse this model's corpus embeddings "
                        "if there, else keep them there")
    p.add_argument("--strict", action="store_true",
                   help="refuse a corpus with a document whose title and text are both empty (default: skip "
                        "such documents with one warning)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        config = IndexBuildConfig(corpus=a.corpus, output_dir=a.output_dir, model_path=a.model_path,
                                  base_model=a.base_model, pooling=a.pooling, index_type=a.index_type,
                                  distance=a.distance, batch_size=a.batch_size, num_encoders=a.num_encoders,
                                  cpus_per_encoder=a.cpus_per_encoder, use_gpu=a.use_gpu,
                                  max_doc_length=a.max_doc_length, cache_dir=a.cache_dir, strict=a.strict,
                                  int8_range=a.int8_range, rescore_multiplier=a.rescore_multiplier, bm25=a.bm25)
    except ValueError as exc:
        parser.error(str(exc))
    import ray

    from ragcun.indexing import build_index_directory

    if not ray.is_initialized():
        ray.init(log_to_driver=True)  # joins RAY_ADDRESS / a `ray start` cluster, else starts a local one
    from ragcun.errors import RagcunError

    try:
        manifest = build_index_directory(config)
    except RagcunError:
        raise  # bad input data: run_main prints it with its file and line
    except ValueError as exc:  # flags that do not fit (resources, index type)
        parser.error(str(exc))
    print(json.dumps({"index_dir": str(Path(a.output_dir).resolve()), **manifest}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
