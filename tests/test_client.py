"""RetrieverClient's retries, against a real HTTP server on 127.0.0.1 that fails on purpose."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ragcun.client import RetrieverClient, ServerError


class FlakyServer:
    """Answers the first ``failures`` requests with ``status`` (or a dropped connection), then 200."""

    def __init__(self, failures: int, status: int | None, keep_alive: bool = False, drop_idle: bool = False):
        self.failures, self.status, self.requests, self.connections = failures, status, 0, 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            # HTTP/1.1 keeps the connection open between requests; drop_idle closes it after each answer
            # without saying so, as a server whose keep-alive timeout has passed does.
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

            def setup(self):
                super().setup()
                server.connections += 1

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
                if drop_idle:
                    self.close_connection = True

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
    with pytest.raises(ConnectionRefusedError):
        client.search("cats")
    assert client.retried == 2


@pytest.mark.parametrize("flaky", [(0, None, True)], indirect=True)
def test_requests_share_one_keep_alive_connection(flaky):
    client = RetrieverClient(flaky.url, timeout=5, retries=0)
    assert [client.search(q)[0]["text"] for q in ("a", "b", "c")] == ["a", "b", "c"]
    assert flaky.requests == 3 and flaky.connections == 1


@pytest.mark.parametrize("flaky", [(0, None, True, True)], indirect=True)
def test_a_connection_the_server_closed_while_idle_is_reopened_without_a_retry(flaky):
    client = RetrieverClient(flaky.url, timeout=5, retries=0)
    assert [client.search(q)[0]["text"] for q in ("a", "b", "c")] == ["a", "b", "c"]
    assert flaky.requests == 3 and flaky.connections == 3 and client.retried == 0


def test_threads_get_their_own_connections():
    server = FlakyServer(0, None, keep_alive=True)
    try:
        client = RetrieverClient(server.url, timeout=5, retries=0)
        answers: list[str] = []
        threads = [threading.Thread(target=lambda q=q: answers.append(client.search(q)[0]["text"])) for q in "xyz"]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(answers) == ["x", "y", "z"] and server.connections == 3
    finally:
        server.close()


def test_a_base_url_that_is_not_http_is_refused():
    with pytest.raises(ValueError, match="base_url"):
        RetrieverClient("127.0.0.1:8000")
