"""RetrieverClient's retries, against a real HTTP server on 127.0.0.1 that fails on purpose."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ragcun.client import RetrieverClient, ServerError


class FlakyServer:
    """Answers the first ``failures`` requests with ``status`` (or a dropped connection), then 200."""

    def __init__(self, failures: int, status: int | None):
        self.failures, self.status, self.requests = failures, status, 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output clean
                pass

            def do_POST(self):  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                server.requests += 1
                if server.requests <= server.failures:
                    if server.status == "slow":  # stranded: answers after the client gave up
                        time.sleep(1.0)
                        return
                    if server.status is None:
                        self.close_connection = True
                        self.connection.shutdown(2)  # a replica that died mid-request
                        return
                    self._send(server.status, {"detail": "replica unavailable"})
                    return
                self._send(200, {"results": [{"id": "d0", "text": body["query"], "distance": 0.0, "metadata": {}}],
                                 "took_ms": 1.0})

            def _send(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def flaky(request):
    server = FlakyServer(*request.param)
    yield server
    server.close()


@pytest.mark.parametrize("flaky", [(2, 503), (3, 500), (2, None)], indirect=True)
def test_transient_failures_are_retried(flaky):
    client = RetrieverClient(flaky.url, timeout=5, retries=3, backoff=0.01)
    assert client.search("cats")[0]["text"] == "cats"
    assert flaky.requests == flaky.failures + 1 and client.retried == flaky.failures


@pytest.mark.parametrize("flaky", [(1, "slow")], indirect=True)
def test_a_timed_out_request_is_retried(flaky):
    client = RetrieverClient(flaky.url, timeout=0.3, retries=2, backoff=0.01)
    assert client.search("cats")[0]["text"] == "cats"
    assert flaky.requests == 2 and client.retried == 1


@pytest.mark.parametrize("flaky", [(10, 503)], indirect=True)
def test_retries_are_bounded(flaky):
    client = RetrieverClient(flaky.url, timeout=5, retries=2, backoff=0.01)
    with pytest.raises(ServerError) as info:
        client.search("cats")
    assert info.value.status == 503 and flaky.requests == 3


@pytest.mark.parametrize("flaky", [(1, 422), (1, 413)], indirect=True)
def test_client_errors_are_not_retried(flaky):
    client = RetrieverClient(flaky.url, timeout=5, retries=3, backoff=0.01)
    with pytest.raises(ServerError):
        client.search("cats")
    assert flaky.requests == 1


@pytest.mark.parametrize("flaky", [(1, 503)], indirect=True)
def test_retries_off(flaky):
    with pytest.raises(ServerError):
        RetrieverClient(flaky.url, timeout=5, retries=0).search("cats")
    assert flaky.requests == 1


def test_connection_refused_is_retried_then_raised():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    client = RetrieverClient(f"http://127.0.0.1:{port}", timeout=2, retries=2, backoff=0.01)
    with pytest.raises(urllib.error.URLError):
        client.search("cats")
    assert client.retried == 2
