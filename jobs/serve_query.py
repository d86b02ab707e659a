#!/usr/bin/env python3
"""Serve an index directory with Ray Serve on 127.0.0.1, send it a few queries over HTTP, print the hits.

    python jobs/serve_query.py --index_dir runs/demo/scifact_index --query "What causes ALS?"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ragcun.cli import run_main  # noqa: E402

DEFAULT_QUERIES = [
    "0-dimensional biomaterials show inductive properties.",
    "Vitamin D deficiency is associated with multiple sclerosis.",
    "Statins reduce the risk of cardiovascular events.",
]


def format_answers(result: dict[str, Any], width: int = 100) -> str:
    lines = [f"Serve answered at {result['url']} ({result['info']['num_documents']} documents, "
             f"{result['info']['index_type']} index, ready in {result['ready_s']:.1f} s)"]
    for answer, ms in zip(result["answers"], result["latency_ms"]):
        mode = answer.get("mode", "dense")
        measure = "distance" if mode == "dense" else "fused score"
        lines.append(f"\nQ: {answer['query']}   [{mode}: {measure}; {ms:.0f} ms over HTTP]")
        for hit in answer["hits"]:
            text = hit["text"].replace("\n", " ")
            value = hit["distance"] if mode == "dense" else hit["score"]
            lines.append(f"  {value:7.3f}  {hit['id']:>10}  {text[: width - 24]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index_dir", required=True, help="an index directory (jobs/build_index.py)")
    p.add_argument("--query", action="append", help="a query (repeatable; default: three SciFact claims)")
    p.add_argument("--top_k", type=int, default=3)
    p.add_argument("--num_cpus", type=float, default=1.0, help="CPUs for the replica")
    p.add_argument("--output_file", default=None, help="write the answers as JSON")
    a = p.parse_args(argv)
    import ray

    from ragcun.config import ServeConfig
    from ragcun.index.directory import read_manifest
    from ragcun.serving import serve_and_query

    read_manifest(a.index_dir)  # a wrong path fails before Ray starts
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    result = serve_and_query(ServeConfig(index_dir=a.index_dir, num_cpus=a.num_cpus), a.query or DEFAULT_QUERIES,
                             top_k=a.top_k)
    print(format_answers(result))
    if a.output_file:
        from ragcun.data.io import write_json

        write_json(result, a.output_file)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
