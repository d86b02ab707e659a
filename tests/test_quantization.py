"""Fixed-range int8 and sign-bit indexes (real FAISS): each equals a brute-force search over the same codes,
round-trips through the index directory, and refuses bad options before any work."""

from __future__ import annotations

import sys

import faiss
import numpy as np
import pytest

from ragcun import GaussianRetriever
from ragcun.index.faiss_index import build_index, search
from ragcun.index.quantization import BinaryIndex

from .conftest import REPO, SAMPLE_DOCS


def gaussian(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def brute_force(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    d2 = ((q[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    return np.argsort(d2, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("distance, expected_range", [("l2", 4.0), ("cosine", 4.0 / np.sqrt(32))])
def test_int8_uses_the_fixed_range_and_searches_its_own_codes_exactly(distance, expected_range):
    x, q = gaussian(500), gaussian(20, seed=1)
    index = build_index(x, index_type="int8", distance=distance)
    trained = faiss.vector_to_array(faiss.downcast_index(index).sq.trained)
    np.testing.assert_allclose(trained[:32], -expected_range, rtol=1e-6)  # vmin, no calibration on x
    np.testing.assert_allclose(trained[32:], 2 * expected_range, rtol=1e-6)  # vdiff
    codes = index.reconstruct_n(0, index.ntotal)  # what the index holds, decoded
    if distance == "l2":
        _, ids = search(index, q, 10, "l2")
        np.testing.assert_array_equal(ids, brute_force(codes, q, 10))
        assert np.abs(codes - np.clip(x, -4, 4)).max() <= 8 / 255 / 2 + 1e-6  # half a quantisation step


def test_binary_hamming_equals_brute_force_hamming():
    x, q = gaussian(400), gaussian(10, seed=1)
    index = build_index(x, index_type="binary-hamming")
    values, ids = search(index, q, 5, "l2")
    hamming = ((q[:, None, :] > 0) != (x[None, :, :] > 0)).sum(-1)
    for row in range(len(q)):
        np.testing.assert_array_equal(values[row], np.sort(hamming[row])[:5])
        assert set(hamming[row, ids[row]]) <= set(np.sort(hamming[row])[:5])


def test_binary_rescoring_is_exact_within_its_candidates():
    x, q = gaussian(400), gaussian(10, seed=1)
    everything = build_index(x, index_type="binary", rescore_multiplier=40)  # 10 x 40 ≥ 400: every vector
    values, ids = search(everything, q, 10, "l2")
    np.testing.assert_array_equal(ids, brute_force(x, q, 10))
    np.testing.assert_allclose(values, np.sqrt(((q[:, None, :] - x[ids]) ** 2).sum(-1)), rtol=1e-5)
    few = build_index(x, index_type="binary", rescore_multiplier=2)
    values, ids = search(few, q, 10, "l2")
    assert (np.diff(values, axis=1) >= 0).all()  # ordered by the exact distance
    hamming = ((q[:, None, :] > 0) != (x[None, :, :] > 0)).sum(-1)
    for row in range(len(q)):  # every hit is among the 20 nearest in Hamming distance (ties included)
        assert hamming[row, ids[row]].max() <= np.sort(hamming[row])[19]


@pytest.mark.parametrize("index_type", ["int8", "binary", "binary-hamming", "ivfpq32", "opq-ivfpq32"])
def test_new_index_types_round_trip_through_the_index_directory(tiny_model, tmp_path, index_type):
    docs = [f"{d} {w} {v}" for d in SAMPLE_DOCS for w in ("fast", "slow", "vector", "cell", "risk", "data", "gene")
            for v in ("one", "two", "three", "four", "five", "six", "seven")]  # 294 documents
    retriever = GaussianRetriever(model=tiny_model, index_type=index_type, rescore_multiplier=3)
    retriever.add_documents(docs)
    queries = ["machine learning models", "cats sleep", "vaccine trial"]
    before = retriever.search(queries, 5)
    loaded = GaussianRetriever.load(retriever.save(tmp_path / "index"))
    assert loaded.index_type == index_type and len(loaded) == len(docs)
    assert loaded.search(queries, 5) == before
    if index_type == "binary":
        assert isinstance(loaded.index, BinaryIndex) and isinstance(loaded.index.vectors, np.memmap)
        assert loaded.manifest["rescore_multiplier"] == 3 and (tmp_path / "index" / "vectors.npy").is_file()


@pytest.mark.ray
@pytest.mark.parametrize("extra, message", [
    (["--index_type", "binary"], "dimension must be a multiple of 8"),
    (["--index_type", "int8", "--int8_range", "0"], "--int8_range must be a positive number"),
    (["--index_type", "binary", "--rescore_multiplier", "0"], "--rescore_multiplier must be a whole number >= 1"),
])
def test_bad_quantisation_options_exit_2_and_write_nothing(ray_cluster, tiny_bert_dir, tmp_path, capsys, extra,
                                                           message):
    from ragcun.config import ModelConfig
    from ragcun.model import GaussianEmbeddingModel

    sys.path.insert(0, str(REPO / "jobs"))
    import build_index as build_index_job

    dim = 12 if "--rescore_multiplier" not in extra and extra[1] == "binary" else 16
    checkpoint = GaussianEmbeddingModel.from_config(ModelConfig(base_model=tiny_bert_dir, output_dim=dim)
                                                    ).save_checkpoint(tmp_path / "model.pt")
    corpus = tmp_path / "docs.txt"
    corpus.write_text("\n".join(SAMPLE_DOCS) + "\n")
    with pytest.raises(SystemExit) as exit_info:
        build_index_job.main(["--corpus", str(corpus), "--model_path", str(checkpoint),
                              "--output_dir", str(tmp_path / "index"), *extra])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "index").exists()


def test_evaluate_rotate_and_quantised_columns(tiny_model, tmp_path):
    import json

    from ragcun.data.retrieval_sets import RetrievalSet, write_test_eval

    sys.path.insert(0, str(REPO / "jobs"))
    import evaluate

    from ragcun.cli import run_main

    docs = [f"{d} {w}" for d in SAMPLE_DOCS for w in ("fast", "slow", "vector", "cell")]
    rs = RetrievalSet([f"d{i}" for i in range(len(docs))], docs, ["q0", "q1"], ["python language", "cats sleep"],
                      {"q0": {"d0": 1}, "q1": {"d4": 1}})
    test_eval = write_test_eval(rs, tmp_path / "test_eval.json")
    out = tmp_path / "eval.json"
    ckpt = tiny_model.save_checkpoint(tmp_path / "m.pt")
    assert run_main(evaluate.main, ["--model_path", f"m={ckpt}", "--test_data", str(test_eval), "--rotate",
                                    "--compress", "int8", "binary", "binary-hamming", "--rescore_multiplier", "2",
                                    "--output_file", str(out)]) == 0
    variants = {v["name"]: v for v in json.loads(out.read_text())["variants"]}
    assert set(variants) == {"m", "m + rotation"}
    # A rotation is orthogonal: exact search ranks the same documents.
    assert variants["m"]["metrics"]["ndcg@10"] == pytest.approx(variants["m + rotation"]["metrics"]["ndcg@10"])
    compression = variants["m"]["compression"]
    assert compression["int8"]["bytes_per_vector"] == 16 and compression["binary"]["bytes_per_vector"] == 2
    assert compression["binary"]["rescore_multiplier"] == 2 and "rescore_multiplier" not in compression["binary-hamming"]
