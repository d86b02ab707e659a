"""tune/sweep.py: bad input fails before any trial, and a real ASHA sweep of Ray Train trials."""

from __future__ import annotations

import sys

import pytest

from ragcun.cli import run_main
from ragcun.errors import RagcunError
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
    assert parse_param_override("lambda_reg=0.2") == ("lambda_reg", 0.2)
    with pytest.raises(RagcunError):
        parse_param_override("margin")


@pytest.mark.parametrize(("extra", "message"), [
    (["--metric", "val_accuracy"], "not reported by the trials"),
    (["--max_concurrent_trials", "4"], "do not fit"),
    (["--cpus_per_worker", "1", "--max_concurrent_trials", "2"], "need"),
    (["--param", "margin=uniform:1:0"], "inverted range"),
    (["--param", "size=3"], "unknown search parameter"),
])
def test_bad_sweeps_fail_before_any_trial(ray_cluster, tiny_bert_dir, tiny_triplets, tmp_path, capsys, extra,
                                          message):
    out = tmp_path / "sweeps"
    assert run_main(sweep_job.main, sweep_args(tiny_bert_dir, tiny_triplets, out, *extra)) == 2
    assert message in capsys.readouterr().err
    assert not (out / "ray_results").exists()  # no trial started
