"""A small HTTP client for the ragcun Serve API (standard library only).

    from ragcun.client import RetrieverClient

    client = RetrieverClient("http://127.0.0.1:8000")
    for hit in client.search("what is ML?", top_k=3):
        print(hit["distance"], hit["id"], hit["text"])
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from typing import Any


class ServerError(RuntimeError):
    """The server answered with an error status; ``status`` and ``detail`` say what it objected to."""

    def __init__(self, status: int, detail: Any):
        super().__init__(f"HTTP {status}: {detail}")
        self.status, self.detail = status, detail


RETRY_STATUSES = (500, 502, 503, 504)


class RetrieverClient:
    """Every call of this API is idempotent (a search changes nothing), so a connection error, a timeout
    (a request stranded on a replica that died) or a 5xx is retried up to ``retries`` times with exponential backoff (``backoff`` s doubling, at most
    ``max_backoff`` s): a replica that Serve is replacing costs latency, not an error. A 4xx (a bad request)
    is never retried. ``retries=0`` turns retrying off."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", timeout: float = 30.0, retries: int = 3,
                 backoff: float = 0.1, max_backoff: float = 2.0):
        if retries < 0 or backoff < 0:
            raise ValueError("retries and backoff must be >= 0")
        self.base_url = base_url.rstrip("/")
        url = urllib.parse.urlsplit(self.base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"base_url must be http(s)://host[:port][/prefix], got {base_url!r}")
        self._connection_class = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        self._netloc, self._prefix = url.netloc, url.path.rstrip("/")
        self.timeout = timeout
        self.retries, self.backoff, self.max_backoff = retries, backoff, max_backoff
        self.retried = 0  # how many retries this client has made, for load tests
        # One keep-alive connection per thread: a new TCP connection per request costs about as much as a
        # small search on a busy machine.
        self._local = threading.local()

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        for attempt in range(self.retries + 1):
            try:
                return self._request_once(method, path, body)
            except ServerError as exc:
                if exc.status not in RETRY_STATUSES or attempt == self.retries:
                    raise
            except (OSError, http.client.HTTPException):  # refused, reset, timed out
                if attempt == self.retries:
                    raise
            self.retried += 1
            time.sleep(min(self.max_backoff, self.backoff * 2**attempt))
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close this thread's connection (the next request opens a new one)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def _request_once(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"} if data is not None else {}
        reused = getattr(self._local, "connection", None) is not None
        try:
            status, payload = self._exchange(method, path, data, headers)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            if not reused:
                raise
            # The server closed the idle keep-alive connection: that is not a failure of this request.
            status, payload = self._exchange(method, path, data, headers)
        if status >= 400:
            try:
                detail = json.loads(payload).get("detail", payload.decode("utf-8", "replace"))
            except (ValueError, AttributeError):
                detail = payload.decode("utf-8", "replace")
            raise ServerError(status, detail)
        return json.loads(payload)

    def _exchange(self, method: str, path: str, data: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
        """One request on this thread's connection (opened when there is none); closed again on any error
        or when the server says it will close it."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._connection_class(self._netloc, timeout=self.timeout)
        try:
            connection.request(method, self._prefix + path, body=data, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        except BaseException:
            self.close()
            raise
        if response.will_close:
            self.close()
        return response.status, payload

    def search(self, query: str, top_k: int = 10, mode: str = "dense") -> list[dict[str, Any]]:
        """Hits (id, text, distance, score, metadata), best first; ``mode`` dense, bm25 or hybrid."""
        return self._request("POST", "/search", {"query": query, "top_k": top_k, "mode": mode})["results"]

    def search_batch(self, queries: list[str], top_k: int = 10, mode: str = "dense") -> list[list[dict[str, Any]]]:
        return self._request("POST", "/search/batch",
                             {"queries": list(queries), "top_k": top_k, "mode": mode})["results"]

    def health(self) -> dict[str, Any]:
        return self._request("GET", "/healthz")

    def info(self) -> dict[str, Any]:
        return self._request("GET", "/info")

    def wait_until_ready(self, timeout: float = 120.0, interval: float = 0.5) -> dict[str, Any]:
        """Poll /healthz until the deployment answers (replicas load the model first)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._request_once("GET", "/healthz")
            except (OSError, http.client.HTTPException, ServerError) as exc:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.base_url} not ready after {timeout:.0f} s ({exc})") from exc
                time.sleep(interval)
