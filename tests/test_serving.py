"""The Serve application on a local Ray, queried over real HTTP on loopback: results equal
GaussianRetriever's on the same index, bad bodies get a 4xx and the server keeps serving,
`serve run serve.app:app` works from the command line, and so does Serve's HAProxy ingress."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ragcun import GaussianRetriever
from ragcun.client import RetrieverClient, ServerError
from ragcun.config import ServeConfig
from ragcun.serving import free_port

from .conftest import REPO

pytestmark = pytest.mark.ray

QUERIES = ["machine learning models", "cats sleep", "vaccine trial results", "heart disease risk", "gene"]
LIMITS = {"max_top_k": 20, "max_query_chars": 200, "max_batch_queries": 8, "max_body_bytes": 4000}


@pytest.fixture(scope="module")
def index_dir(served_index_dir) -> Path:
    return served_index_dir


@pytest.fixture(scope="module")
def server(ray_cluster, index_dir):
    from ray import serve

    from ragcun.serving import build_app

    port = free_port()
    for attempt in range(2):  # on a loaded machine the HTTP proxy can miss Serve's start-up timeout once
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            break
        except ray_cluster.exceptions.RayError:
            serve.shutdown()
            if attempt:
                raise
    config = ServeConfig(index_dir=str(index_dir), num_cpus=0.25, max_batch_size=8, **LIMITS)
    serve.run(build_app(config), name="ragcun", route_prefix="/")
    client = RetrieverClient(f"http://127.0.0.1:{port}", timeout=60)
    client.wait_until_ready()
    yield client
    serve.shutdown()  # a left-over replica holds CPU that later training tests need


def post(client: RetrieverClient, path: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(client.base_url + path, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def assert_same_hits(got: list[dict], want: list[dict]) -> None:
    assert [h["id"] for h in got] == [h["id"] for h in want]
    assert [h["text"] for h in got] == [h["text"] for h in want]
    assert [h["metadata"] for h in got] == [h["metadata"] for h in want]
    assert [h["distance"] for h in got] == pytest.approx([h["distance"] for h in want], abs=1e-4)


def test_http_results_equal_the_retriever(server, index_dir):
    local = GaussianRetriever.load(index_dir)
    for query in QUERIES:
        assert_same_hits(server.search(query, top_k=5), local.search([query], 5)[0])
        texts, distances = zip(*local.retrieve(query, top_k=3))
        hits = server.search(query, top_k=3)
        assert [h["text"] for h in hits] == list(texts)
        assert [h["distance"] for h in hits] == pytest.approx(distances, abs=1e-4)
    batch = server.search_batch(QUERIES, top_k=4)
    for got, want in zip(batch, local.search(QUERIES, 4)):
        assert_same_hits(got, want)


@contextlib.contextmanager
def second_app(server: RetrieverClient, directory: Path, name: str):
    """Another application on the same Serve instance, over ``directory``, at ``/<name>``; deleted after."""
    from ray import serve

    from ragcun.serving import build_app

    serve.run(build_app(ServeConfig(index_dir=str(directory), num_cpus=0.1, **LIMITS)), name=f"ragcun_{name}",
              route_prefix=f"/{name}")
    try:
        client = RetrieverClient(f"{server.base_url}/{name}", timeout=60)
        client.wait_until_ready()
        yield client
    finally:
        serve.delete(f"ragcun_{name}")


@pytest.mark.parametrize("index_type", ["binary", "int8"])
def test_quantised_indexes_over_http_equal_the_retriever(server, index_dir, tmp_path, index_type):
    """A second application on the same Serve instance, over a sign-bit (rescored) or fixed-range int8 index."""
    source = GaussianRetriever.load(index_dir)
    retriever = GaussianRetriever(model=source.model, index_type=index_type, rescore_multiplier=2)
    retriever.add_documents(source.documents, ids=source.doc_ids, metadata=source.metadata)
    quantised_dir = retriever.save(tmp_path / index_type)
    with second_app(server, quantised_dir, index_type) as client:
        assert client.info()["index_type"] == index_type
        local = GaussianRetriever.load(quantised_dir)
        for query in QUERIES:
            assert_same_hits(client.search(query, top_k=5), local.search([query], 5)[0])


def test_openvino_int8_index_over_http_equals_the_retriever(server, index_dir, tmp_path):
    """An index whose documents an int8 OpenVINO encoder embedded: the replica encodes queries with the graph
    saved in the directory, so HTTP answers equal GaussianRetriever.load's."""
    from ragcun.openvino_encoder import with_backend

    source = GaussianRetriever.load(index_dir)
    retriever = GaussianRetriever(model=with_backend(source.model, "openvino-int8", source.documents))
    retriever.add_documents(source.documents, ids=source.doc_ids, metadata=source.metadata)
    int8_dir = retriever.save(tmp_path / "openvino_int8")
    with second_app(server, int8_dir, "openvino") as client:
        assert client.info()["encoder_backend"] == "openvino-int8"
        local = GaussianRetriever.load(int8_dir)
        for query in QUERIES:
            assert_same_hits(client.search(query, top_k=5), local.search([query], 5)[0])


