"""Real Ray Train runs on a local cluster with a tiny model: 2-worker DDP, a killed worker, a killed driver
followed by --resume, and `ray job submit` to a cluster started (and stopped) by the test."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ragcun.cli import run_main
from ragcun.config import TrainJobConfig
from ragcun.model import load_checkpoint_payload
from ragcun.train.schedule import get_lr

from ..conftest import REPO

sys.path.insert(0, str(REPO / "jobs"))
import train as train_job  # noqa: E402

pytestmark = pytest.mark.ray


def train_args(tiny_bert_dir, tiny_triplets, out: Path, *extra: str) -> list[str]:
    train, val = tiny_triplets
    return ["--train_data", str(train), "--val_data", str(val), "--base_model", tiny_bert_dir, "--output_dim", "16",
            "--batch_size", "8", "--num_workers", "2", "--output_dir", str(out), "--warmup_steps", "2",
            "--num_slices", "64", "--learning_rate", "1e-3", "--log_every", "1", *extra]


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "training.log").read_text().splitlines()]


def test_two_worker_training_writes_the_seed_outputs(ray_cluster, tiny_bert_dir, tiny_triplets, tmp_path):
    out = tmp_path / "ckpt"
    assert run_main(train_job.main, train_args(tiny_bert_dir, tiny_triplets, out, "--epochs", "2")) == 0
    names = {p.name for p in out.iterdir()}
    assert {"checkpoint_epoch_1.pt", "checkpoint_epoch_2.pt", "best_model.pt", "final_model.pt",
            "train_config.json", "training.log", "metrics.json"} <= names
    # 48 triplets / 2 workers / batch 8 = 3 optimizer steps per epoch
    log = read_log(out)
    assert [r["step"] for r in log] == list(range(1, 7))
    for field in ("total", "contrastive", "sigreg", "variance", "pos_distance", "embedding_std", "lr",
                  "triplets_per_s"):
        assert all(field in r for r in log), field
    assert [r["lr"] for r in log] == pytest.approx([1e-3 * get_lr(s, 1.0, 2, 6) for s in range(6)])
    metrics = json.loads((out / "metrics.json").read_text())
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert all(0.0 <= m["val_ndcg@10"] <= 1.0 and "val_loss" in m for m in metrics)
    epoch2 = load_checkpoint_payload(out / "checkpoint_epoch_2.pt")
    assert epoch2["step"] == 6 and "optimizer_state_dict" in epoch2
    assert "optimizer_state_dict" not in load_checkpoint_payload(out / "best_model.pt")
    config = json.loads((out / "train_config.json").read_text())
    assert config["ray"]["num_workers"] == 2 and config["train"]["epochs"] == 2

    # The outputs load where the seed promised: jobs/evaluate.py and GaussianRetriever.
    import evaluate

    from ragcun import GaussianRetriever
    from ragcun.data.retrieval_sets import RetrievalSet, write_test_eval

    from ..conftest import SAMPLE_DOCS

    test_eval = write_test_eval(RetrievalSet([f"d{i}" for i in range(6)], SAMPLE_DOCS, ["q"], ["cats"],
                                             {"q": {"d1": 1}}), tmp_path / "test_eval.json")
    assert run_main(evaluate.main, ["--model_path", str(out / "best_model.pt"), "--test_data", str(test_eval),
                                    "--output_file", str(tmp_path / "eval.json")]) == 0
    retriever = GaussianRetriever(model_path=str(out / "final_model.pt"))
    retriever.add_documents(SAMPLE_DOCS)
    assert len(retriever.retrieve("cats", 2)) == 2


def test_two_workers_with_fp16_gradient_exchange(ray_cluster, tiny_bert_dir, tiny_triplets, tmp_path):
    """--gradient_compression fp16 on real DDP over gloo: the hook registers on Ray Train's wrapped model (a
    bf16 hook would be refused on gloo) and the run trains and records the setting."""
    out = tmp_path / "fp16"
    args = train_args(tiny_bert_dir, tiny_triplets, out, "--epochs", "1", "--gradient_compression", "fp16")
    assert run_main(train_job.main, args) == 0
    log = read_log(out)
    assert [r["step"] for r in log] == [1, 2, 3] and all(math.isfinite(r["total"]) for r in log)
    assert json.loads((out / "train_config.json").read_text())["ray"]["gradient_compression"] == "fp16"
    with pytest.raises(SystemExit) as exit_info:  # bf16 is not a choice: argparse refuses it
        run_main(train_job.main, [*args[:-1], "bf16"])
    assert exit_info.value.code == 2

def test_groups_of_negatives_with_the_cached_step_on_two_workers(ray_cluster, tiny_bert_dir, tiny_triplets,
                                                                 tmp_path):
    """prepare_data's --num_negatives K format (a list per record) through Ray Data, two DDP workers, the
    GradCache step (mini-batches of 3 in batches of 8) and length-grouped batches: training runs to the end,
    with as many steps as random batches give, and logs every loss part."""
    train, val = tiny_triplets
    records = json.loads(Path(train).read_text())
    documents = sorted({r["positive"] for r in records})
    for i, r in enumerate(records):
        r["negatives"] = [d for d in documents if d != r["positive"]][i % 3: i % 3 + 3]
        r["negative_ids"] = [f"doc{documents.index(d)}" for d in r["negatives"]]
        r["negative"] = r["negatives"][0]
    grouped = tmp_path / "grouped.json"
    grouped.write_text(json.dumps(records))
    out = tmp_path / "ckpt"
    args = train_args(tiny_bert_dir, (grouped, val), out, "--epochs", "1", "--mini_batch_size", "3",
                      "--temperature", "0.5", "--group_by_length")
    assert run_main(train_job.main, args) == 0
    log = read_log(out)
    assert len(log) == 3 and all(math.isfinite(r["total"]) and "sigreg" in r for r in log)
    assert (out / "final_model.pt").is_file()
    assert json.loads((out / "train_config.json").read_text())["train"]["group_by_length"] is True


def test_killed_worker_is_replaced_and_no_epoch_is_lost(ray_cluster, tiny_bert_dir, tiny_triplets, tmp_path):
    """Rank 1 SIGKILLs itself at step 5 (inside epoch 2); Ray restarts the group from epoch 1's checkpoint."""
    from ragcun.train.trainer import run_training

    out = tmp_path / "ckpt"
    marker = tmp_path / "killed"
    args = train_job.build_parser().parse_args(
        train_args(tiny_bert_dir, tiny_triplets, out, "--epochs", "3", "--max_failures", "1"))
    outcome = run_training(TrainJobConfig.from_args(args), fail_at={"rank": 1, "step": 5, "marker": str(marker)})
    assert marker.exists(), "the worker was not killed"
    assert [m["epoch"] for m in outcome.metrics] == [1, 2, 3]
    assert [r["step"] for r in read_log(out)] == list(range(1, 10))  # epoch 2 redone once, nothing lost


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_resume_after_the_driver_is_killed(ray_cluster, tiny_bert_dir, tiny_triplets, tmp_path):
    out = tmp_path / "ckpt"
    args = train_args(tiny_bert_dir, tiny_triplets, out, "--epochs", "3")
    env = {**os.environ, "RAY_ADDRESS": "local", "HF_HUB_OFFLINE": "1"}  # its own cluster, killed with it
    driver = subprocess.Popen([sys.executable, str(REPO / "jobs" / "train.py"), *args], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for(lambda: any((out / "ray_results").glob("*/checkpoint_*/checkpoint.pt")), 240, "a checkpoint")
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    first = sorted((out / "ray_results").glob("*/checkpoint_*/checkpoint.pt"))[0]
    _wait_for(lambda: load_checkpoint_payload(first) is not None, 30, "a complete checkpoint")
    assert not (out / "final_model.pt").exists()

    assert run_main(train_job.main, [*args, "--resume"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    log = read_log(out)
    assert [r["step"] for r in log] == list(range(1, 10))
    # The schedule continued where it stopped (the scheduler state was restored, not restarted).
    assert [r["lr"] for r in log] == pytest.approx([1e-3 * get_lr(s, 1.0, 2, 9) for s in range(9)])


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:  # held open together, so the ports are distinct
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def test_ray_job_submit_to_a_cluster_started_here(tiny_bert_dir, tiny_triplets, tmp_path):
    import shutil
    import tempfile

    ray_bin = str(Path(sys.executable).parent / "ray")
    # Every port explicit: the session's local Ray already holds the defaults (its dashboard agent listens on
    # 52365), and a second agent that cannot bind leaves the job server with "No available agent".
    port, dash, agent_http, agent_grpc, runtime_env, metrics = _free_ports(6)
    # Ray's Unix sockets live under the temp dir, and socket paths are limited to 107 bytes: keep it short.
    temp_dir = tempfile.mkdtemp(prefix="rgj", dir="/tmp")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_API_SERVER_ADDRESS", None)  # the session cluster's dashboard, not this one's
    head = subprocess.Popen(
        [ray_bin, "start", "--head", f"--port={port}", "--num-cpus=2", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dash}", "--include-dashboard=true", f"--dashboard-agent-listen-port={agent_http}",
         f"--dashboard-agent-grpc-port={agent_grpc}", f"--runtime-env-agent-port={runtime_env}",
         f"--metrics-export-port={metrics}", "--block", f"--temp-dir={temp_dir}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        out = tmp_path / "ckpt"
        args = train_args(tiny_bert_dir, tiny_triplets, out, "--epochs", "1", "--storage_path",
                          str(tmp_path / "storage"))
        def submit_job(*command: str) -> subprocess.CompletedProcess:
            deadline = time.monotonic() + 120  # the dashboard and its job agent take a few seconds to come up
            while True:
                proc = subprocess.run(
                    [ray_bin, "job", "submit", f"--address=http://127.0.0.1:{dash}", f"--working-dir={REPO}", "--",
                     sys.executable, *command], env=env, capture_output=True, text=True, timeout=400)
                text = proc.stdout + proc.stderr
                starting = any(m in text for m in ("Connection refused", "Failed to connect", "No available agent"))
                if not starting or time.monotonic() > deadline:
                    return proc
                time.sleep(2)

        submit = submit_job("jobs/train.py", *args)
        assert submit.returncode == 0, submit.stdout[-3000:] + submit.stderr[-3000:]
        assert "succeeded" in submit.stdout
        assert (out / "best_model.pt").is_file() and (out / "training.log").is_file()
        assert any((tmp_path / "storage").glob("ragcun-*/checkpoint_*"))
        # tune/sweep.py runs the same way.
        sweep = submit_job("tune/sweep.py", *args[:-2], "--output_dir", str(tmp_path / "sweeps"), "--name", "js",
                           "--num_samples", "1", "--param", "lambda_isotropy=0.05", "--param", "margin=0",
                           "--param", "lambda_variance=0.1")
        assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]
        assert (tmp_path / "sweeps" / "js" / "best_model.pt").is_file()
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # only the cluster this test started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_bad_training_data_fails_in_the_driver(ray_cluster, tiny_bert_dir, tmp_path, capsys):
    missing = tmp_path / "no_positive.jsonl"
    missing.write_text('{"query": "a", "negative": "b"}\n')
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "a", "positive": "b"}\n{"query": \n')
    for path, message in ((missing, "no 'positive' column"), (bad, "cannot read training data")):
        out = tmp_path / f"out_{path.stem}"
        code = run_main(train_job.main, ["--train_data", str(path), "--base_model", tiny_bert_dir,
                                         "--output_dim", "8", "--output_dir", str(out)])
        err = capsys.readouterr().err
        assert code == 2 and str(path) in err and message in err, err
        assert not (out / "best_model.pt").exists()
    code = run_main(train_job.main, ["--train_data", str(tmp_path / "nope.json"), "--output_dir", str(tmp_path)])
    assert code == 2 and "no such file" in capsys.readouterr().err
