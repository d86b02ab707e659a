"""jobs/evaluate.py end to end on a tiny checkpoint, and its bad-input paths."""

from __future__ import annotations

import json
import sys

import pytest

from ragcun.cli import run_main
from ragcun.config import EvalConfig
from ragcun.data.retrieval_sets import RetrievalSet, write_test_eval
from ragcun.openvino_encoder import check_backend

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


def test_evaluate_on_the_openvino_backends(tiny_model, tmp_path, test_eval):
    """The checkpoint through OpenVINO: float32 ranks exactly as torch; int8 (calibrated on the test corpus's
    documents) is evaluated and says so in the JSON."""
    ckpt = tiny_model.save_checkpoint(tmp_path / "best_model.pt")
    metrics = {}
    for backend in ("torch", "openvino", "openvino-int8"):
        out = tmp_path / f"{backend}.json"
        assert run_main(evaluate.main, ["--model_path", str(ckpt), "--test_data", str(test_eval), "--top_k", "5",
                                        "--encoder_backend", backend, "--output_file", str(out)]) == 0
        report = json.loads(out.read_text())
        assert report["encoder_backend"] == backend
        metrics[backend] = report["metrics"]
    assert metrics["openvino"]["ndcg@10"] == pytest.approx(metrics["torch"]["ndcg@10"], abs=1e-9)
    assert metrics["openvino"]["mrr"] == pytest.approx(metrics["torch"]["mrr"], abs=1e-9)
    assert 0.0 <= metrics["openvino-int8"]["ndcg@10"] <= 1.0
    out = tmp_path / "auto.json"
    assert run_main(evaluate.main, ["--model_path", str(ckpt), "--test_data", str(test_eval), "--top_k", "5",
                                    "--encoder_backend", "auto", "--output_file", str(out)]) == 0
    assert json.loads(out.read_text())["encoder_backend"] == check_backend("auto")  # what ran, not "auto"


def test_the_baselines_run_on_the_checkpoints_backend(tiny_model, tmp_path, test_eval):
    """One backend for every model of a comparison: the base model and its whitened copy are encoded by
    OpenVINO too when --encoder_backend asks for it."""
    from ragcun.eval.job import build_variants
    from ragcun.openvino_encoder import OpenVINOEncoder

    ckpt = tiny_model.save_checkpoint(tmp_path / "best_model.pt")
    config = EvalConfig(model_path=(f"trained={ckpt}",), test_data=str(test_eval), baselines=("base", "whitening", "bm25"),
                        encoder_backend="openvino")
    variants = {v.name: v.model for v in build_variants(config)}
    assert set(variants) == {"trained", "base", "base + whitening", "BM25"}
    assert all(isinstance(variants[name], OpenVINOEncoder) for name in ("trained", "base", "base + whitening"))
    assert variants["BM25"] is None


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


def test_several_distances_and_per_query_scores(tiny_bert_dir, tmp_path, test_eval):
    out = tmp_path / "eval.json"
    assert run_main(evaluate.main, ["--base_model", tiny_bert_dir, "--test_data", str(test_eval), "--distance", "l2",
                                    "cosine", "--baselines", "bm25", "--top_k", "5", "--output_file", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [v["name"] for v in result["variants"]] == ["base (l2)", "base (cosine)", "BM25"]
    assert [v["distance"] for v in result["variants"]] == ["l2", "cosine", "bm25"] and result["distance"] == "l2"
    for variant in result["variants"]:  # per-query nDCG@10 (for paired tests) averages to the reported metric
        per_query = variant["per_query"]["ndcg@10"]
        assert len(per_query) == 2
        assert sum(per_query.values()) / 2 == pytest.approx(variant["metrics"]["ndcg@10"], abs=1e-6)


def test_bad_checkpoint_and_data(tmp_path, test_eval, capsys):
    fake = tmp_path / "fake.pt"
    fake.write_bytes(b"not a checkpoint")
    assert run_main(evaluate.main, ["--model_path", str(fake), "--test_data", str(test_eval)]) == 2
    assert "fake.pt: not a ragcun checkpoint" in capsys.readouterr().err
    bad = tmp_path / "bad_eval.json"
    bad.write_text(json.dumps({"corpus": ["a"], "queries": ["q"], "relevance": [[3]]}))
    assert run_main(evaluate.main, ["--base_model", "x", "--test_data", str(bad)]) == 2
    assert "out of range" in capsys.readouterr().err


def test_evaluate_side_by_side_with_baselines_compression_and_report(tiny_model, tiny_bert_dir, tmp_path, test_eval,
                                                                     capsys):
    run_dir = tmp_path / "run_a"
    run_dir.mkdir()
    tiny_model.config.base_model = tiny_bert_dir
    ckpt = tiny_model.save_checkpoint(run_dir / "best_model.pt")
    (run_dir / "training.log").write_text(json.dumps({"step": 1, "lr": 1e-5, "total": 1.0, "contrastive": 1.0}) + "\n")
    out, report = tmp_path / "eval.json", tmp_path / "report"
    cache = tmp_path / "cache"
    args = ["--model_path", str(ckpt), f"second={ckpt}", "--test_data", str(test_eval), "--top_k", "5",
            "--baselines", "base", "whitening", "--compress", "sq8", "--cache_dir", str(cache),
            "--output_file", str(out), "--report", str(report)]
    assert run_main(evaluate.main, args) == 0
    result = json.loads(out.read_text())
    names = [v["name"] for v in result["variants"]]
    assert names == ["run_a", "second", "base", "base + whitening"]
    first, second, base, whitened = result["variants"]
    assert first["metrics"] == second["metrics"] == result["metrics"]  # one checkpoint under two names
    assert base["distance"] == "cosine" and whitened["whitening"] is True and base["model"] == tiny_bert_dir
    assert whitened["isotropy"]["isoscore"] > base["isotropy"]["isoscore"]
    assert set(first["compression"]) == {"sq8"} and first["compression"]["sq8"]["compression"] == 4.0
    assert len(list(cache.glob("*.npy"))) == 2  # the checkpoint's and the base model's corpus embeddings
    assert {p.name for p in report.iterdir()} >= {"report.html", "report.md", "metrics.json", "training_curves.png",
                                                  "eigen_spectrum.png", "projections.png"}
    err = capsys.readouterr().err
    assert "| base + whitening | cosine |" in err and "report.html" in err


def test_evaluate_rejects_bad_flags(tmp_path, test_eval, capsys):
    with pytest.raises(SystemExit) as exit_info:
        evaluate.parse_args(["--test_data", str(test_eval)])
    assert exit_info.value.code == 2 and "--model_path and/or --base_model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate.parse_args(["--model_path", "a/x.pt", "a/x.pt", "--test_data", str(test_eval)])
    assert "share a name" in capsys.readouterr().err


def test_evaluate_rejects_an_unknown_index_type_before_encoding(tiny_bert_dir, test_eval, tmp_path, capsys):
    args = ["--base_model", tiny_bert_dir, "--test_data", str(test_eval), "--compress", "sq8", "Bogus99",
            "--report", str(tmp_path / "report")]
    assert run_main(evaluate.main, args) == 2
    err = capsys.readouterr().err
    assert "--compress 'Bogus99': FAISS cannot build" in err and "encoding" not in err
    assert not (tmp_path / "report").exists()
