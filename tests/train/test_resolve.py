"""ragcun.train.resolve: the complete job, the CPU plan, metric modes and model-only checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragcun.config import LossConfig, RayConfig, TrainConfig, TrainJobConfig
from ragcun.errors import DataError, RagcunError
from ragcun.train.resolve import (
    LABELLED_PAIRS_LEARNING_RATE,
    SYNTHETIC_PAIRS_LEARNING_RATES,
    metric_mode,
    model_only,
    new_run_name,
    resolve,
    worker_cpus,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def job_for(tmp_path, **train) -> TrainJobConfig:
    data = tmp_path / "train.json"
    data.write_text("[]")
    return TrainJobConfig(loss=LossConfig(), train=TrainConfig(train_data="train.json", output_dir="out", **train),
                          ray=RayConfig(num_workers=2))


def test_resolve_returns_a_new_complete_job(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    job = job_for(tmp_path)
    before = job.to_dict()
    resolved = resolve(job, cluster_cpus=2.0)
    assert job.to_dict() == before  # the caller's job is not edited
    assert resolved.train.train_data == str(tmp_path / "train.json")
    assert resolved.train.output_dir == str(tmp_path / "out")
    assert resolved.ray.storage_path == str(tmp_path / "out" / "ray_results") and resolved.ray.name.startswith("ragcun-")
    assert resolved.train.best_metric == "train_loss"  # no validation data: nothing else is reported
    assert resolved.ray.cpus_per_worker == 0.75  # (2 − 0.5 for the data pipeline) / 2 workers


def test_resolve_resume_takes_the_saved_run_and_refuses_missing_inputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="--val_data: no such file"):
        resolve(job_for(tmp_path, val_data="missing.json"), cluster_cpus=2.0)
    with pytest.raises(RagcunError, match="nothing to resume"):
        resolve(job_for(tmp_path, resume=True), cluster_cpus=2.0)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "train_config.json").write_text(json.dumps({"ray": {"name": "r1", "storage_path": "/s"}}))
    resumed = resolve(job_for(tmp_path, resume=True), cluster_cpus=2.0)
    assert (resumed.ray.name, resumed.ray.storage_path) == ("r1", "/s")
    (tmp_path / "out" / "ray_results" / "taken").mkdir(parents=True)
    job = job_for(tmp_path)
    job.ray.name = "taken"
    with pytest.raises(RagcunError, match="pass --resume"):
        resolve(job, cluster_cpus=2.0)


def test_worker_cpus_plan():
    assert worker_cpus(2.0, 2) == 0.75
    assert worker_cpus(16.0, 2) == 1.0  # at most one each
    assert worker_cpus(2.0, 1, concurrent_runs=2, reserved_per_run=0.01) == 0.49  # rounded down
    assert worker_cpus(4.0, 2, requested=1.5) == 1.5
    with pytest.raises(RagcunError, match="need 3.5 CPUs"):
        worker_cpus(2.0, 2, requested=1.5)
    with pytest.raises(RagcunError, match="do not fit"):
        worker_cpus(2.0, 2, concurrent_runs=4)


def test_metric_modes_run_names_and_model_only():
    assert metric_mode("val_loss") == metric_mode("train_loss") == "min"
    assert metric_mode("val_ndcg@10") == "max"
    assert new_run_name("sweep").startswith("sweep-") and new_run_name() != new_run_name()
    payload = {"state_dict": 1, "config": 2, "optimizer_state_dict": 3, "scheduler_state_dict": 4, "training_log": 5}
    assert model_only(payload) == {"state_dict": 1, "config": 2}


def test_synthetic_pairs_default_to_the_lower_learning_rate(tmp_path, monkeypatch):
    """prepare_data --generate_pairs leaves a summary that makes the unset rates 5e-6 / 5e-5; labelled pairs get
    2e-5 (head: the same); a rate the user gives is kept; a summary that cannot be read is named."""
    from ragcun.config import PrepareConfig
    from ragcun.data.prepare import prepare

    monkeypatch.chdir(tmp_path)
    prepare(PrepareConfig(documents=str(EXAMPLES / "docs.txt"), generate_pairs=True, output_dir="synthetic"))
    prepare(PrepareConfig(csv_file=str(EXAMPLES / "pairs.csv"), output_dir="labelled"))

    def rates(data: str, **train) -> tuple:
        job = TrainJobConfig(train=TrainConfig(train_data=data, output_dir="out", **train), ray=RayConfig())
        resolved = resolve(job, cluster_cpus=2.0)
        return resolved.train.learning_rate, resolved.train.head_learning_rate

    assert rates("synthetic/train.json") == SYNTHETIC_PAIRS_LEARNING_RATES == (5e-6, 5e-5)
    assert rates("synthetic") == SYNTHETIC_PAIRS_LEARNING_RATES  # a directory of triplets
    assert rates("labelled/train.json") == (LABELLED_PAIRS_LEARNING_RATE, None)
    assert rates("synthetic/train.json", learning_rate=1e-5) == (1e-5, None)
    assert rates("synthetic/train.json", head_learning_rate=1e-4) == (5e-6, 1e-4)
    (tmp_path / "synthetic" / "prepare_summary.json").write_text("{")
    with pytest.raises(DataError, match="prepare_summary.json.*not a prepare_data summary"):
        rates("synthetic/train.json")
