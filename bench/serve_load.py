#!/usr/bin/env python3
"""Load test of the Serve retriever over HTTP on 127.0.0.1 (a benchmark, not a test).

Phases, each against a fresh deployment of the same index directory on a local Ray, for each Serve HTTP
ingress (``--ingress``: Serve's Python proxy, and HAProxy, Ray Serve's high-throughput mode; each on its own
local Ray, since the ingress is chosen when Ray starts):
  1. in-process: GaussianRetriever.search for one query (encode + FAISS), the floor for HTTP latency, before
     Ray starts and again with each ingress's Ray and Serve idling beside it (the same 2 cores);
  2. batched:   one replica (``--replica_cpus``, default all of Ray's), continuous batching up to 16 queries
     (ragcun.batching), N concurrent clients for D seconds;
  3. unbatched: max_batch_size 1, same load;
  4. replica kill: 2 replicas, same load, one replica killed (ray.kill) a third of the way in; client-visible
     errors are counted with the client's retries off (``replica_kill_no_retry``) and on (``replica_kill``,
     RetrieverClient's default), and the time until Serve has 2 running replicas again is measured.

Each steady deployment also gets a one-client breakdown on a keep-alive connection: GET /healthz (the
ingress's own cost: Serve's proxy and its Ray call, or HAProxy and the replica's HTTP server), the time the
replica's route reports, and POST /search. The batched one also gets ``--paired_rounds`` alternating rounds of
that client's POST /search and the driver's in-process call, each round's ratio taken within the same minutes
(the in-process floor before Ray starts stays the target's).

Prints a table and writes JSON (p50/p99 latency, QPS, errors, HTTP p50 / in-process p50).

    python bench/serve_load.py --index_dir runs/bench/scifact_minilm_flat --clients 16 --duration 30
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ragcun.client import RetrieverClient  # noqa: E402
from ragcun.config import ServeConfig  # noqa: E402
from ragcun.serving import free_port  # noqa: E402


def load_queries(index_dir: Path, limit: int = 300) -> list[str]:
    """SciFact's test queries when the index is over SciFact, else document prefixes as queries."""
    queries_file = Path(__file__).resolve().parents[1] / "data" / "scifact" / "queries.jsonl"
    if queries_file.is_file():
        return [json.loads(line)["text"] for line in queries_file.open()][:limit]
    from ragcun.index.directory import read_documents_table

    return [t[:120] for t in read_documents_table(index_dir)[1][:limit]]


def percentiles_ms(seconds: list[float]) -> dict:
    return {"p50_ms": 1000 * float(np.percentile(seconds, 50)), "p99_ms": 1000 * float(np.percentile(seconds, 99))}


def load_retriever(index_dir: Path, queries: list[str]):
    from ragcun import GaussianRetriever

    retriever = GaussianRetriever.load(index_dir)
    retriever.search(queries[:4], 10)  # warm-up
    return retriever


def search_seconds(retriever, queries: list[str], repeats: int, offset: int = 0) -> list[float]:
    """Seconds of ``retriever.search`` (encode + FAISS) for one query at a time, back to back."""
    times = []
    for i in range(offset, offset + repeats):
        started = time.perf_counter()
        retriever.search([queries[i % len(queries)]], 10)
        times.append(time.perf_counter() - started)
    return times


def in_process_latency(index_dir: Path, queries: list[str], repeats: int, threads: int | None = None) -> dict:
    """encode + search of one query in this process; ``threads`` torch threads (default: torch's own)."""
    import torch

    default_threads = torch.get_num_threads()
    torch.set_num_threads(threads or default_threads)
    try:
        times = search_seconds(load_retriever(index_dir, queries), queries, repeats)
    finally:
        torch.set_num_threads(default_threads)
    return {**percentiles_ms(times), "torch_threads": threads or default_threads}


class KeepAlive:
    """One client on one keep-alive HTTP connection; ``call`` returns (seconds, decoded JSON answer)."""

    def __init__(self, base_url: str):
        import http.client
        import urllib.parse

        self.connection = http.client.HTTPConnection(urllib.parse.urlsplit(base_url).netloc, timeout=60)

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[float, dict]:
        started = time.perf_counter()
        self.connection.request(method, path, body=None if body is None else json.dumps(body),
                                headers={"Content-Type": "application/json"})
        answer = json.loads(self.connection.getresponse().read())
        return time.perf_counter() - started, answer

    def search(self, queries: list[str], repeats: int, offset: int = 0) -> list[tuple[float, dict]]:
        return [self.call("POST", "/search", {"query": queries[i % len(queries)], "top_k": 10})
                for i in range(offset, offset + repeats)]

    def close(self) -> None:
        self.connection.close()


