"""The check that loading, encoding and metrics are right: the packaged all-MiniLM-L6-v2 on the embedded
BEIR SciFact test split must give the published MTEB figures (cosine, mean pooling, 256 tokens,
document = title + " " + text). About 5 minutes on 2 CPU cores."""

from __future__ import annotations

import pytest

from ragcun.data.retrieval import load_beir
from ragcun.eval.retrieval import evaluate_model
from ragcun.model import load_model

from ..conftest import SCIFACT


@pytest.mark.slow
def test_minilm_reproduces_published_scifact_figures():
    model = load_model(base_model="sentence-transformers/all-MiniLM-L6-v2", output_dim=None,
                       max_query_length=256, max_doc_length=256)
    result = evaluate_model(model, load_beir(SCIFACT, "test"), batch_size=32, top_k=100, distance="cosine",
                            show_progress_bar=False)
    m = result["metrics"]
    assert m["num_queries"] == 300
    assert m["ndcg@10"] == pytest.approx(0.6451, abs=0.001)
    assert m["recall@10"] == pytest.approx(0.7833, abs=0.001)
    assert m["mrr@10"] == pytest.approx(0.6047, abs=0.001)
