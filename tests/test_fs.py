"""Output directories: ragcun replaces only what it wrote, and never leaves no output behind."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

from ragcun.errors import RagcunError
from ragcun.fs import (
    OUTPUT_MARKER,
    OutputDirectoryError,
    check_output_directory,
    replace_directory,
    staging_directory,
)

from .conftest import REPO


def _staged(target, content: str):
    staged = staging_directory(target)
    (staged / "out.txt").write_text(content)
    return staged


def test_new_empty_and_own_directories_are_replaced(tmp_path):
    target = tmp_path / "out"
    replace_directory(_staged(target, "one"), target, "thing")
    assert (target / "out.txt").read_text() == "one"
    assert json.loads((target / OUTPUT_MARKER).read_text()) == {"kind": "thing"}
    replace_directory(_staged(target, "two"), target, "thing")  # ours: replaced
    assert (target / "out.txt").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no aside or staging copies left
    empty = tmp_path / "empty"
    empty.mkdir()
    replace_directory(_staged(empty, "three"), empty, "thing")
    assert (empty / "out.txt").read_text() == "three"


@pytest.mark.parametrize("setup", ["user_files", "other_kind", "a_file"])
def test_a_directory_ragcun_did_not_write_is_refused_and_kept(tmp_path, setup):
    target = tmp_path / "runs"
    if setup == "a_file":
        target.write_text("precious")
    else:
        target.mkdir()
        (target / "checkpoint.pt").write_text("precious")
        if setup == "other_kind":
            (target / OUTPUT_MARKER).write_text(json.dumps({"kind": "report"}))
    with pytest.raises(OutputDirectoryError, match="refusing to replace"):
        check_output_directory(target, "index")
    staged = _staged(target, "new")
    with pytest.raises(OutputDirectoryError):
        replace_directory(staged, target, "index")
    assert (target.read_text() if setup == "a_file" else (target / "checkpoint.pt").read_text()) == "precious"


def test_a_failed_swap_puts_the_old_output_back(tmp_path, monkeypatch):
    target = tmp_path / "out"
    replace_directory(_staged(target, "old"), target, "thing")
    staged = _staged(target, "new")
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(src) == str(staged):
            raise OSError("disk gone")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk gone"):
        replace_directory(staged, target, "thing")
    assert (target / "out.txt").read_text() == "old"


def test_retriever_save_refuses_a_user_directory(tiny_model, tmp_path):
    from ragcun import GaussianRetriever

    retriever = GaussianRetriever(model=tiny_model)
    retriever.add_documents(["a cat sleeps", "dogs run fast"])
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RagcunError, match="not a ragcun index"):
        retriever.save(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    index = tmp_path / "index"
    retriever.save(index)
    retriever.add_documents(["a third one"])
    retriever.save(index)  # an index ragcun wrote is replaced
    assert len(GaussianRetriever.load(index)) == 3


def test_report_refuses_a_user_directory(tmp_path):
    from ragcun.eval.compare import VariantResult
    from ragcun.eval.report import write_report

    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "best_model.pt").write_text("mine")
    from ragcun.eval.isotropy import isotropy_report

    vectors = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    result = VariantResult(name="m", source="m.pt", distance="l2", whiten=False, metrics={"ndcg@10": 0.5},
                           isotropy=isotropy_report(vectors), compression={}, timing={}, run={}, corpus_embeddings=vectors,
                           query_embeddings=vectors[:5])
    with pytest.raises(RagcunError, match="--report"):
        write_report([result], tmp_path / "runs", {})
    assert (tmp_path / "runs" / "best_model.pt").read_text() == "mine"
    report = write_report([result], tmp_path / "report", {})
    assert (report / "report.html").is_file()
    write_report([result], report, {})  # its own report is replaced


@pytest.mark.ray
def test_build_index_into_a_user_directory_exits_2_before_encoding(ray_cluster, tiny_model, tmp_path, capsys):
    from ragcun.cli import run_main

    sys.path.insert(0, str(REPO / "jobs"))
    import build_index as build_index_job

    corpus = tmp_path / "docs.txt"
    corpus.write_text("a cat sleeps\ndogs run fast\n")
    checkpoint = tiny_model.save_checkpoint(tmp_path / "model.pt")
    code = run_main(build_index_job.main, ["--corpus", str(corpus), "--model_path", str(checkpoint),
                                           "--output_dir", str(tmp_path)])
    assert code == 2 and "not a ragcun index" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs.txt", "model.pt"]


def test_atomic_file_replaces_whole_or_not_at_all(tmp_path):
    from ragcun.fs import atomic_file

    target = tmp_path / "sub" / "x.json"
    with atomic_file(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".json" and tmp != target
        tmp.write_text("new")
    assert target.read_text() == "new"
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("the writer failed")
    assert target.read_text() == "new" and sorted(p.name for p in target.parent.iterdir()) == ["x.json"]