def one_client_breakdown(base_url: str, queries: list[str], repeats: int) -> dict:
    """Where one client's latency goes, on one keep-alive connection: GET /healthz (a route that does
    nothing: the HTTP proxy and the Ray call to the replica) and POST /search, with the time the replica's
    route reports (``took_ms``: validation, batching, encode + search)."""
    client = KeepAlive(base_url)
    health = [client.call("GET", "/healthz")[0] for _ in range(repeats)]
    searches = client.search(queries, repeats)
    client.close()
    return {"healthz": percentiles_ms(health), "search": percentiles_ms([s for s, _ in searches]),
            "replica_route": percentiles_ms([answer["took_ms"] / 1000 for _, answer in searches])}


def one_client_paired(base_url: str, retriever, queries: list[str], rounds: int, calls: int) -> dict:
    """One client's POST /search (keep-alive) and the driver's in-process search, in alternating rounds of
    ``calls`` each (the order flips every round) while the deployment is up: each round's HTTP p50 over the
    in-process p50 of the same minutes, so the machine's drift and Serve's presence on the shared cores fall
    on both sides. The target's floor stays the in-process call before Ray starts."""
    client = KeepAlive(base_url)
    per_round = []
    for r in range(rounds):
        offset = r * calls
        sides = {}
        for side in (("http", "in_process") if r % 2 == 0 else ("in_process", "http")):
            if side == "http":
                sides[side] = [s for s, _ in client.search(queries, calls, offset)]
            else:
                sides[side] = search_seconds(retriever, queries, calls, offset)
        per_round.append({f"{side}_p50_ms": 1000 * float(np.median(t)) for side, t in sides.items()})
    client.close()
    ratios = [r["http_p50_ms"] / r["in_process_p50_ms"] for r in per_round]
    return {"rounds": rounds, "calls_per_round": calls, "per_round": per_round,
            "http_p50_ms": float(np.median([r["http_p50_ms"] for r in per_round])),
            "in_process_p50_ms": float(np.median([r["in_process_p50_ms"] for r in per_round])),
            "http_over_in_process_median_of_rounds": float(np.median(ratios)),
            "http_over_in_process_range": [min(ratios), max(ratios)]}


def run_load(base_url: str, queries: list[str], clients: int, duration: float, on_tick=None,
             retries: int = 3) -> dict:
    """``clients`` threads send POST /search back to back for ``duration`` seconds; ``retries`` is the
    client's retry budget per request (0: every failed attempt is an error the caller sees)."""
    latencies: list[float] = []
    errors: list[str] = []
    retried: list[int] = []
    lock = threading.Lock()
    stop = time.monotonic() + duration

    def worker(seed: int) -> None:
        client = RetrieverClient(base_url, timeout=60, retries=retries)
        i = seed
        while time.monotonic() < stop:
            started = time.perf_counter()
            try:
                client.search(queries[i % len(queries)], top_k=10)
                with lock:
                    latencies.append(time.perf_counter() - started)
            except Exception as exc:  # noqa: BLE001 - every failure counts as an error
                with lock:
                    errors.append(type(exc).__name__)
            i += clients
        with lock:
            retried.append(client.retried)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    if on_tick is not None:
        on_tick(started)
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    lat = np.array(latencies) if latencies else np.array([np.nan])
    return {"requests": len(latencies), "errors": len(errors), "error_types": sorted(set(errors)),
            "client_retries": retries, "retried_attempts": sum(retried),
            "qps": len(latencies) / wall, "p50_ms": 1000 * float(np.percentile(lat, 50)),
            "p99_ms": 1000 * float(np.percentile(lat, 99)), "wall_s": wall}


def deploy(index_dir: Path, port: int, **overrides) -> str:
    from ray import serve

    from ragcun.serving import build_app

    serve.run(build_app(ServeConfig(index_dir=str(index_dir), **overrides)), name="bench", route_prefix="/")
    base_url = f"http://127.0.0.1:{port}"
    RetrieverClient(base_url).wait_until_ready(timeout=300)
    return base_url


def running_replicas() -> int:
    from ray import serve

    status = serve.status().applications["bench"].deployments["Retriever"]
    return int(status.replica_states.get("RUNNING", 0))


def kill_one_replica() -> str:
    """ray.kill one replica actor of the deployment (found by name through the GCS; Serve must replace it)."""
    import ray

    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
             if a["namespace"] == "serve" and a["name"].startswith("SERVE_REPLICA::bench#Retriever")]
    victim = sorted(names)[0]
    ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
    return victim


