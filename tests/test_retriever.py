"""GaussianRetriever: appending to a real FAISS index, true distances, save/load without pickle."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from ragcun import GaussianRetriever
from ragcun.config import ModelConfig
from ragcun.errors import DataError
from ragcun.model import GaussianEmbeddingModel

from .conftest import SAMPLE_DOCS


@pytest.fixture
def retriever(tiny_model) -> GaussianRetriever:
    return GaussianRetriever(model=tiny_model)


def test_add_documents_appends_without_rebuilding(retriever):
    retriever.add_documents(SAMPLE_DOCS[:3])
    index = retriever.index
    first = index.reconstruct_n(0, 3)
    retriever.add_documents(SAMPLE_DOCS[3:])
    assert retriever.index is index and index.ntotal == len(SAMPLE_DOCS) == len(retriever)
    np.testing.assert_array_equal(index.reconstruct_n(0, 3), first)


def test_retrieve_returns_true_euclidean_distances(retriever, tiny_model):
    retriever.add_documents(SAMPLE_DOCS)
    results = retriever.retrieve("machine learning models", top_k=4)
    assert len(results) == 4
    q = tiny_model.encode(["machine learning models"], "query")[0]
    docs = tiny_model.encode(SAMPLE_DOCS)
    expected = sorted((float(np.linalg.norm(q - d)), t) for d, t in zip(docs, SAMPLE_DOCS))[:4]
    for (text, dist), (exp_dist, exp_text) in zip(results, expected):
        assert text == exp_text and dist == pytest.approx(exp_dist, rel=1e-4)
    assert len(retriever.retrieve("cats", top_k=100)) == len(SAMPLE_DOCS)  # top_k clamps to the index size


def test_bad_queries_and_documents(retriever):
    with pytest.raises(ValueError, match="empty"):
        retriever.add_documents(["fine", "  "])
    with pytest.raises(TypeError):
        retriever.add_documents("a single string")
    assert retriever.retrieve("nothing indexed yet") == []
    retriever.add_documents(SAMPLE_DOCS)
    with pytest.raises(ValueError, match="empty"):
        retriever.retrieve("")
    with pytest.raises(ValueError, match="top_k"):
        retriever.retrieve("cats", top_k=0)


def test_save_and_load_round_trip(retriever, tmp_path):
    retriever.add_documents(SAMPLE_DOCS, ids=[f"id{i}" for i in range(6)], metadata=[{"n": i} for i in range(6)])
    out = retriever.save(tmp_path / "idx")
    assert sorted(p.name for p in out.iterdir()) == [".ragcun-output", "documents.parquet", "index.faiss", "manifest.json",
                                                    "model.pt"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["num_documents"] == 6 and manifest["distance"] == "l2" and manifest["dim"] == 16
    loaded = GaussianRetriever.load(out)
    assert loaded.retrieve("cats sleep", 3) == retriever.retrieve("cats sleep", 3)
    assert loaded.search(["cats"], 1)[0][0]["metadata"] == retriever.search(["cats"], 1)[0][0]["metadata"]
    loaded.add_documents(["one more document about dogs"])
    assert len(loaded) == 7


def test_load_rejects_tampered_index(retriever, tmp_path):
    retriever.add_documents(SAMPLE_DOCS)
    out = retriever.save(tmp_path / "idx")
    with open(out / "index.faiss", "ab") as f:
        f.write(b"x")
    with pytest.raises(DataError, match="checksum"):
        GaussianRetriever.load(out)
    with pytest.raises(DataError, match="manifest"):
        GaussianRetriever.load(tmp_path)


def test_model_path_and_gpu_fallback(tiny_bert_dir, tmp_path, caplog):
    model = GaussianEmbeddingModel.from_config(ModelConfig(base_model=tiny_bert_dir, output_dim=8))
    ckpt = model.save_checkpoint(tmp_path / "best_model.pt")
    with caplog.at_level(logging.WARNING):
        r = GaussianRetriever(model_path=str(ckpt), use_gpu=True)
    assert r.embedding_dim == 8 and not r.use_gpu
    assert "no CUDA device" in caplog.text  # this machine has no GPU: CPU fallback, with a warning
    r.add_documents(SAMPLE_DOCS)
    assert r.retrieve("cats", 1)[0][0] in SAMPLE_DOCS


@pytest.mark.parametrize("distance", ["ip", "cosine"])
def test_other_distances(tiny_model, distance):
    r = GaussianRetriever(model=tiny_model, distance=distance)
    r.add_documents(SAMPLE_DOCS)
    q = tiny_model.encode(["cats"], "query")[0]
    docs = tiny_model.encode(SAMPLE_DOCS)
    if distance == "cosine":
        q, docs = q / np.linalg.norm(q), docs / np.linalg.norm(docs, axis=1, keepdims=True)
    best = SAMPLE_DOCS[int(np.argmax(docs @ q))]
    assert r.retrieve("cats", 1)[0][0] == best


def test_save_without_model_needs_a_checkpoint(retriever, tiny_model, tmp_path):
    retriever.add_documents(SAMPLE_DOCS)
    with pytest.raises(ValueError, match="model_path"):
        retriever.save(tmp_path / "i", include_model=False)
    assert not (tmp_path / "i").exists()
    ckpt = tiny_model.save_checkpoint(tmp_path / "m.pt")
    r = GaussianRetriever(model_path=str(ckpt))
    r.add_documents(SAMPLE_DOCS)
    out = r.save(tmp_path / "j", include_model=False)
    assert not (out / "model.pt").exists()
    assert GaussianRetriever.load(out).retrieve("cats", 2) == r.retrieve("cats", 2)
