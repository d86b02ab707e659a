"""Serve an index directory on a local Ray, ask it a few questions over HTTP, print the answers, shut down.

The last step of ``make demo`` (``python jobs/serve_query.py``): the same Serve application as
``serve run serve.app:app``, started in-process on 127.0.0.1 and queried with :class:`RetrieverClient`.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from ragcun.client import RetrieverClient
from ragcun.config import ServeConfig


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_and_query(config: ServeConfig, queries: list[str], top_k: int = 3, port: int | None = None) -> dict[str, Any]:
    """Deploy ``config`` on the current Ray (``ray.init`` first), query it, shut Serve down; returns the
    answers, /info and the HTTP latencies."""
    from ray import serve

    from ragcun.serving import build_app

    port = port or free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        started = time.perf_counter()
        serve.run(build_app(config), name="ragcun", route_prefix="/")
        client = RetrieverClient(f"http://127.0.0.1:{port}", timeout=120)
        client.wait_until_ready()
        ready_s = time.perf_counter() - started
        info = client.info()
        modes = ["dense", "hybrid"] if "hybrid" in info.get("modes", []) else ["dense"]
        answers, latencies = [], []
        for query in queries:
            for mode in modes:
                t = time.perf_counter()
                answers.append({"query": query, "mode": mode, "hits": client.search(query, top_k=top_k, mode=mode)})
                latencies.append(1000 * (time.perf_counter() - t))
        return {"url": client.base_url, "ready_s": ready_s, "info": info, "answers": answers,
                "latency_ms": latencies}
    finally:
        serve.shutdown()


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