def replica_kill_phase(index_dir: Path, port: int, queries: list[str], clients: int, duration: float,
                       retries: int) -> dict:
    """2 replicas under load; one is killed a third of the way in. Errors are what the clients saw."""
    from ray import serve

    base_url = deploy(index_dir, port, num_cpus=0.5, num_replicas=2, max_batch_size=16)
    kill: dict = {}

    def kill_during_load(started: float) -> None:
        time.sleep(duration / 3)
        kill["victim"] = kill_one_replica()
        killed_at = time.monotonic()
        while running_replicas() >= 2 and time.monotonic() < killed_at + 60:  # the controller notices the death
            time.sleep(0.1)
        kill["detected_after_s"] = time.monotonic() - killed_at
        while running_replicas() < 2 and time.monotonic() < killed_at + 600:  # ...and starts a new replica
            time.sleep(0.25)
        kill["replaced_after_s"] = time.monotonic() - killed_at

    load = run_load(base_url, queries, clients, duration, retries=retries, on_tick=lambda s: threading.Thread(
        target=kill_during_load, args=(s,), daemon=True).start())
    deadline = time.monotonic() + 600
    while "replaced_after_s" not in kill and time.monotonic() < deadline:
        time.sleep(0.5)
    result = {**load, **kill, "replicas_running_after": running_replicas()}
    serve.delete("bench")
    return result


def ingress_phases(ingress: str, index_dir: Path, queries: list[str], a: argparse.Namespace) -> dict:
    """Every HTTP phase on a fresh local Ray started with ``ingress``'s environment (Serve's controller reads it
    when it starts, so each ingress gets its own cluster)."""
    import os

    import ray
    from ray import serve

    from ragcun.serving import ingress_environment

    environment = ingress_environment(ingress, drain_s=1.0)  # phases delete deployments: no 30 s drains
    os.environ.update(environment)
    try:
        ray.init(address="local", num_cpus=a.num_cpus, include_dashboard=False, log_to_driver=False)
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        results: dict = {}
        steady = () if a.only_replica_kill else (("batched", {"max_batch_size": 16}),
                                                 ("unbatched", {"max_batch_size": 1}))
        for name, overrides in steady:
            base_url = deploy(index_dir, port, num_cpus=a.replica_cpus or a.num_cpus, **overrides)
            info = RetrieverClient(base_url).info()
            assert info["ingress"] == ingress, f"asked for the {ingress} ingress, the replica reports {info['ingress']}"
            if "in_process_beside_serve" not in results:
                # The same floor with this Ray and Serve idling beside it, on the same 2 cores as the replica.
                results["in_process_beside_serve"] = in_process_latency(index_dir, queries, 200)
            run_load(base_url, queries, a.clients, 3.0)  # warm-up
            results[name] = run_load(base_url, queries, a.clients, a.duration)
            results[name]["largest_recent_batch"] = RetrieverClient(base_url).info()["batching"]["largest_recent_batch"]
            print(ingress, name, json.dumps(results[name]), flush=True)
            # One client: HTTP + Serve overhead without queueing behind other requests.
            results[f"{name}_1_client"] = run_load(base_url, queries, 1, min(10.0, a.duration))
            print(ingress, f"{name}_1_client", json.dumps(results[f"{name}_1_client"]), flush=True)
            results[f"{name}_breakdown"] = one_client_breakdown(base_url, queries, 200)
            print(ingress, f"{name}_breakdown", json.dumps(results[f"{name}_breakdown"]), flush=True)
            if name == "batched" and a.paired_rounds:
                results["batched_1_client_paired"] = one_client_paired(
                    base_url, load_retriever(index_dir, queries), queries, a.paired_rounds, 150)
                print(ingress, "batched_1_client_paired", json.dumps(results["batched_1_client_paired"]), flush=True)
            serve.delete("bench")
        for name, retries in (("replica_kill_no_retry", 0), ("replica_kill", 3)):
            results[name] = replica_kill_phase(index_dir, port, queries, a.clients, a.duration, retries)
            print(ingress, name, json.dumps(results[name]), flush=True)
        serve.shutdown()
        ray.shutdown()
    finally:
        for key in environment:
            os.environ.pop(key, None)
    return results


def table_rows(ingress: str, results: dict, floor: float, clients: int) -> list[tuple]:
    rows = []
    for name in ("batched_breakdown", "unbatched_breakdown"):
        for part in ("healthz", "replica_route", "search") if name in results else ():
            r = results[name][part]
            rows.append((f"{ingress}: {name.split('_')[0]}, 1 client: {part}", "-", f"{r['p50_ms']:.1f}",
                         f"{r['p99_ms']:.1f}", "-", "-", f"{r['p50_ms'] / floor:.2f}"))
    for name in ("batched_1_client", "unbatched_1_client", "batched", "unbatched", "replica_kill_no_retry",
                 "replica_kill"):
        if name in results:
            r = results[name]
            label = name.replace("_1_client", ", 1 client") if "1_client" in name else f"{name}, {clients} clients"
            rows.append((f"{ingress}: {label}", str(r["requests"]), f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
                         f"{r['qps']:.1f}", str(r["errors"]), f"{r['p50_ms'] / floor:.2f}"))
    return rows


