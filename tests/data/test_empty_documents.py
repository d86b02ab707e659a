"""A real collection may hold documents whose title and text are both empty: evaluation, mining and the
index build skip them with one warning (judgements that name them still count), --strict refuses them."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from ragcun.cli import run_main
from ragcun.data.retrieval_sets import load_beir, read_test_eval, write_test_eval
from ragcun.errors import DataError

from ..conftest import REPO, SAMPLE_DOCS

sys.path.insert(0, str(REPO / "jobs"))
import evaluate  # noqa: E402
import prepare_data  # noqa: E402


@pytest.fixture
def beir_with_empty_docs(tmp_path):
    root = tmp_path / "beir"
    (root / "qrels").mkdir(parents=True)
    records = [{"_id": f"d{i}", "title": "", "text": d} for i, d in enumerate(SAMPLE_DOCS)]
    records.insert(2, {"_id": "empty1", "title": "", "text": "  "})
    records.append({"_id": "empty2", "text": ""})
    records.append({"_id": "title_only", "title": "Heart disease", "text": ""})  # CACM: the title is the text
    (root / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in
                                                (("q1", "cats sleep"), ("q2", "heart risk"), ("q3", "python"))))
    qrels = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\tempty1\t1\nq2\ttitle_only\t1\nq3\td0\t1\n"
    (root / "qrels" / "test.tsv").write_text(qrels)
    (root / "qrels" / "train.tsv").write_text(qrels)
    return root


def test_load_beir_skips_empty_documents_and_keeps_their_judgements(beir_with_empty_docs, caplog):
    with caplog.at_level(logging.WARNING):
        rs = load_beir(beir_with_empty_docs, "test")
    assert rs.corpus_ids == [f"d{i}" for i in range(6)] + ["title_only"]
    assert rs.corpus_texts[-1] == "Heart disease"
    assert rs.skipped_corpus_ids == ["empty1", "empty2"]
    assert rs.qrels["q1"] == {"d1": 1, "empty1": 1}  # relevant, and never retrievable
    warnings = [r for r in caplog.records if "skipped 2 document(s)" in r.getMessage()]
    assert len(warnings) == 1 and "line 3, id 'empty1'" in warnings[0].getMessage()
    with pytest.raises(DataError, match=r"corpus.jsonl:3: field 'text': empty"):
        load_beir(beir_with_empty_docs, "test", strict=True)


def test_skipped_documents_survive_test_eval_json(beir_with_empty_docs, tmp_path):
    rs = load_beir(beir_with_empty_docs, "test")
    again = read_test_eval(write_test_eval(rs, tmp_path / "test_eval.json"))
    assert again.qrels == rs.qrels and again.skipped_corpus_ids == ["empty1", "empty2"]


def test_evaluate_counts_a_skipped_relevant_document_as_missed(tiny_bert_dir, beir_with_empty_docs, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert run_main(evaluate.main, ["--base_model", tiny_bert_dir, "--beir_dir", str(beir_with_empty_docs),
                                    "--top_k", "7", "--output_file", str(out)]) == 0
    metrics = json.loads(out.read_text())["metrics"]
    # q1 has two relevant documents, one of them skipped: its recall can be 1/2 at most.
    assert metrics["num_queries"] == 3 and metrics["recall@100"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert run_main(evaluate.main, ["--base_model", tiny_bert_dir, "--beir_dir", str(beir_with_empty_docs),
                                    "--strict"]) == 2
    assert "corpus.jsonl:3: field 'text'" in capsys.readouterr().err


def test_prepare_skips_pairs_of_empty_documents(beir_with_empty_docs, tmp_path, capsys):
    out = tmp_path / "all.json"
    assert run_main(prepare_data.main, ["--beir_dir", str(beir_with_empty_docs), "--beir_split", "train",
                                        "--no-add_negatives", "--output", str(out)]) == 0
    triplets = json.loads(out.read_text())
    assert sorted(t["positive_id"] for t in triplets) == ["d0", "d1", "title_only"]
    assert run_main(prepare_data.main, ["--beir_dir", str(beir_with_empty_docs), "--output",
                                        str(tmp_path / "strict.json"), "--strict"]) == 2
    assert not (tmp_path / "strict.json").exists()
