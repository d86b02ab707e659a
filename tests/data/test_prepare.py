"""jobs/prepare_data.py and the data library: every input route, the outputs, and bad input."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ragcun.data.io import read_triplets
from ragcun.data.pairs import generate_pairs, split_sentences
from ragcun.data.retrieval_sets import load_beir, read_test_eval
from ragcun.errors import DataError

from ..conftest import REPO, SAMPLE_DOCS

sys.path.insert(0, str(REPO / "jobs"))
import prepare_data  # noqa: E402

from ragcun.cli import run_main  # noqa: E402


def run_prepare(*argv: str) -> int:
    return run_main(prepare_data.main, list(argv))


@pytest.fixture
def docs_file(tmp_path) -> Path:
    path = tmp_path / "docs.txt"
    path.write_text("\n".join(SAMPLE_DOCS * 3) + "\n")
    return path


@pytest.fixture
def beir_dir(tmp_path) -> Path:
    root = tmp_path / "beir"
    (root / "qrels").mkdir(parents=True)
    with open(root / "corpus.jsonl", "w") as f:
        for i, d in enumerate(SAMPLE_DOCS):
            f.write(json.dumps({"_id": f"d{i}", "title": f"title {i}", "text": d}) + "\n")
    queries = ["what is python", "do cats sleep", "vaccine immune response", "cancer gene", "neural networks",
               "heart disease"]
    with open(root / "queries.jsonl", "w") as f:
        for i, q in enumerate(queries):
            f.write(json.dumps({"_id": f"q{i}", "text": q}) + "\n")
    (root / "qrels" / "train.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(4)))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq4\td4\t1\nq5\td5\t1\n")
    return root


def test_ict_pairs_remove_the_query_from_the_positive():
    pairs = generate_pairs(SAMPLE_DOCS, seed=0)
    assert len(pairs) == len(SAMPLE_DOCS)
    for p in pairs:
        assert p["query"] not in p["positive"]
        assert p["query"] in SAMPLE_DOCS[int(p["positive_id"][3:])]
        assert p["negative_id"] != p["positive_id"]
    assert split_sentences("One two three. Four five six! Seven?") == ["One two three.", "Four five six!", "Seven?"]
    # Lowercase sentences (CACM, MEDLINE), abbreviations, initials, decimals and closing quotes.
    assert split_sentences("the method is new. it converges fast (see fig. 2). results follow.") == [
        "the method is new.", "it converges fast (see fig. 2).", "results follow."]
    assert split_sentences('Smith et al. found 1.5 mg/kg e.g. in rats. J. R. Doe agreed. "Yes." then no') == [
        "Smith et al. found 1.5 mg/kg e.g. in rats.", "J. R. Doe agreed.", '"Yes."', "then no"]
    assert split_sentences("no punctuation at all in this text") == ["no punctuation at all in this text"]


def test_documents_to_splits(docs_file, tmp_path, caplog):
    out = tmp_path / "out"
    with caplog.at_level("INFO", logger="ragcun.data.prepare"):
        assert run_prepare("--documents", str(docs_file), "--generate_pairs", "--num_pairs", "10",
                           "--split", "0.6", "0.2", "0.2", "--output_dir", str(out), "--seed", "1") == 0
    # Synthetic pairs come with the learning rate measured to do no harm on real queries.
    assert "--learning_rate 5e-6 --head_learning_rate 5e-5" in caplog.text
    train = json.loads((out / "train.json").read_text())
    val = json.loads((out / "val.json").read_text())
    test = read_test_eval(out / "test_eval.json")
    assert len(train) + len(val) + len(test.query_ids) == 10
    assert all({"query", "positive", "negative"} <= set(t) for t in train + val)
    # The test corpus is the whole collection (18 lines), not only the test positives.
    assert len(test.corpus_ids) == 18
    assert {t["query_id"] for t in train}.isdisjoint(test.query_ids)
    raw = json.loads((out / "test_eval.json").read_text())
    assert len(raw["corpus"]) == 18 and len(raw["relevance"]) == len(raw["queries"])


def test_no_add_negatives(docs_file, tmp_path):
    assert run_prepare("--documents", str(docs_file), "--generate_pairs", "--no-add_negatives",
                       "--output", str(tmp_path / "all.jsonl")) == 0
    rows = [json.loads(line) for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert rows and all("negative" not in r for r in rows)


def test_csv_to_parquet(tmp_path):
    src = tmp_path / "pairs.csv"
    with open(src, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["query", "positive", "negative"])
        for i, d in enumerate(SAMPLE_DOCS):
            w.writerow([f"question {i}", d, SAMPLE_DOCS[(i + 1) % len(SAMPLE_DOCS)]])
    out = tmp_path / "out"
    assert run_prepare("--csv_file", str(src), "--split", "0.5", "0.5", "0", "--format", "parquet",
                       "--output_dir", str(out)) == 0
    train, val = read_triplets(out / "train.parquet"), read_triplets(out / "val.parquet")
    assert len(train) == 3 and len(val) == 3
    assert all(t["negative"] in SAMPLE_DOCS for t in train)


def test_jsonl_input_round_trip(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"query": f"q {i}", "positive": d}) + "\n" for i, d in enumerate(SAMPLE_DOCS)))
    assert run_prepare("--input", str(src), "--output", str(tmp_path / "out.json")) == 0
    rows = json.loads((tmp_path / "out.json").read_text())
    assert len(rows) == 6 and all(r["negative"] != r["positive"] for r in rows)


def test_beir_folder_with_eval_split(beir_dir, tmp_path):
    out = tmp_path / "out"
    assert run_prepare("--beir_dir", str(beir_dir), "--beir_split", "train", "--split", "0.75", "0.25", "0",
                       "--beir_eval_split", "test", "--output_dir", str(out)) == 0
    train = json.loads((out / "train.json").read_text())
    val = json.loads((out / "val.json").read_text())
    assert len(train) == 3 and len(val) == 1
    assert train[0]["positive"].startswith("title ")  # title + " " + text
    test = read_test_eval(out / "test_eval.json")
    assert test.query_ids == ["q4", "q5"] and len(test.corpus_ids) == len(SAMPLE_DOCS)
    assert test.qrels == load_beir(beir_dir, "test").qrels


def test_mining_skips_positives_and_near_duplicates(tiny_model):
    from ragcun.data.mining import mine_hard_negatives

    corpus_ids = [f"d{i}" for i in range(len(SAMPLE_DOCS))] + ["dup"]
    corpus_texts = [*SAMPLE_DOCS, SAMPLE_DOCS[0]]  # "dup" is the positive of q0 under another id
    triplets = [{"query": "python programming", "positive": SAMPLE_DOCS[0], "query_id": "q0", "positive_id": "d0"},
                {"query": "python programming", "positive": SAMPLE_DOCS[4], "query_id": "q0", "positive_id": "d4"},
                {"query": "cats", "positive": SAMPLE_DOCS[1], "query_id": "q1", "positive_id": "d1"}]
    mined, stats = mine_hard_negatives(triplets, corpus_ids, corpus_texts, tiny_model, num_negatives=3,
                                       range_max=10, relative_margin=0.05, seed=0)
    assert stats["triplets_in"] == 3 and len(mined) == 3  # one record per pair, its negatives a group
    for t in mined:
        group = t["negative_ids"]
        assert len(group) == 3 == len(set(group)) == len(t["negatives"])  # exactly K, topped up where short
        assert (t["negative"], t["negative_id"]) == (t["negatives"][0], group[0])
        if t["query_id"] == "q0":
            assert not set(group) & {"d0", "d4", "dup"}  # positives, and a copy of a positive
        assert t["positive_id"] not in group
    single, _ = mine_hard_negatives(triplets, corpus_ids, corpus_texts, tiny_model, num_negatives=1, range_max=10,
                                    seed=0)
    assert len(single) == 3 and all("negatives" not in t for t in single)


def test_mine_negatives_flag(beir_dir, tmp_path, tiny_bert_dir, ray_cluster):
    out = tmp_path / "out"
    assert run_prepare("--beir_dir", str(beir_dir), "--mine_negatives", "--base_model", tiny_bert_dir,
                       "--num_negatives", "2", "--output_dir", str(out), "--cache_dir", str(tmp_path / "cache")) == 0
    train = json.loads((out / "train.json").read_text())
    assert len(train) == 4  # 4 pairs, each with a group of 2 negatives
    assert all(len(t["negatives"]) == 2 and t["positive_id"] not in t["negative_ids"] for t in train)
    assert read_triplets(out / "train.json")[0]["negatives"] == train[0]["negatives"]
    summary = json.loads((out / "prepare_summary.json").read_text())
    assert summary["mining"]["triplets_out"] == len(train)
    # The corpus was embedded by the Ray Data encoder pool: its cached embeddings are the model's, row by row.
    from ragcun.data.retrieval_sets import load_beir_corpus
    from ragcun.model import load_model

    (cached,) = (tmp_path / "cache").glob("*.npy")
    texts = load_beir_corpus(beir_dir).texts
    expected = load_model(base_model=tiny_bert_dir, output_dim=None).encode(texts, "document")
    assert np.allclose(np.load(cached), expected, atol=1e-5)
    # OpenVINO in float32 gives the same vectors through the pool's actors, hence the same negatives.
    assert run_prepare("--beir_dir", str(beir_dir), "--mine_negatives", "--base_model", tiny_bert_dir,
                       "--num_negatives", "2", "--output_dir", str(tmp_path / "openvino"),
                       "--encoder_backend", "openvino") == 0
    assert json.loads((tmp_path / "openvino" / "train.json").read_text()) == train


# ------------------------------------------------------------------------------------------- bad input
def _expect_error(capsys, out_dir: Path, *argv: str, match: str) -> None:
    assert run_prepare(*argv, "--output_dir", str(out_dir)) == 2
    err = capsys.readouterr().err
    assert "error:" in err and match in err, err
    assert not out_dir.exists() or not any(out_dir.iterdir()), "no partial output"


def test_malformed_json_names_the_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('[\n {"query": "a", "positive": "b"},\n {"query": "c" "positive": "d"}\n]\n')
    _expect_error(capsys, tmp_path / "o", "--input", str(bad), match=f"{bad}:3")


def test_malformed_jsonl_names_the_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "a", "positive": "b"}\n{"query": "a", "positive": \n')
    _expect_error(capsys, tmp_path / "o", "--input", str(bad), match=f"{bad}:2")


def test_missing_field_and_empty_text(tmp_path, capsys):
    bad = tmp_path / "missing.jsonl"
    bad.write_text('{"query": "a", "positive": "b"}\n{"query": "c"}\n')
    _expect_error(capsys, tmp_path / "o", "--input", str(bad), match="missing.jsonl:2: field 'positive'")
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps([{"query": "a", "positive": "b"}, {"query": "  ", "positive": "d"}]))
    _expect_error(capsys, tmp_path / "o", "--input", str(empty), match="field 'query': record 1: empty text")


def test_bad_negative_groups_name_the_field(tmp_path):
    bad = tmp_path / "t.jsonl"
    for record, field in (({"negatives": "one text"}, "negatives"), ({"negatives": ["a", " "]}, "negatives"),
                          ({"negatives": ["a", "b"], "negative_ids": ["x"]}, "negative_ids")):
        bad.write_text(json.dumps({"query": "q", "positive": "p", **record}) + "\n")
        with pytest.raises(DataError, match=f"t.jsonl:1: field '{field}'"):
            read_triplets(bad)


def test_csv_without_expected_header(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("question,answer\nwhat,that\n")
    _expect_error(capsys, tmp_path / "o", "--csv_file", str(bad), match="bad.csv:1: CSV header")


def test_split_ratios_must_sum_to_one(docs_file, tmp_path, capsys):
    _expect_error(capsys, tmp_path / "o", "--documents", str(docs_file), "--generate_pairs",
                  "--split", "0.8", "0.1", "0.2", match="must sum to 1")


def test_num_pairs_larger_than_possible(docs_file, tmp_path, capsys):
    _expect_error(capsys, tmp_path / "o", "--documents", str(docs_file), "--generate_pairs", "--num_pairs", "500",
                  match="--num_pairs 500 is more than possible")


def test_beir_qrels_with_unknown_ids(beir_dir, tmp_path, capsys):
    qrels = beir_dir / "qrels" / "train.tsv"
    qrels.write_text(qrels.read_text() + "q1\tno_such_doc\t1\n")
    _expect_error(capsys, tmp_path / "o", "--beir_dir", str(beir_dir), match=f"{qrels}:6: field 'corpus-id'")
    with pytest.raises(DataError, match="unknown query id"):
        qrels.write_text("query-id\tcorpus-id\tscore\nq77\td1\t1\n")
        load_beir(beir_dir, "train")


def test_cli_exit_code_and_usage_errors(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "jobs" / "prepare_data.py"), "--input",
                           str(tmp_path / "nope.json"), "--output_dir", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "nope.json: no such file" in proc.stderr
    proc = subprocess.run([sys.executable, str(REPO / "jobs" / "prepare_data.py"), "--input", "x.json", "--bogus"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--bogus" in proc.stderr


def test_every_triplet_carries_its_querys_positive_set():
    from ragcun.data.prepare import attach_positive_sets

    triplets = [{"query": "q", "positive": "a", "query_id": "1", "positive_id": "A"},
                {"query": "q", "positive": "b", "query_id": "1", "positive_id": "B"},
                {"query": "r", "positive": "b", "query_id": "2", "positive_id": "B"},
                {"query": "s", "positive": "c"}]
    attach_positive_sets(triplets)
    assert [t.get("positive_ids") for t in triplets] == [["A", "B"], ["A", "B"], ["B"], None]


def test_random_crops_work_without_sentences_and_group_by_document():
    from ragcun.data.prepare import attach_positive_sets

    docs = [" ".join(f"word{i}x{j}" for j in range(40)) for i in range(5)]  # lower case, no punctuation (NPL-like)
    with pytest.raises(DataError, match="two or more sentences"):
        generate_pairs(docs)  # ICT finds no sentence boundary
    pairs = generate_pairs(docs, method="crop", pairs_per_document=3, add_negatives=True, seed=1)
    assert len(pairs) == 15
    for p in pairs:
        doc = docs[int(p["query_id"][1:])]
        assert p["query"] in doc and p["positive"] in doc  # both are spans of the same document
        assert 4 <= len(p["query"].split()) <= 20 and p["negative"] != doc
        assert p["positive_id"].startswith(f"doc{p['query_id'][1:]}#")
    attach_positive_sets(pairs)
    assert all(len(p["positive_ids"]) == 3 for p in pairs)  # the three crops of a document are all positives
    with pytest.raises(DataError, match="--num_pairs 16 is more than possible: 15 pairs"):
        generate_pairs(docs, num_pairs=16, method="crop", pairs_per_document=3)
    with pytest.raises(DataError, match="--pair_method must be one of"):
        generate_pairs(docs, method="span")


def test_prepare_documents_with_crops(tmp_path):
    docs = tmp_path / "docs.txt"
    docs.write_text("\n".join(" ".join(f"term{i}{j}" for j in range(30)) for i in range(10)) + "\n")
    out = tmp_path / "out"
    assert run_main(prepare_data.main, ["--documents", str(docs), "--generate_pairs", "--pair_method", "crop",
                                        "--pairs_per_document", "2", "--split", "0.8", "0.2", "0",
                                        "--output_dir", str(out)]) == 0
    train = json.loads((out / "train.json").read_text())
    val = json.loads((out / "val.json").read_text())
    assert len(train) + len(val) == 20
    assert not {t["query_id"] for t in train} & {t["query_id"] for t in val}  # a document's crops stay together