def test_bm25_and_hybrid_modes_over_http(server, index_dir, tmp_path):
    code, payload = post(server, "/search", b'{"query": "cats", "mode": "bm25"}')
    assert code == 422 and "no BM25 index" in payload["detail"]  # the fixture's index has none
    source = GaussianRetriever.load(index_dir)
    retriever = GaussianRetriever(model=source.model, bm25=True)
    retriever.add_documents(source.documents, ids=source.doc_ids, metadata=source.metadata)
    bm25_dir = retriever.save(tmp_path / "bm25_index")
    with second_app(server, bm25_dir, "lexical") as client:
        assert client.info()["modes"] == ["dense", "bm25", "hybrid"]
        local = GaussianRetriever.load(bm25_dir)
        for mode in ("dense", "bm25", "hybrid"):
            for query in QUERIES[:3]:
                got, want = client.search(query, top_k=4, mode=mode), local.search([query], 4, mode=mode)[0]
                assert [h["id"] for h in got] == [h["id"] for h in want]
                assert [h.get("score") for h in got] == pytest.approx([h.get("score") for h in want], abs=1e-5)
        batch = client.search_batch(QUERIES[:2], top_k=3, mode="hybrid")
        assert [[h["id"] for h in row] for row in batch] == \
            [[h["id"] for h in row] for row in local.search(QUERIES[:2], 3, mode="hybrid")]
        code, payload = post(client, "/search", b'{"query": "cats", "mode": "sparse"}')
        assert code == 422


def test_concurrent_requests_are_batched_and_correct(server, index_dir):
    local = GaussianRetriever.load(index_dir)
    queries = [QUERIES[i % len(QUERIES)] for i in range(32)]
    top_ks = [1 + i % 7 for i in range(32)]  # one batch mixes top_k values: each request gets its own
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda qk: server.search(*qk), zip(queries, top_ks)))
    for query, top_k, hits in zip(queries, top_ks, results):
        assert len(hits) == top_k
        assert_same_hits(hits, local.search([query], top_k)[0])
    assert 1 < server.info()["batching"]["largest_recent_batch"] <= 8  # grouped, within max_batch_size


def test_health_info_and_openapi(server, index_dir):
    assert server.health() == {"status": "ok", "num_documents": 18}
    info = server.info()
    assert info["num_documents"] == 18 and info["dim"] == 16 and info["distance"] == "l2"
    assert info["index_type"] == "flat" and info["device"] == "cpu" and info["limits"]["max_top_k"] == 20
    assert info["encoder_backend"] == "torch"
    with urllib.request.urlopen(server.base_url + "/openapi.json", timeout=30) as response:
        schema = json.loads(response.read())
    assert {"/search", "/search/batch", "/healthz", "/info"} <= set(schema["paths"])
    assert "SearchRequest" in schema["components"]["schemas"]


@pytest.mark.parametrize("path, body, status, message", [
    ("/search", b'{"top_k": 3}', 422, "Field required"),
    ("/search", b'{"query": ""}', 422, "empty query"),
    ("/search", b'{"query": "   "}', 422, "empty query"),
    ("/search", b'{"query": "cats", "top_k": 1000000}', 422, "top_k must be between 1 and 20"),
    ("/search", b'{"query": "cats", "top_k": 0}', 422, "top_k must be between 1 and 20"),
    ("/search", b'{"query": 5}', 422, "valid string"),
    ("/search", b'{"query": "cats", "top_k": "many"}', 422, "valid integer"),
    ("/search", b'{"query": "cats", "extra": 1}', 422, "Extra inputs"),
    ("/search", b"not json at all", 422, "JSON decode error"),
    ("/search", json.dumps({"query": "x" * 300}).encode(), 422, "exceeds the limit of 200"),
    ("/search", json.dumps({"query": "x" * 5000}).encode(), 413, "exceeds the limit of 4000 bytes"),
    ("/search/batch", b'{"queries": []}', 422, "between 1 and 8 queries"),
    ("/search/batch", json.dumps({"queries": ["a"] * 9}).encode(), 422, "between 1 and 8 queries"),
    ("/search/batch", b'{"queries": ["cats", ""]}', 422, "queries[1]: empty query"),
    ("/search/batch", b'{"queries": "cats"}', 422, "valid list"),
])
def test_bad_bodies_get_4xx_and_the_server_keeps_serving(server, path, body, status, message):
    code, payload = post(server, path, body)
    assert code == status and message in json.dumps(payload), payload
    assert len(server.search("cats sleep", top_k=2)) == 2


