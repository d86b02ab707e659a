#!/usr/bin/env python3
"""FAISS index benchmark (not a test): build time, memory, query time and recall@10 against exact search for
flat / HNSW / IVF-PQ / SQ8, on real embeddings (an index directory, e.g. SciFact encoded by
jobs/build_index.py, queried with its test queries) and on synthetic N(0, I) vectors.

    python bench/index_bench.py --index_dir runs/bench/scifact_minilm_flat --synthetic 1000000 --dim 512

Recall@10 = |approximate top 10 ∩ exact top 10| / 10, averaged over the queries; memory is the size of the
serialised index. Synthetic Gaussian vectors have no cluster structure: the hardest case for IVF/PQ.
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ragcun.index.faiss_index import build_index, factory_string, search  # noqa: E402

TYPES = ("flat", "sq8", "ivfpq", "hnsw")  # HNSW last: on 1M vectors its build is by far the longest


def recall_at_10(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(f[:10]) & set(e[:10])) / 10 for f, e in zip(found, exact)]))


def bench_one(vectors: np.ndarray, queries: np.ndarray, exact: np.ndarray, index_type: str, distance: str,
              train_size: int) -> dict:
    train = vectors[np.random.default_rng(0).choice(len(vectors), min(train_size, len(vectors)), replace=False)]
    started = time.perf_counter()
    index = build_index(vectors, index_type=index_type, distance=distance, train_vectors=train)
    build_s = time.perf_counter() - started
    search(index, queries[:10], 10, distance)  # warm-up
    started = time.perf_counter()
    _, ids = search(index, queries, 10, distance)
    query_s = time.perf_counter() - started
    return {"index_type": index_type, "factory": factory_string(index_type, vectors.shape[1], len(vectors)),
            "build_s": round(build_s, 2), "bytes": int(faiss.serialize_index(index).nbytes),
            "bytes_per_vector": round(faiss.serialize_index(index).nbytes / len(vectors), 1),
            "query_ms": round(1000 * query_s / len(queries), 3), "recall@10": round(recall_at_10(ids, exact), 4)}


def run_dataset(name: str, vectors: np.ndarray, queries: np.ndarray, distance: str, train_size: int,
                on_row=None) -> list[dict]:
    print(f"{name}: {len(vectors)} × {vectors.shape[1]} vectors, {len(queries)} queries, {distance}", flush=True)
    _, exact = search(build_index(vectors, index_type="flat", distance=distance), queries, 10, distance)
    rows = []
    for index_type in TYPES:
        row = {"dataset": name, "num_vectors": len(vectors), "dim": vectors.shape[1],
               **bench_one(vectors, queries, exact, index_type, distance, train_size)}
        print(json.dumps(row), flush=True)
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index_dir", help="a flat index directory (its vectors and model give the real data)")
    p.add_argument("--synthetic", type=int, default=1_000_000, help="synthetic vectors (0: skip)")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--num_queries", type=int, default=1000)
    p.add_argument("--train_size", type=int, default=100_000, help="training sample for IVF-PQ")
    p.add_argument("--output", default="bench/results/index_bench.json")
    a = p.parse_args()
    rows: list[dict] = []
    out = Path(a.output)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save(row: dict) -> None:  # after every row: a long build that is cut short keeps what finished
        rows.append(row)
        out.write_text(json.dumps({"rows": rows, "threads": faiss.omp_get_max_threads(),
                                   "date": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=2))

    if a.index_dir:
        from ragcun import GaussianRetriever

        retriever = GaussianRetriever.load(a.index_dir)
        vectors = retriever.index.reconstruct_n(0, retriever.index.ntotal)
        queries_file = Path(__file__).resolve().parents[1] / "data" / "scifact" / "queries.jsonl"
        texts = [json.loads(line)["text"] for line in queries_file.open()]
        queries = retriever.model.encode(texts, "query", batch_size=64)
        run_dataset(f"SciFact ({Path(a.index_dir).name})", vectors, queries, retriever.distance, a.train_size, save)
    if a.synthetic:
        rng = np.random.default_rng(0)
        vectors = rng.standard_normal((a.synthetic, a.dim), dtype=np.float32)
        queries = rng.standard_normal((a.num_queries, a.dim), dtype=np.float32)
        run_dataset("synthetic N(0, I)", vectors, queries, "l2", a.train_size, save)
    header = ("dataset", "index", "factory", "build s", "MB", "bytes/vec", "query ms", "recall@10")
    table = [(r["dataset"], r["index_type"], r["factory"], f"{r['build_s']:.1f}", f"{r['bytes'] / 2**20:.1f}",
              f"{r['bytes_per_vector']:.0f}", f"{r['query_ms']:.3f}", f"{r['recall@10']:.3f}") for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *table)]
    for row in (header, *table):
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
