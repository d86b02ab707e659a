"""BM25 (bm25s) against the reference SciFact figure, fusion against hand computation, and the evaluate job."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from ragcun.cli import run_main
from ragcun.data.retrieval_sets import RetrievalSet, load_beir, write_test_eval
from ragcun.eval.metrics import compute_metrics
from ragcun.eval.retrieval import build_run
from ragcun.index.bm25 import RRF_K, BM25Index, fuse

from ..conftest import REPO, SAMPLE_DOCS, SCIFACT

sys.path.insert(0, str(REPO / "jobs"))
import evaluate  # noqa: E402


def test_bm25_reproduces_the_reference_scifact_figures():
    """data/README: BM25 (bm25s, English stopwords, Snowball stemmer) nDCG@10 0.6863, Recall@10 0.8187."""
    rs = load_beir(SCIFACT, "test")
    scores, ids = BM25Index.build(rs.corpus_texts).search(rs.query_texts, 100)
    metrics = compute_metrics(rs.qrels, build_run(rs.query_ids, rs.corpus_ids, scores, ids))
    assert metrics["ndcg@10"] == pytest.approx(0.6863, abs=5e-5)
    assert metrics["recall@10"] == pytest.approx(0.8187, abs=5e-5)


def test_bm25_round_trips_without_pickle(tmp_path):
    index = BM25Index.build(SAMPLE_DOCS)
    index.save(tmp_path)
    assert not list(tmp_path.rglob("*.pkl"))
    loaded = BM25Index.load(tmp_path)
    for a, b in zip(index.search(["cats sleep in the sun"], 3), loaded.search(["cats sleep in the sun"], 3)):
        np.testing.assert_array_equal(a, b)
    assert loaded.search(["cats sleep"], 1)[1][0, 0] == 1


def test_rrf_and_convex_fusion_by_hand():
    dense_ids, dense_scores = np.array([[3, 1, 2]]), np.array([[-1.0, -2.0, -4.0]])  # higher is better
    bm25_ids, bm25_scores = np.array([[1, 4, 3]]), np.array([[9.0, 6.0, 3.0]])
    scores, ids = fuse(dense_ids, dense_scores, bm25_ids, bm25_scores, 4, "rrf")
    expected = {3: 1 / (RRF_K + 1) + 1 / (RRF_K + 3), 1: 1 / (RRF_K + 2) + 1 / (RRF_K + 1),
                2: 1 / (RRF_K + 3), 4: 1 / (RRF_K + 2)}
    assert ids[0].tolist() == sorted(expected, key=lambda d: -expected[d])
    np.testing.assert_allclose(scores[0], sorted(expected.values(), reverse=True), rtol=1e-6)
    # convex, α 0.25: dense min-max → 3: 1, 1: 2/3, 2: 0; BM25 → 1: 1, 4: 0.5, 3: 0
    scores, ids = fuse(dense_ids, dense_scores, bm25_ids, bm25_scores, 3, "convex", alpha=0.25)
    expected = {3: 0.25, 1: 0.25 * 2 / 3 + 0.75, 2: 0.0, 4: 0.375}
    assert ids[0].tolist() == [1, 4, 3]
    np.testing.assert_allclose(scores[0], [expected[1], expected[4], expected[3]], rtol=1e-6)
    with pytest.raises(ValueError, match="hybrid_alpha"):
        fuse(dense_ids, dense_scores, bm25_ids, bm25_scores, 3, "convex", alpha=1.5)


def test_evaluate_with_bm25_and_hybrid(tiny_model, tmp_path, capsys):
    rs = RetrievalSet([f"d{i}" for i in range(6)], SAMPLE_DOCS, ["q0", "q1"], ["python language", "cats sleep"],
                      {"q0": {"d0": 1}, "q1": {"d1": 1}})
    test_eval = write_test_eval(rs, tmp_path / "test_eval.json")
    ckpt = tiny_model.save_checkpoint(tmp_path / "m.pt")
    out = tmp_path / "eval.json"
    assert run_main(evaluate.main, ["--model_path", f"tiny={ckpt}", "--test_data", str(test_eval), "--top_k", "6",
                                    "--baselines", "bm25", "--hybrid", "--output_file", str(out),
                                    "--report", str(tmp_path / "report")]) == 0
    variants = {v["name"]: v for v in json.loads(out.read_text())["variants"]}
    assert set(variants) == {"tiny", "tiny + BM25 (RRF)", "BM25"}
    assert variants["BM25"]["metrics"]["ndcg@10"] == pytest.approx(1.0)  # both queries' words are in their docs
    assert variants["tiny + BM25 (RRF)"]["mode"] == "hybrid"
    assert "| BM25 | bm25 |" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--model_path", str(ckpt), "--test_data", str(test_eval), "--hybrid", "--fusion", "convex",
                       "--hybrid_alpha", "2"])
    assert exit_info.value.code == 2 and "--hybrid_alpha must be in [0, 1]" in capsys.readouterr().err


def test_retriever_modes_and_round_trip(tiny_model, tmp_path):
    from ragcun import GaussianRetriever

    retriever = GaussianRetriever(model=tiny_model, bm25=True)
    retriever.add_documents(SAMPLE_DOCS[:3])
    retriever.add_documents(SAMPLE_DOCS[3:])  # BM25 covers every document added
    lexical = retriever.search(["vaccine immune response"], 2, mode="bm25")[0]
    assert lexical[0]["id"] == "2" and lexical[0]["distance"] is None and lexical[0]["score"] > lexical[1]["score"]
    dense = retriever.search(["vaccine immune response"], 6)[0]
    hybrid = retriever.search(["vaccine immune response"], 6, mode="hybrid")[0]
    # RRF over the two full rankings, by hand
    bm25_order = [h["id"] for h in retriever.search(["vaccine immune response"], 6, mode="bm25")[0]]
    expected = {d: 1 / (RRF_K + bm25_order.index(d) + 1) + 1 / (RRF_K + [h["id"] for h in dense].index(d) + 1)
                for d in bm25_order}
    assert [h["id"] for h in hybrid] == sorted(expected, key=lambda d: (-expected[d], int(d)))
    loaded = GaussianRetriever.load(retriever.save(tmp_path / "index"))
    assert loaded.manifest["bm25"] and loaded.search(["cats"], 3, mode="hybrid") == retriever.search(["cats"], 3,
                                                                                                         mode="hybrid")
    plain = GaussianRetriever(model=tiny_model)
    plain.add_documents(SAMPLE_DOCS)
    with pytest.raises(ValueError, match="needs a BM25 index"):
        plain.search(["cats"], 3, mode="bm25")
    with pytest.raises(ValueError, match="mode must be one of"):
        retriever.search(["cats"], 3, mode="sparse")
