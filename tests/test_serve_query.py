"""jobs/serve_query.py (the demo's last step): Serve started in-process on loopback, queried over HTTP."""

from __future__ import annotations

import json
import sys

import pytest

from ragcun.cli import run_main
from ragcun.retriever import GaussianRetriever

from .conftest import REPO

sys.path.insert(0, str(REPO / "jobs"))
import serve_query  # noqa: E402

pytestmark = pytest.mark.ray


def test_serve_query_answers_over_http_as_the_retriever_does(ray_cluster, served_index_dir, tmp_path, capsys):
    out = tmp_path / "answers.json"
    assert run_main(serve_query.main, ["--index_dir", str(served_index_dir), "--query", "cats sleep",
                                       "--query", "gene", "--top_k", "2", "--num_cpus", "0.25",
                                       "--output_file", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["url"].startswith("http://127.0.0.1:") and result["info"]["num_documents"] == 18
    local = GaussianRetriever.load(served_index_dir)
    for answer in result["answers"]:
        assert answer["mode"] == "dense"
        expected = local.search([answer["query"]], top_k=2)[0]
        assert [h["id"] for h in answer["hits"]] == [h["id"] for h in expected]
    printed = capsys.readouterr().out
    assert "Q: cats sleep" in printed and "ms over HTTP" in printed


def test_serve_query_refuses_a_missing_index(tmp_path, capsys):
    assert run_main(serve_query.main, ["--index_dir", str(tmp_path / "nope")]) == 2
    assert "manifest.json" in capsys.readouterr().err
