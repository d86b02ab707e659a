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
from ragcun.config import EncoderPoolConfig, IndexBuildConfig  # noqa: E402
from ragcun.flags import add_flags, from_args  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(p, IndexBuildConfig, EncoderPoolConfig)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        config = from_args(IndexBuildConfig, a, encoders=from_args(EncoderPoolConfig, a))
    except ValueError as exc:
        parser.error(str(exc))
    import ray

    from ragcun.index.build import build_index_directory

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
