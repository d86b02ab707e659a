"""jobs/evaluate.py end to end on a tiny checkpoint, and its bad-input paths."""

from __future__ import annotations

import json
import sys

import pytest

from ragcun.cli import run_main
from ragcun.data.retrieval import RetrievalSet, write_test_eval

from .conftest import REPO, SAMPLE_DOCS

sys.path.insert(0, str(REPO / "jobs"))
import evaluate  # noqa: E402


@pytest.fixture
def test_eval(tmp_path):
    rs = RetrievalSet([f"d{i}" for i in range(6)], SAMPLE_DOCS, ["q0", "q1"], ["python language", "cats sleep"],
                      {"q0": {"d0": 1}, "q1": {"d1": 1}})
    return write_test_eval(rs, tmp_path / "test_eval.json")


def test_evaluate_checkpoint(tiny_model, tmp_path, test_eval):
    ckpt = tiny_model.save_checkpoint(tmp_path / "best_model.pt")
    out = tmp_path / "results" / "eval.json"
    code = run_main(evaluate.main, ["--model_path", str(ckpt), "--test_data", str(test_eval), "--top_k", "5",
                                    "--output_file", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    keys = {"recall@1", "recall@5", "recall@10", "recall@20", "recall@50", "recall@100", "mrr@10", "mrr", "ndcg@10",
            "map@100"}
    assert keys <= set(report["metrics"]) and report["metrics"]["num_queries"] == 2
    assert report["metrics"]["recall@5"] in (0.0, 0.5, 1.0)
    run_lines = out.with_suffix(".run").read_text().splitlines()
    assert len(run_lines) == 2 * 5 and run_lines[0].split()[1] == "Q0"


def test_evaluate_base_model_on_a_beir_folder(tiny_bert_dir, tmp_path):
    root = tmp_path / "beir"
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "title": "", "text": d}) + "\n"
                                               for i, d in enumerate(SAMPLE_DOCS)))
    (root / "queries.jsonl").write_text(json.dumps({"_id": "q", "text": "cats"}) + "\n")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq\td1\t1\n")
    assert run_main(evaluate.main, ["--base_model", tiny_bert_dir, "--beir_dir", str(root), "--distance", "cosine",
                                    "--top_k", "6", "--run_file", str(tmp_path / "r.run")]) == 0
    assert len((tmp_path / "r.run").read_text().splitlines()) == 6


def test_bad_checkpoint_and_data(tmp_path, test_eval, capsys):
    fake = tmp_path / "fake.pt"
    fake.write_bytes(b"not a checkpoint")
    assert run_main(evaluate.main, ["--model_path", str(fake), "--test_data", str(test_eval)]) == 2
    assert "fake.pt: not a ragcun checkpoint" in capsys.readouterr().err
    bad = tmp_path / "bad_eval.json"
    bad.write_text(json.dumps({"corpus": ["a"], "queries": ["q"], "relevance": [[3]]}))
    assert run_main(evaluate.main, ["--base_model", "x", "--test_data", str(bad)]) == 2
    assert "out of range" in capsys.readouterr().err
