"""The OpenVINO encoder backends against torch, on the tiny random BERT (real OpenVINO and NNCF, CPU)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from ragcun.config import ModelConfig
from ragcun.embedding_cache import model_fingerprint
from ragcun.errors import RagcunError
from ragcun.model import GaussianEmbeddingModel
from ragcun.openvino_encoder import (
    IR_BIN,
    IR_XML,
    OpenVINOEncoder,
    calibration_sample,
    check_backend,
    convert,
    cpu_capabilities,
    head_matmul,
    ir_bytes,
    load_encoder_backend,
    load_ir,
    read_ir,
    save_encoder,
    save_ir,
    with_backend,
)
from tests.conftest import SAMPLE_DOCS

QUERIES = ["what is machine learning", "why do cats sleep", "vaccine immune response"]
DOCS = [f"{d} {w}" for d in SAMPLE_DOCS for w in ("fast", "slow", "vector", "query data")]


@pytest.fixture
def scaled_model(tiny_bert_dir):
    """A model whose every part is in play: backbone, mean pooling, 16-d head and a learned scale != 1."""
    import torch

    torch.manual_seed(1)
    model = GaussianEmbeddingModel.from_config(ModelConfig(base_model=tiny_bert_dir, output_dim=16, learn_scale=True,
                                                           query_prompt="query: ", document_prompt="title: "))
    with torch.no_grad():
        model.head_log_scale.fill_(0.7)
    return model.eval()


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_openvino_float32_gives_torch_vectors(scaled_model):
    encoder = with_backend(scaled_model, "openvino")
    assert isinstance(encoder, OpenVINOEncoder) and encoder.output_dim == 16
    for texts, kind in ((DOCS, "document"), (QUERIES, "query")):
        expected = scaled_model.encode(texts, kind, batch_size=5)
        got = encoder.encode(texts, kind, batch_size=5)
        assert got.shape == expected.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert encoder.encode([], "query").shape == (0, 16)


def test_openvino_bf16_rounds_like_bf16_and_keeps_the_direction(scaled_model):
    """openvino-bf16 runs the float graph at bf16 precision: near torch's vectors, yet not float32's. On a CPU
    without native bf16 it is refused by name rather than silently run in float32."""
    if "BF16" not in cpu_capabilities():
        with pytest.raises(RagcunError, match="openvino-bf16 needs a CPU that computes bf16"):
            with_backend(scaled_model, "openvino-bf16")
        return
    encoder = with_backend(scaled_model, "openvino-bf16")
    assert isinstance(encoder, OpenVINOEncoder) and encoder.backend == "openvino-bf16"
    expected = scaled_model.encode(DOCS, "document")
    got = encoder.encode(DOCS, "document", batch_size=5)
    assert got.shape == expected.shape and got.dtype == np.float32
    assert cosines(got, expected).min() > 0.999
    float_vectors = with_backend(scaled_model, "openvino").encode(DOCS, "document", batch_size=5)
    assert np.abs(got - float_vectors).max() > 1e-3  # bf16 keeps 8 bits of mantissa; float32 would agree to 1e-4


def test_auto_is_bf16_where_the_cpu_computes_it_and_torch_elsewhere(scaled_model, monkeypatch):
    import ragcun.openvino_encoder as ove

    native = "BF16" in cpu_capabilities()
    assert check_backend("auto") == ("openvino-bf16" if native else "torch")
    assert check_backend("auto", use_gpu=True) == "torch"
    encoder = with_backend(scaled_model, "auto")
    assert (encoder.backend if native else encoder) == ("openvino-bf16" if native else scaled_model)
    monkeypatch.setattr(ove, "cpu_capabilities", lambda: ("FP32", "INT8"))
    assert check_backend("auto") == "torch"
    monkeypatch.setattr(ove, "cpu_capabilities", lambda: ("FP32", "BF16"))
    assert check_backend("auto") == "openvino-bf16"
    monkeypatch.setitem(sys.modules, "openvino", None)  # not installed
    assert check_backend("auto") == "torch"
    with pytest.raises(RagcunError, match="needs OpenVINO"):
        check_backend("openvino-bf16")


def test_openvino_int8_is_quantised_and_keeps_the_direction(scaled_model):
    ov_model = convert(scaled_model, quantize=True, calibration_texts=DOCS)
    assert any(op.get_type_name() == "FakeQuantize" for op in ov_model.get_ops())  # int8 in the graph
    assert not any(op.get_type_name() == "FakeQuantize" for op in convert(scaled_model).get_ops())
    head = next(op for op in ov_model.get_ops() if op.get_friendly_name() == head_matmul(ov_model))
    producers = [head.input_value(i).get_node().get_type_name() for i in range(2)]
    assert "FakeQuantize" not in producers, producers  # the head multiplies in float
    assert head.output(0).get_partial_shape()[1].get_length() == 16  # ...and it is the 16-d head
    encoder = OpenVINOEncoder(scaled_model, ov_model, "openvino-int8")
    float_vectors = scaled_model.encode(DOCS, "document")
    int8_vectors = encoder.encode(DOCS, "document")
    agreement = cosines(int8_vectors, float_vectors)
    assert agreement.min() > 0.9, agreement
    assert not np.allclose(int8_vectors, float_vectors, atol=1e-5)  # it is not the float model


def test_int8_needs_calibration_documents(scaled_model):
    with pytest.raises(RagcunError, match="calibration"):
        convert(scaled_model, quantize=True, calibration_texts=[])


def test_saved_ir_reloads_to_the_same_vectors(scaled_model, tmp_path):
    ov_model = convert(scaled_model, quantize=True, calibration_texts=DOCS)
    xml = save_ir(ov_model, tmp_path)
    assert xml.name == IR_XML and (tmp_path / IR_BIN).is_file()
    first = OpenVINOEncoder(scaled_model, ov_model, "openvino-int8").encode(DOCS)
    for reloaded in (load_ir(tmp_path), read_ir(*ir_bytes(ov_model))):
        # The same graph; compiled again, its float head may round differently in the 7th digit.
        np.testing.assert_allclose(OpenVINOEncoder(scaled_model, reloaded, "openvino-int8").encode(DOCS), first,
                                   rtol=0, atol=1e-5)


def test_missing_ir_file_is_named(tmp_path):
    (tmp_path / IR_XML).write_text("<net/>")
    with pytest.raises(RagcunError, match=IR_BIN):
        load_ir(tmp_path)


def test_backend_names_are_checked():
    with pytest.raises(RagcunError, match="unknown encoder backend 'onnx'"):
        check_backend("onnx")
    assert check_backend("openvino-int8") == "openvino-int8"


def test_calibration_sample_is_seeded_and_skips_empty_texts():
    texts = [f"document {i}" for i in range(50)] + ["", "   "]
    sample = calibration_sample(texts, size=10)
    assert len(sample) == 10 and sample == calibration_sample(texts, size=10)
    assert all(t.strip() for t in sample)
    assert calibration_sample(texts[:5], size=10) == texts[:5]


def test_each_backend_has_its_own_cache_identity(scaled_model):
    torch_id = model_fingerprint(scaled_model)
    float_id = model_fingerprint(with_backend(scaled_model, "openvino"))
    int8_id = model_fingerprint(with_backend(scaled_model, "openvino-int8", DOCS))
    ids = {torch_id, float_id, int8_id}
    if "BF16" in cpu_capabilities():  # the same graph as float32's, run at another precision
        ids.add(model_fingerprint(with_backend(scaled_model, "openvino-bf16")))
    assert len(ids) == 3 + ("BF16" in cpu_capabilities())
    # Converted again in the same process, where OpenVINO numbers the new graph's nodes further on, the float
    # graph keeps its identity, so a corpus cached by one job is found by the next one that converts it later.
    assert model_fingerprint(with_backend(scaled_model, "openvino")) == float_id


def test_index_directory_entries_round_trip_and_are_checked(scaled_model, tmp_path):
    encoder = with_backend(scaled_model, "openvino-int8", DOCS)
    assert save_encoder(scaled_model, tmp_path / "unused") == {"encoder_backend": "torch"}
    entries = save_encoder(encoder, tmp_path)
    assert entries["encoder_backend"] == "openvino-int8" and len(entries["encoder_sha256"]) == 64
    assert load_encoder_backend(scaled_model, tmp_path, {}) is scaled_model  # a manifest from before backends
    loaded = load_encoder_backend(scaled_model, tmp_path, entries)
    np.testing.assert_allclose(loaded.encode(QUERIES, "query"), encoder.encode(QUERIES, "query"), rtol=0, atol=1e-5)
    with pytest.raises(RagcunError, match="does not match the checksum"):
        load_encoder_backend(scaled_model, tmp_path, {**entries, "encoder_sha256": "0" * 64})
