"""tune/sweep.py: bad input fails before any trial, and a real ASHA sweep of Ray Train trials."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest

from ragcun.cli import run_main
from ragcun.errors import RagcunError
from ragcun.model import GaussianEmbeddingModel
from ragcun.sweep import parse_param_override, parse_search_space

from .conftest import REPO

sys.path.insert(0, str(REPO / "tune"))
import sweep as sweep_job  # noqa: E402

pytestmark = pytest.mark.ray


def sweep_args(tiny_bert_dir, tiny_triplets, out, *extra):
    train, val = tiny_triplets
    return ["--train_data", str(train), "--val_data", str(val), "--base_model", tiny_bert_dir, "--output_dim", "16",
            "--batch_size", "8", "--num_workers", "2", "--output_dir", str(out), "--num_slices", "32",
            "--learning_rate", "1e-3", "--warmup_steps", "1", *extra]


@pytest.mark.parametrize(("space", "message"), [
    ({}, "empty"),
    ({"lambda_isotropy": {"type": "uniform", "low": 0.5, "high": 0.1}}, "inverted range"),
    ({"lambda_isotropy": {"type": "uniform", "low": 0.1, "high": 0.1}}, "empty or inverted"),
    ({"lambda_isotropy": {"type": "loguniform", "low": 0.0, "high": 0.1}}, "low > 0"),
    ({"dropout": {"type": "uniform", "low": 0, "high": 1}}, "unknown search parameter 'dropout'"),
    ({"margin": {"type": "choice", "values": []}}, "non-empty list"),
])
def test_bad_search_spaces(space, message):
    with pytest.raises(RagcunError, match=message):
        parse_search_space(space)


def test_param_overrides():
    assert parse_param_override("margin=uniform:0:0.5") == ("margin", {"type": "uniform", "low": 0.0, "high": 0.5})
    assert parse_param_override("lambda_isotropy=choice:0,0.01")[1]["values"] == [0.0, 0.01]
    assert parse_param_override("lambda_variance=0.2") == ("lambda_variance", 0.2)
    with pytest.raises(RagcunError):
        parse_param_override("margin")


def test_the_old_lambda_reg_name_searches_lambda_variance(caplog):
    with caplog.at_level("WARNING"):
        domains = parse_search_space({"lambda_reg": 0.2})
    assert domains == {"lambda_variance": 0.2} and "deprecated" in caplog.text


@pytest.mark.parametrize(("extra", "message"), [
    (["--metric", "val_accuracy"], "not reported by the trials"),
    (["--max_concurrent_trials", "4"], "do not fit"),
    (["--cpus_per_worker", "1", "--max_concurrent_trials", "2"], "need"),
    (["--param", "margin=uniform:1:0"], "inverted range"),
    (["--param", "size=3"], "unknown search parameter"),
    (["--epochs", "2", "--trial_epochs", "3"], "--trial_epochs must be between 1 and --epochs (2)"),
])
def test_bad_sweeps_fail_before_any_trial(ray_cluster, tiny_bert_dir, tiny_triplets, tmp_path, capsys, extra,
                                          message):
    out = tmp_path / "sweeps"
    assert run_main(sweep_job.main, sweep_args(tiny_bert_dir, tiny_triplets, out, *extra)) == 2
    assert message in capsys.readouterr().err
    assert not (out / "ray_results").exists()  # no trial started


def test_asha_sweep_stops_bad_trials_and_exports_the_best(ray_cluster, tiny_bert_dir, tiny_triplets, tmp_path):
    """A case built for ASHA: trials are sequential, and a huge SIGReg weight makes the reported total loss
    far worse at the first rung, so those trials are stopped after epoch 1."""
    out = tmp_path / "sweeps"
    args = sweep_args(tiny_bert_dir, tiny_triplets, out, "--epochs", "3", "--num_samples", "1", "--name", "s1",
                      "--metric", "train_loss", "--param", "lambda_isotropy=grid:0,50,100", "--param", "lambda_variance=0",
                      "--param", "margin=0.1")
    assert run_main(sweep_job.main, args) == 0
    result_dir = out / "s1"
    best = json.loads((result_dir / "best_config.json").read_text())
    assert best["config"]["lambda_isotropy"] == 0.0 and best["metric"] == "train_loss"
    trials = pd.read_csv(result_dir / "trials.csv")
    assert len(trials) == 3
    assert trials["stopped_early"].any(), trials
    assert trials.loc[trials["lambda_isotropy"] == 0.0, "epochs_run"].item() == 3
    model = GaussianEmbeddingModel.from_checkpoint(result_dir / "best_model.pt")
    assert model.output_dim == 16
    from ray import tune

    assert tune.Tuner.can_restore(str(out / "ray_results" / "s1"))  # standard Tune results (ResultGrid)
    # The same name again resumes the finished sweep instead of starting a new one.
    assert run_main(sweep_job.main, args) == 0
    assert len(pd.read_csv(result_dir / "trials.csv")) == 3


def test_a_screening_sweep_stops_every_trial_mid_schedule(ray_cluster, tiny_bert_dir, tiny_triplets, tmp_path):
    """--trial_epochs 1 of --epochs 3: every trial stops after epoch 1, with its learning rate still a third of
    the way down the cosine (a 1-epoch schedule would have reached min_lr_ratio 0 there)."""
    out = tmp_path / "sweeps"
    args = sweep_args(tiny_bert_dir, tiny_triplets, out, "--epochs", "3", "--trial_epochs", "1", "--num_samples",
                      "1", "--name", "screen", "--scheduler", "fifo", "--param", "temperature=grid:0.05,0.2",
                      "--param", "lambda_isotropy=0", "--param", "lambda_variance=0", "--param", "margin=0")
    assert run_main(sweep_job.main, args) == 0
    trials = pd.read_csv(out / "screen" / "trials.csv")
    assert sorted(trials["temperature"]) == [0.05, 0.2]
    assert (trials["epochs_run"] == 1).all() and not trials["stopped_early"].any()
    by_epoch = [json.loads(v) for v in trials["val_ndcg@10_by_epoch"]]  # what ASHA would compare, per epoch
    assert [len(v) for v in by_epoch] == [1, 1] and list(trials["val_ndcg@10"]) == [v[0] for v in by_epoch]
    progress = [pd.read_csv(path) for path in (out / "ray_results" / "screen").glob("*/progress.csv")]
    assert len(progress) == 2
    for history in progress:
        assert list(history["epoch"]) == [1]
        assert 0.5e-3 < history["lr"].item() < 1e-3  # cosine over 3 epochs, one third done


def test_optuna_search_with_a_yaml_space(ray_cluster, tiny_bert_dir, tiny_triplets, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("lambda_isotropy:\n  type: loguniform\n  low: 0.001\n  high: 0.1\nmargin: 0.0\nlambda_variance: 0.1\n")
    out = tmp_path / "sweeps"
    args = sweep_args(tiny_bert_dir, tiny_triplets, out, "--epochs", "1", "--num_samples", "2", "--name", "opt",
                      "--search_alg", "optuna", "--scheduler", "fifo", "--search_space", str(space))
    assert run_main(sweep_job.main, args) == 0
    trials = pd.read_csv(out / "opt" / "trials.csv")
    assert len(trials) == 2 and trials["lambda_isotropy"].between(0.001, 0.1).all()
    assert (trials["margin"] == 0.0).all()
    assert json.loads((out / "opt" / "best_config.json").read_text())["metric"] == "val_ndcg@10"


def test_every_trial_starts_from_the_fitted_head(ray_cluster, tiny_bert_dir, tiny_triplets, tmp_path):
    """--head_init scale is fitted once in the driver, like jobs/train.py does; the trials start from it
    (without it each trial started from an identity head at scale 1, silently another recipe)."""
    import torch

    out = tmp_path / "sweeps"
    args = sweep_args(tiny_bert_dir, tiny_triplets, out, "--epochs", "1", "--num_samples", "1", "--name", "fitted",
                      "--output_dim", "32", "--head_init", "scale", "--learn_scale", "--metric", "train_loss",
                      "--param", "learning_rate=grid:1e-3", "--param", "lambda_isotropy=0",
                      "--param", "lambda_variance=0", "--param", "margin=0")
    assert run_main(sweep_job.main, args) == 0
    start = out / "fitted" / "fitted_start_model.pt"
    fitted = torch.load(start, weights_only=True)["model_state_dict"]
    assert float(fitted["head_log_scale"]) != 0.0 and float(fitted["head.bias"].abs().sum()) > 0  # fitted, not identity
    best = torch.load(out / "fitted" / "best_model.pt", weights_only=True)
    assert best["train_config"]["train"]["model_path"] == str(start)