def _chunked_post(client: RetrieverClient, path: str, chunks: list[bytes]) -> tuple[int, dict]:
    """POST with Transfer-Encoding: chunked (no Content-Length header)."""
    import http.client
    from urllib.parse import urlparse

    url = urlparse(client.base_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        connection.request("POST", path, body=iter(chunks), encode_chunked=True,
                           headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_a_chunked_body_over_the_limit_gets_413(server):
    """The limit counts bytes as they arrive: a chunked body has no Content-Length to check."""
    small = json.dumps({"query": "cats sleep", "top_k": 2}).encode()
    code, payload = _chunked_post(server, "/search", [small[:10], small[10:]])
    assert code == 200 and len(payload["results"]) == 2
    big = json.dumps({"query": "cats " * 2000}).encode()  # 10 kB > max_body_bytes 4000
    code, payload = _chunked_post(server, "/search", [big[i:i + 1000] for i in range(0, len(big), 1000)])
    assert code == 413 and "exceeds the limit of 4000 bytes" in payload["detail"]
    assert len(server.search("cats sleep", top_k=2)) == 2


def test_client_raises_server_errors(server):
    with pytest.raises(ServerError) as info:
        server.search("", top_k=2)
    assert info.value.status == 422 and "empty query" in str(info.value.detail)


def test_serve_config_file_and_builder_arguments(index_dir):
    import yaml
    from ray.serve.schema import ServeDeploySchema

    from ragcun.serving import build_app, config_from_args

    raw = yaml.safe_load((REPO / "serve" / "config.yaml").read_text())
    schema = ServeDeploySchema.parse_obj(raw)
    assert schema.http_options.host == "127.0.0.1"
    args = {**raw["applications"][0]["args"], "index_dir": str(index_dir)}
    config = config_from_args({k: str(v) for k, v in args.items()})  # `serve run … key=value` gives strings
    assert config.num_gpus == 0.0 and config.max_batch_size == 16 and config.index_dir == str(index_dir)
    build_app(config)
    with pytest.raises(ValueError, match="unknown Serve argument 'top_k'"):
        config_from_args({"top_k": "3"})
    with pytest.raises(Exception, match="manifest.json"):
        build_app(ServeConfig(index_dir=str(index_dir.parent / "missing")))


def test_readme_curl_commands_and_client_block(server):
    """docs/serving.md's curl examples (sent with urllib, to this server's port) and its client block."""
    import re
    import shlex

    readme = (REPO / "docs" / "serving.md").read_text()
    curls = [shlex.split(c.replace("\\\n", " ")) for c in re.findall(r"^curl .*(?:\n(?!curl|#|```).*)*", readme, re.M)]
    assert len(curls) >= 4
    for argv in curls:
        url = next(a for a in argv if a.startswith("http://")).replace("http://127.0.0.1:8000", server.base_url)
        data = argv[argv.index("-d") + 1].encode() if "-d" in argv else None
        request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.status == 200 and json.loads(response.read())
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "RetrieverClient" in b)
    scope: dict = {}
    exec(compile(block.replace("http://127.0.0.1:8000", server.base_url), "docs/serving.md", "exec"), scope)
    assert len(scope["hits"]) == 3 and len(scope["many"]) == 2


def test_ingress_environment():
    from ragcun.serving import ingress_environment

    assert ingress_environment("proxy") == {}
    assert ingress_environment("haproxy") == {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
    assert ingress_environment("haproxy", drain_s=1.0)["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] == "1.0"
    with pytest.raises(ValueError, match="unknown ingress 'nginx'; choose one of proxy, haproxy"):
        ingress_environment("nginx")


def listening_addresses(port: int) -> set[str]:
    """The local addresses with a TCP socket listening on ``port`` (Linux's /proc/net/tcp; IPv6 ones as hex)."""
    import ipaddress

    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(str(ipaddress.IPv4Address(bytes.fromhex(address)[::-1])) if len(address) == 8 else address)
    return found


def test_haproxy_ingress_from_the_config_file(index_dir, tmp_path):
    """`serve run serve/config.yaml` in Ray Serve's HAProxy mode (ragcun's ingress environment), on its own
    local Ray: HAProxy answers on the configured loopback port only, the replica says which ingress it runs
    behind, hits equal the retriever's, and over-limit bodies (declared or chunked) still get their 4xx."""
    import yaml

    from ragcun.serving import ingress_environment

    port = free_port()
    config = yaml.safe_load((REPO / "serve" / "config.yaml").read_text())
    config["http_options"]["port"] = port
    config["applications"][0]["args"].update(index_dir=str(index_dir), num_cpus=1, **LIMITS)
    config_file = tmp_path / "serve.yaml"
    config_file.write_text(yaml.safe_dump(config))
    # HAProxy's files and ports of its own, beside any other Serve on this machine; a short directory, since
    # Ray adds the node id to these paths and HAProxy caps a socket's path at 97 characters.
    state = Path(tempfile.mkdtemp(prefix="haproxy-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(ingress_environment("haproxy", drain_s=1.0), RAY_ADDRESS="local",
               RAY_SERVE_HAPROXY_STATS_PORT=str(free_port()), RAY_SERVE_HAPROXY_METRICS_PORT=str(free_port()),
               RAY_SERVE_HAPROXY_CONFIG_FILE_LOC=str(state / "haproxy.cfg"),
               RAY_SERVE_HAPROXY_SOCKET_PATH=str(state / "admin.sock"),
               RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH=str(state / "metrics.sock"),
               RAY_SERVE_HAPROXY_SERVER_STATE_BASE=str(state),
               RAY_SERVE_HAPROXY_SERVER_STATE_FILE=str(state / "server-state"))
    log = tmp_path / "serve_run.log"
    with log.open("wb") as out:
        process = subprocess.Popen([str(Path(sys.executable).parent / "serve"), "run", str(config_file)],
                                   cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        client = RetrieverClient(f"http://127.0.0.1:{port}", timeout=60)
        try:
            client.wait_until_ready(timeout=180)
        except Exception:
            raise AssertionError(log.read_text()[-3000:]) from None
        assert client.info()["ingress"] == "haproxy"
        local = GaussianRetriever.load(index_dir)
        for query in QUERIES:
            assert_same_hits(client.search(query, top_k=5), local.search([query], 5)[0])
        code, payload = post(client, "/search", json.dumps({"query": "x" * 5000}).encode())
        assert code == 413 and "exceeds the limit of 4000 bytes" in payload["detail"]
        big = json.dumps({"query": "cats " * 2000}).encode()
        code, payload = _chunked_post(client, "/search", [big[i:i + 1000] for i in range(0, len(big), 1000)])
        assert code == 413 and "exceeds the limit of 4000 bytes" in payload["detail"]
        code, payload = post(client, "/search", b'{"query": "  "}')
        assert code == 422 and "empty query" in payload["detail"]
        assert listening_addresses(port) == {"127.0.0.1"}
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        shutil.rmtree(state, ignore_errors=True)


def test_serve_run_command_line(ray_cluster, server, index_dir):
    """`serve run serve.app:app index_dir=…` against the session's cluster (beside the fixture's application,
    under its own route), queried over HTTP, then stopped with Ctrl-C. Last in the module: on Ctrl-C `serve run`
    shuts down the whole Serve instance, the fixture's application included."""
    from ray import serve

    address = ray_cluster.get_runtime_context().gcs_address
    serve_bin = str(Path(sys.executable).parent / "serve")
    process = subprocess.Popen(
        [serve_bin, "run", f"--address={address}", "--name=cli", "--route-prefix=/cli", "serve.app:app",
         f"index_dir={index_dir}", "num_cpus=0.25", "max_top_k=5"],
        cwd=REPO, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        client = RetrieverClient(server.base_url + "/cli", timeout=60)
        client.wait_until_ready(timeout=180)
        local = GaussianRetriever.load(index_dir)
        assert_same_hits(client.search("cats sleep", top_k=3), local.search(["cats sleep"], 3)[0])
        assert client.info()["limits"]["max_top_k"] == 5  # the key=value arguments reached the replica
    finally:
        os.killpg(process.pid, signal.SIGINT)  # `serve run` deletes its application on Ctrl-C
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        serve.shutdown()  # `serve run` shuts all of Serve down on Ctrl-C: this test stays last in the module
