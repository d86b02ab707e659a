"""The check that loading, encoding and metrics are right: the packaged all-MiniLM-L6-v2 on the embedded
BEIR SciFact test split must give the published MTEB figures (cosine, mean pooling, 256 tokens,
document = title + " " + text). It runs docs/evaluation.md's reproduction command (jobs/evaluate.py) verbatim but
for the output path. About 5 minutes on 2 CPU cores."""

from __future__ import annotations

import json
import shlex
import sys

import pytest

from ragcun.cli import run_main

from ..conftest import REPO

sys.path.insert(0, str(REPO / "jobs"))
import evaluate  # noqa: E402

README_COMMAND = ("python jobs/evaluate.py --base_model sentence-transformers/all-MiniLM-L6-v2 --beir_dir data/scifact "
                  "--split test --distance cosine --output_file runs/demo/results/base_minilm_cosine.json")


@pytest.mark.slow
def test_minilm_reproduces_published_scifact_figures(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    argv = shlex.split(README_COMMAND)[2:]
    argv[argv.index("--output_file") + 1] = str(tmp_path / "base.json")
    assert run_main(evaluate.main, argv) == 0
    m = json.loads((tmp_path / "base.json").read_text())["metrics"]
    assert m["num_queries"] == 300
    assert m["ndcg@10"] == pytest.approx(0.6451, abs=0.001)
    assert m["recall@10"] == pytest.approx(0.7833, abs=0.001)
    assert m["mrr@10"] == pytest.approx(0.6047, abs=0.001)
