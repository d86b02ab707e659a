"""A small HTTP client for the ragcun Serve API (standard library only).

    from ragcun.client import RetrieverClient

    client = RetrieverClient("http://127.0.0.1:8000")
    for hit in client.search("what is ML?", top_k=3):
        print(hit["distance"], hit["id"], hit["text"])
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any


class ServerError(RuntimeError):
    """The server answered with an error status; ``status`` and ``detail`` say what it objected to."""

    def __init__(self, status: int, detail: Any):
        super().__init__(f"HTTP {status}: {detail}")
        self.status, self.detail = status, detail


class RetrieverClient:
    def __init__(self, base_url: str = "http://127.0.0.1:8000", timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(self.base_url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"} if data is not None else {})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            try:
                detail = json.loads(payload).get("detail", payload.decode("utf-8", "replace"))
            except (ValueError, AttributeError):
                detail = payload.decode("utf-8", "replace")
            raise ServerError(exc.code, detail) from None

    def search(self, query: str, top_k: int = 10) -> list[dict[str, Any]]:
        """Hits (id, text, distance, metadata), nearest first."""
        return self._request("POST", "/search", {"query": query, "top_k": top_k})["results"]

    def search_batch(self, queries: list[str], top_k: int = 10) -> list[list[dict[str, Any]]]:
        return self._request("POST", "/search/batch", {"queries": list(queries), "top_k": top_k})["results"]

    def health(self) -> dict[str, Any]:
        return self._request("GET", "/healthz")

    def info(self) -> dict[str, Any]:
        return self._request("GET", "/info")

    def wait_until_ready(self, timeout: float = 120.0, interval: float = 0.5) -> dict[str, Any]:
        """Poll /healthz until the deployment answers (replicas load the model first)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.health()
            except (OSError, ServerError) as exc:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.base_url} not ready after {timeout:.0f} s ({exc})") from exc
                time.sleep(interval)
