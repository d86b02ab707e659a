"""jobs/interpolate.py and ragcun.interpolate: WiSE-FT weight interpolation of a fine-tuned checkpoint with its
start, checked tensor by tensor against (1 − α) a + α b, at both ends against the models themselves, and on
bad input."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from ragcun.cli import run_main
from ragcun.config import ModelConfig
from ragcun.errors import CheckpointError
from ragcun.interpolate import interpolate_payloads
from ragcun.model import GaussianEmbeddingModel

from .conftest import REPO, SAMPLE_DOCS

sys.path.insert(0, str(REPO / "jobs"))
import interpolate as interpolate_job  # noqa: E402


@pytest.fixture
def start_and_finetuned(tiny_bert_dir, tmp_path):
    """A start checkpoint (identity head, learnable scale) and a 'fine-tuned' one: every tensor moved."""
    torch.manual_seed(0)
    model = GaussianEmbeddingModel.from_config(ModelConfig(base_model=tiny_bert_dir, output_dim=32, learn_scale=True))
    start = model.save_checkpoint(tmp_path / "start.pt")
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    finetuned = model.save_checkpoint(tmp_path / "finetuned.pt", epoch=2, step=10, optimizer_state_dict={})
    return start, finetuned


def test_every_tensor_is_the_weighted_mean(start_and_finetuned, tmp_path):
    start, finetuned = start_and_finetuned
    a = torch.load(start, weights_only=True)
    b = torch.load(finetuned, weights_only=True)
    out = interpolate_payloads(a, b, 0.25)
    assert set(out["model_state_dict"]) == set(a["model_state_dict"])
    for name, value in out["model_state_dict"].items():
        x, y = a["model_state_dict"][name], b["model_state_dict"][name]
        torch.testing.assert_close(value, 0.75 * x + 0.25 * y, rtol=0, atol=1e-6)
    assert not torch.equal(out["model_state_dict"]["head_log_scale"], b["model_state_dict"]["head_log_scale"])
    assert "optimizer_state_dict" not in out and "epoch" not in out and out["config"] == b["config"]


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_the_ends_are_the_two_models(start_and_finetuned, tmp_path, alpha):
    start, finetuned = start_and_finetuned
    output = tmp_path / f"wise_{alpha}.pt"
    args = ["--start", str(start), "--finetuned", str(finetuned), "--alpha", str(alpha), "--output", str(output)]
    assert run_main(interpolate_job.main, args) == 0
    mixed = GaussianEmbeddingModel.from_checkpoint(output).eval()
    end = GaussianEmbeddingModel.from_checkpoint(finetuned if alpha == 1.0 else start).eval()
    np.testing.assert_allclose(mixed.encode_documents(SAMPLE_DOCS), end.encode_documents(SAMPLE_DOCS), atol=1e-6)
    record = torch.load(output, weights_only=True)["interpolation"]
    assert record == {"alpha": alpha, "start": str(start), "finetuned": str(finetuned)}


def test_different_architectures_are_refused(start_and_finetuned, tiny_bert_dir, tmp_path):
    start, _ = start_and_finetuned
    other = GaussianEmbeddingModel.from_config(ModelConfig(base_model=tiny_bert_dir, output_dim=16, learn_scale=True))
    other_path = other.save_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"differ in config \(\['output_dim'\]\)"):
        interpolate_payloads(torch.load(start, weights_only=True), torch.load(other_path, weights_only=True), 0.5)


def test_bad_input_exits_2_and_writes_nothing(start_and_finetuned, tmp_path, capsys):
    start, finetuned = start_and_finetuned
    base = ["--start", str(start), "--finetuned", str(finetuned)]
    with pytest.raises(SystemExit) as exc:
        interpolate_job.parse_args([*base, "--alpha", "1.5", "--output", str(tmp_path / "x.pt")])
    assert exc.value.code == 2 and "alpha must be in [0, 1]" in capsys.readouterr().err
    notes = tmp_path / "notes.pt"
    notes.write_text("a user's file")
    assert run_main(interpolate_job.main, [*base, "--output", str(notes)]) == 2
    assert "exists and is not a ragcun checkpoint: not overwritten" in capsys.readouterr().err
    assert notes.read_text() == "a user's file"
    assert run_main(interpolate_job.main, [*base, "--output", str(finetuned)]) == 2
    assert "must not be one of the input checkpoints" in capsys.readouterr().err
    assert run_main(interpolate_job.main, ["--start", str(tmp_path / "missing.pt"), "--finetuned", str(finetuned),
                                           "--output", str(tmp_path / "y.pt")]) == 2
    assert "missing.pt: no such checkpoint file" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists() and not (tmp_path / "y.pt").exists()
