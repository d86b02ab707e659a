#!/usr/bin/env python3
"""Corpus encoding for hard-negative mining at scale: the Ray Data encoder pool (what
``prepare_data --mine_negatives`` runs, shared with ``jobs/build_index.py``) vs one process (``model.encode``),
on the same cores, side by side in one run. A benchmark, not a test.

The corpus is SciFact's abstracts repeated, each copy tagged so that every text differs, up to
``--num_documents`` (default 100,000); ``--max_doc_length`` keeps the run short on a laptop (the pipeline's
overhead per document does not depend on it, the encoder's cost does, so a short length is the harder case
for the pool). Each path runs in a fresh process, alternately, ``--rounds`` times; the table gives documents/s
(median), the ratio Ray / one process (target >= 0.9), and each process's peak RSS above what it had before
encoding, split into its heap (RssAnon) and the shared pages it mapped (RssShmem: for the Ray driver, object-store
blocks, which belong to the store), next to the size of the embeddings themselves (N x d x 4 bytes): the heap
should not grow with the corpus beyond the embeddings (the texts are the caller's already).

    python bench/mining_bench.py --num_documents 100000 --max_doc_length 16
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def corpus(num_documents: int) -> list[str]:
    from ragcun.data.retrieval_sets import load_beir_corpus

    base = load_beir_corpus(REPO / "data" / "scifact").texts
    return [f"{base[i % len(base)]} (copy {i // len(base)})" for i in range(num_documents)]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def memory_mb() -> dict[str, float]:
    """This process's resident memory split by kind (Linux /proc/self/status): ``anon`` is its heap (what
    grows if it keeps copies), ``shmem`` the shared pages it has mapped — for a Ray driver, the object store
    blocks it wrote or read, which live in the store and are not the driver's own."""
    fields = {"RssAnon": "anon", "RssShmem": "shmem", "RssFile": "file"}
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in fields:
            out[fields[key]] = int(value.split()[0]) / 1024  # kB
    return out


class PeakMemory:
    """Peaks of each kind of resident memory, sampled every 20 ms on a thread while the block runs."""

    def __enter__(self) -> PeakMemory:
        self.before = memory_mb()
        self.peak = dict(self.before)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            for kind, mb in memory_mb().items():
                self.peak[kind] = max(self.peak[kind], mb)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def growth(self) -> dict[str, float]:
        return {kind: self.peak[kind] - self.before[kind] for kind in self.before}


def run_one(path: str, num_documents: int, max_doc_length: int, batch_size: int) -> dict:
    """One path in this process; prints its figures as JSON."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    import torch

    from ragcun.config import DEFAULT_BASE_MODEL, EncoderPoolConfig
    from ragcun.model import load_model

    texts = corpus(num_documents)
    model = load_model(base_model=DEFAULT_BASE_MODEL, output_dim=None, max_doc_length=max_doc_length)
    if path == "ray":
        import ray

        from ragcun.encoder_pool import encode_texts

        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        encode = lambda: encode_texts(texts, model, EncoderPoolConfig(), batch_size)  # noqa: E731
    else:
        torch.set_num_threads(os.cpu_count() or 1)
        encode = lambda: model.encode(texts, "document", batch_size=batch_size, show_progress_bar=False)  # noqa: E731
    before = peak_rss_mb()
    with PeakMemory() as memory:
        started = time.perf_counter()
        vectors = encode()
        seconds = time.perf_counter() - started
    growth = memory.growth()
    return {"path": path, "documents": len(texts), "seconds": seconds, "docs_per_s": len(texts) / seconds,
            "rss_before_mb": before, "rss_growth_mb": peak_rss_mb() - before,
            "anon_growth_mb": growth["anon"], "shmem_growth_mb": growth["shmem"],
            "embeddings_mb": vectors.nbytes / 2**20, "finite": bool(np.isfinite(vectors).all())}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num_documents", type=int, default=100_000)
    p.add_argument("--max_doc_length", type=int, default=32)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--output", default=str(REPO / "bench" / "results" / "mining_bench.json"))
    p.add_argument("--one", choices=["ray", "local"], help=argparse.SUPPRESS)  # a child process
    a = p.parse_args()
    if a.one:
        print(json.dumps(run_one(a.one, a.num_documents, a.max_doc_length, a.batch_size)))
        return 0
    runs: dict[str, list[dict]] = {"local": [], "ray": []}
    for _ in range(a.rounds):
        for path in ("local", "ray"):
            out = subprocess.run([sys.executable, __file__, "--one", path, "--num_documents", str(a.num_documents),
                                  "--max_doc_length", str(a.max_doc_length), "--batch_size", str(a.batch_size)],
                                 check=True, capture_output=True, text=True).stdout
            runs[path].append(json.loads(out.strip().splitlines()[-1]))
    from ragcun.data.io import write_json

    rate = {path: statistics.median(r["docs_per_s"] for r in rs) for path, rs in runs.items()}
    result = {
        "command": " ".join(["bench/mining_bench.py", *sys.argv[1:]]), "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "num_documents": a.num_documents,
        "max_doc_length": a.max_doc_length, "runs": runs,
        "ray_over_local": rate["ray"] / rate["local"], "target": ">= 0.9",
    }
    print(f"{'path':8} {'docs/s':>8} {'RSS growth MB':>14} {'of it heap':>11} {'shared':>7} {'embeddings MB':>14}")
    for path, rs in runs.items():
        worst = max(rs, key=lambda r: r["rss_growth_mb"])
        print(f"{path:8} {rate[path]:8.1f} {worst['rss_growth_mb']:14.0f} {worst['anon_growth_mb']:11.0f} "
              f"{worst['shmem_growth_mb']:7.0f} {rs[0]['embeddings_mb']:14.0f}")
    print(f"Ray pool / one process: {result['ray_over_local']:.2f} (target >= 0.9)")
    write_json(result, a.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
