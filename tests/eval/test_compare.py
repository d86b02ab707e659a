"""Side-by-side evaluation (ragcun.eval.compare), whitening, the embedding cache and the report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ragcun.data.retrieval_sets import RetrievalSet
from ragcun.embedding_cache import encode_cached, forget_fingerprint, model_fingerprint
from ragcun.errors import RagcunError
from ragcun.eval.compare import Variant, compressed_search_metrics, evaluate_variants, results_table
from ragcun.eval.isotropy import effective_rank, isoscore
from ragcun.eval.metrics import compute_metrics
from ragcun.eval.report import write_report
from ragcun.eval.retrieval import search_embeddings
from ragcun.eval.whitening import Whitening


class TableEncoder:
    """Returns fixed vectors per text and counts encode calls (to check that shared models encode once)."""

    def __init__(self, vectors: dict[str, np.ndarray]):
        self.vectors, self.calls = vectors, 0

    def encode(self, texts, kind="document", batch_size=32, show_progress_bar=False):
        self.calls += 1
        return np.stack([self.vectors[t] for t in texts]).astype(np.float32)


@pytest.fixture(scope="module")
def gaussian_set():
    """400 documents with an anisotropic Gaussian cloud; query i is a noisy copy of document i."""
    rng = np.random.default_rng(0)
    scales = np.geomspace(3.0, 0.05, 32)
    docs = rng.standard_normal((400, 32)) * scales + 0.5
    queries = docs[:60] + 0.05 * rng.standard_normal((60, 32)) * scales
    doc_ids, query_ids = [f"d{i}" for i in range(400)], [f"q{i}" for i in range(60)]
    texts = {f"doc {i}": v for i, v in enumerate(docs)} | {f"query {i}": v for i, v in enumerate(queries)}
    rs = RetrievalSet(doc_ids, [f"doc {i}" for i in range(400)], query_ids, [f"query {i}" for i in range(60)],
                      {f"q{i}": {f"d{i}": 1} for i in range(60)})
    return rs, texts


def test_whitening_gives_zero_mean_identity_covariance():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2000, 8)) @ rng.standard_normal((8, 8)) + 3.0
    w = Whitening.fit(x)
    z = w.transform(x)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(np.cov(z.T, bias=True), np.eye(8), atol=1e-3)
    assert isoscore(z) == pytest.approx(1.0, abs=1e-4) and effective_rank(z) == pytest.approx(8.0, abs=1e-3)
    # Hand-worked: independent axes with variances 4 and 1 → W = diag(1/2, 1) up to sign, largest first.
    y = np.array([[2.0, 1.0], [-2.0, -1.0], [2.0, -1.0], [-2.0, 1.0]])
    w2 = Whitening.fit(y)
    np.testing.assert_allclose(np.abs(w2.matrix), [[0.5, 0.0], [0.0, 1.0]], atol=1e-6)
    assert Whitening.fit(x, num_components=3).transform(x).shape == (2000, 3)
    with pytest.raises(ValueError, match="at least 2"):
        Whitening.fit(x[:1])


def test_flat_compression_equals_exact_search_and_ratios(gaussian_set):
    rs, texts = gaussian_set
    q = np.stack([texts[t] for t in rs.query_texts]).astype(np.float32)
    c = np.stack([texts[t] for t in rs.corpus_texts]).astype(np.float32)
    exact = compute_metrics(rs.qrels, search_embeddings(rs, q, c, 100, "l2"))
    flat = compressed_search_metrics(rs, q, c, "Flat", "l2")
    assert flat["metrics"] == pytest.approx(exact) and flat["compression"] == 1.0
    sq8 = compressed_search_metrics(rs, q, c, "sq8", "l2")
    assert sq8["bytes_per_vector"] == 32 and sq8["compression"] == 4.0
    ivfpq = compressed_search_metrics(rs, q, c, "ivfpq", "l2")
    assert ivfpq["faiss_factory"] == "IVF80,PQ8x8" and ivfpq["compression"] == 16.0
    assert sq8["metrics"]["ndcg@10"] >= 0.9 * exact["ndcg@10"]
    with pytest.raises(RagcunError, match="'IVF9999,Flat': FAISS cannot build"):
        compressed_search_metrics(rs, q, c, "IVF9999,Flat", "l2")


def test_evaluate_variants_shares_encodings_and_whitens(gaussian_set):
    rs, texts = gaussian_set
    encoder = TableEncoder(texts)
    results = evaluate_variants(
        [Variant("raw", encoder, "l2"), Variant("raw cosine", encoder, "cosine"),
         Variant("whitened", encoder, "cosine", whiten=True)], rs, compress=("sq8",), show_progress_bar=False)
    assert encoder.calls == 2  # corpus + queries once for the three variants
    q = np.stack([texts[t] for t in rs.query_texts])
    c = np.stack([texts[t] for t in rs.corpus_texts])
    assert results[0].metrics == pytest.approx(compute_metrics(rs.qrels, search_embeddings(rs, q, c, 100, "l2")))
    assert results[1].metrics == pytest.approx(compute_metrics(rs.qrels, search_embeddings(rs, q, c, 100, "cosine")))
    assert results[0].isotropy["isoscore"] < 0.3 and results[2].isotropy["isoscore"] == pytest.approx(1.0, abs=1e-3)
    assert results[2].compression["sq8"]["relative_ndcg@10"] == pytest.approx(
        results[2].compression["sq8"]["metrics"]["ndcg@10"] / results[2].metrics["ndcg@10"])
    table = results_table(results)
    assert table.count("\n") == 4 and "| whitened | cosine |" in table and "sq8 rel. nDCG@10" in table


def test_embedding_cache_hits_only_for_the_same_weights_texts_and_kind(tiny_model, tmp_path):
    texts = ["cats sleep", "python language", "gene expression"]
    calls = []
    original = tiny_model.encode

    def counting(*args, **kw):
        calls.append(args[1] if len(args) > 1 else kw.get("kind"))
        return original(*args, **kw)

    tiny_model.encode = counting
    first = encode_cached(tiny_model, texts, "document", cache_dir=tmp_path, show_progress_bar=False)
    again = encode_cached(tiny_model, texts, "document", cache_dir=tmp_path, show_progress_bar=False)
    assert len(calls) == 1 and np.array_equal(first, again)
    assert len(list(tmp_path.glob("*.npy"))) == 1 and not list(tmp_path.glob(".*"))
    encode_cached(tiny_model, texts, "query", cache_dir=tmp_path, show_progress_bar=False)
    encode_cached(tiny_model, texts[:2], "document", cache_dir=tmp_path, show_progress_bar=False)
    assert len(calls) == 3
    before = model_fingerprint(tiny_model)
    with __import__("torch").no_grad():
        next(tiny_model.parameters()).add_(1.0)
    forget_fingerprint(tiny_model)
    assert model_fingerprint(tiny_model) != before
    changed = encode_cached(tiny_model, texts, "document", cache_dir=tmp_path, show_progress_bar=False)
    assert len(calls) == 4 and not np.allclose(changed, first)


def test_report_writes_tables_plots_and_replaces_old_reports(gaussian_set, tmp_path):
    rs, texts = gaussian_set
    training = tmp_path / "run"
    training.mkdir()
    (training / "training.log").write_text("".join(
        json.dumps({"step": s, "epoch": 1 + s // 5, "lr": 1e-5 * s, "total": 1.0 / s, "contrastive": 0.8 / s,
                    "isotropy": 2.0 / s, "variance": 0.0}) + "\n" for s in range(1, 10)))
    (training / "metrics.json").write_text(json.dumps([{"epoch": 1, "val_ndcg@10": 0.5}, {"epoch": 2, "val_ndcg@10": 0.6}]))
    encoder = TableEncoder(texts)
    results = evaluate_variants([Variant("trained", encoder, "l2", training_dir=training),
                                 Variant("whitened", encoder, "cosine", whiten=True)], rs, compress=("sq8",),
                                show_progress_bar=False)
    out = tmp_path / "report"
    meta = {"data": "synthetic", "num_queries": 60, "num_documents": 400, "date": "today"}
    write_report(results, out, meta)
    (out / "stale.txt").write_text("old")  # an old report of ours is replaced whole
    write_report(results, out, meta)
    names = sorted(p.name for p in out.iterdir())
    assert names == [".ragcun-output", "eigen_spectrum.png", "frontier.png", "metrics.json", "projections.png",
                     "report.html", "report.md", "training_curves.png"]
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    md = (out / "report.md").read_text()
    assert "![Training curves](training_curves.png)" in md and "| trained | l2 |" in md and "| whitened | sq8 |" in md
    page = (out / "report.html").read_text()
    assert page.count("<img") == 4 and "<td>whitened</td>" in page
    payload = json.loads((out / "metrics.json").read_text())
    assert [v["name"] for v in payload["variants"]] == ["trained", "whitened"]
    assert payload["variants"][1]["isotropy"]["isoscore"] == pytest.approx(1.0, abs=1e-3)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report")]