def main() -> int:
    from ragcun.serving import INGRESSES

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index_dir", required=True)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--num_cpus", type=float, default=2.0, help="Ray CPUs (local cluster)")
    p.add_argument("--replica_cpus", type=float, default=None,
                   help="CPUs of the one replica of the steady phases (default: --num_cpus, so its torch has as "
                        "many threads as the in-process floor's)")
    p.add_argument("--ingress", nargs="+", choices=INGRESSES, default=list(INGRESSES),
                   help="Serve HTTP ingresses to measure, each on its own local Ray")
    p.add_argument("--output", default="bench/results/serve_load.json")
    p.add_argument("--paired_rounds", type=int, default=8,
                   help="alternating rounds of one HTTP client and the in-process call beside the batched "
                        "deployment (0: none)")
    p.add_argument("--only_replica_kill", action="store_true", help="run the in-process floor and the two "
                   "replica-kill phases only")
    a = p.parse_args()

    index_dir = Path(a.index_dir).resolve()
    queries = load_queries(index_dir)
    results: dict = {"index_dir": str(index_dir), "clients": a.clients, "duration_s": a.duration,
                     "replica_cpus": a.replica_cpus or a.num_cpus,
                     "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
    results["in_process"] = in_process_latency(index_dir, queries, 200)
    # A replica of 1 CPU runs torch on 1 thread (Ray sets OMP_NUM_THREADS to the actor's CPUs).
    results["in_process_1_thread"] = in_process_latency(index_dir, queries, 200, threads=1)
    print(f"in-process encode+search: p50 {results['in_process']['p50_ms']:.1f} ms "
          f"({results['in_process']['torch_threads']} threads), "
          f"{results['in_process_1_thread']['p50_ms']:.1f} ms (1 thread)", flush=True)
    results["ingress"] = {ingress: ingress_phases(ingress, index_dir, queries, a) for ingress in a.ingress}

    floor = results["in_process"]["p50_ms"]
    rows = [("in-process (1 query)", "-", f"{floor:.1f}", f"{results['in_process']['p99_ms']:.1f}", "-", "-", "1.00")]
    one = results["in_process_1_thread"]
    rows.append(("in-process, 1 torch thread", "-", f"{one['p50_ms']:.1f}", f"{one['p99_ms']:.1f}", "-", "-",
                 f"{one['p50_ms'] / floor:.2f}"))
    for ingress, phases in results["ingress"].items():
        for name in ("batched", "unbatched", "batched_1_client", "unbatched_1_client"):
            if name in phases:
                phases[name]["http_p50_over_in_process_p50"] = phases[name]["p50_ms"] / floor
        if "in_process_beside_serve" in phases:
            beside = phases["in_process_beside_serve"]
            rows.append((f"{ingress}: in-process, Ray and Serve idle beside it", "-", f"{beside['p50_ms']:.1f}",
                         f"{beside['p99_ms']:.1f}", "-", "-", f"{beside['p50_ms'] / floor:.2f}"))
            for name in ("batched_1_client", "unbatched_1_client"):
                if name in phases:
                    phases[name]["http_p50_over_in_process_beside_serve_p50"] = phases[name]["p50_ms"] / beside["p50_ms"]
        rows += table_rows(ingress, phases, floor, a.clients)
        if "batched_1_client_paired" in phases:
            paired = phases["batched_1_client_paired"]
            rows.append((f"{ingress}: batched, 1 client, paired rounds: HTTP / in-process of the same minutes",
                         str(paired["rounds"] * paired["calls_per_round"]),
                         f"{paired['http_p50_ms']:.1f} / {paired['in_process_p50_ms']:.1f}", "-", "-", "-",
                         f"{paired['http_over_in_process_median_of_rounds']:.2f} (of the paired in-process)"))
    header = ("phase", "requests", "p50 ms", "p99 ms", "QPS", "client-visible errors", "p50 / in-process")
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in (header, *rows):
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))
    for ingress, phases in results["ingress"].items():
        kill = phases["replica_kill"]
        print(f"{ingress}: replica kill: {kill.get('victim')} replaced after "
              f"{kill.get('replaced_after_s', float('nan')):.1f} s")
    from ragcun.data.io import write_json

    print(f"wrote {write_json(results, a.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
