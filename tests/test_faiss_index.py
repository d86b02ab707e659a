"""FAISS helpers: training-size checks before any encoding, and which indexes go to the GPU."""

from __future__ import annotations

import logging

import faiss
import numpy as np
import pytest

from ragcun.index import faiss_index as ragcun_index
from ragcun.index.build import check_index_type
from ragcun.index.faiss_index import (
    build_index,
    factory_string,
    gpu_supports,
    maybe_to_gpu,
    min_training_vectors,
)


@pytest.mark.parametrize("spec, need", [("Flat", 0), ("HNSW32", 0), ("SQ8", 1), ("IVF16,Flat", 16),
                                        ("IVF8,PQ4x8", 256), ("PQ8x4", 16), ("OPQ4,IVF8,PQ4x4", 256)])
def test_min_training_vectors_matches_what_faiss_accepts(spec, need):
    dim = 16
    index = faiss.index_factory(dim, spec)
    assert min_training_vectors(index) == need
    if need > 1:  # one vector fewer than the minimum fails inside FAISS; the minimum itself trains
        x = np.random.default_rng(0).normal(size=(need, dim)).astype(np.float32)
        with pytest.raises(RuntimeError):
            faiss.index_factory(dim, spec).train(x[: need - 1])
        faiss.index_factory(dim, spec).train(x)


def test_ivfpq_on_a_small_corpus_fails_before_encoding():
    spec = factory_string("ivfpq", 64, 200)
    with pytest.raises(ValueError, match=r"'ivfpq' \(IVF56,PQ16x8\).*at least 256 training vectors, got 200"):
        check_index_type("ivfpq", 64, "l2", 200)
    assert spec == "IVF56,PQ16x8"
    check_index_type("ivfpq", 64, "l2", 5000)  # enough
    with pytest.raises(ValueError, match="at least 256"):
        build_index(np.zeros((100, 64), np.float32), index_type="ivfpq")


def test_opq_ivfpq32_is_ivfpq32_after_a_learned_rotation():
    assert factory_string("ivfpq32", 384, 5183) == "IVF287,PQ48x8"
    assert factory_string("opq-ivfpq32", 384, 5183) == "OPQ48,IVF287,PQ48x8"
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2000, 32)) * np.linspace(0.1, 3, 32)).astype(np.float32)  # unbalanced coordinates
    index = build_index(x, index_type="opq-ivfpq32")
    assert isinstance(faiss.downcast_VectorTransform(index.chain.at(0)), faiss.OPQMatrix)
    assert faiss.try_extract_index_ivf(index).nprobe == 16
    assert faiss.try_extract_index_ivf(index).code_size == 4  # 32 floats in 4 bytes of PQ code: 32x


class _FakeGpuFaiss:
    """faiss-gpu stand-in (no GPU here): records what would be cloned."""

    def __init__(self):
        self.cloned = []

    def StandardGpuResources(self):  # noqa: N802 - FAISS's name
        return object()

    def index_cpu_to_gpu(self, resources, device, index):
        self.cloned.append(type(faiss.downcast_index(index)).__name__)
        return index


@pytest.mark.parametrize("index_type, to_gpu", [("flat", True), ("IVF4,Flat", True), ("IVF4,SQ8", True),
                                                ("IVF4,PQ4x4", True), ("hnsw", False), ("sq8", False),
                                                ("PQ4x4", False)])
def test_only_gpu_capable_indexes_are_cloned(monkeypatch, caplog, index_type, to_gpu):
    """CPU stand-in for faiss-gpu: HNSW and flat SQ/PQ indexes are kept on the CPU with a warning instead of
    raising 'not implemented on GPU' inside a Serve replica."""
    fake = _FakeGpuFaiss()
    monkeypatch.setattr(ragcun_index, "gpu_available", lambda: True)
    monkeypatch.setattr(faiss, "StandardGpuResources", fake.StandardGpuResources, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", fake.index_cpu_to_gpu, raising=False)
    x = np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32)
    index = build_index(x, index_type=index_type)
    assert gpu_supports(index) == to_gpu
    with caplog.at_level(logging.INFO, logger="ragcun.index.faiss_index"):
        maybe_to_gpu(index, use_gpu=True)
    assert bool(fake.cloned) == to_gpu
    if not to_gpu:
        assert "stays on the CPU" in caplog.text
