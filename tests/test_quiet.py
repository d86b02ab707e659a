"""Expected noise is silenced at its source; real warnings still get through."""

from __future__ import annotations

import logging

from ragcun.quiet import _PoolerOnlyLoadReport


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("transformers.modeling_utils", logging.WARNING, __file__, 1, message, None, None)


POOLER_ONLY = """BertModel LOAD REPORT from: /x/model
Key                 | Status     |  |
--------------------+------------+--+-
pooler.dense.bias   | UNEXPECTED |  |
pooler.dense.weight | UNEXPECTED |  |
"""


def test_only_a_pooler_only_load_report_is_dropped():
    keep = _PoolerOnlyLoadReport().filter
    assert not keep(_record(POOLER_ONLY))
    assert keep(_record(POOLER_ONLY + "encoder.layer.0.attention.self.query.weight | MISSING |  |\n"))
    assert keep(_record(POOLER_ONLY.replace("pooler.dense.bias  ", "encoder.extra.bias")))
    assert keep(_record("some other transformers warning"))


def test_loading_the_packaged_minilm_prints_no_load_report_or_faiss_import_noise(capfd):
    import faiss  # noqa: F401 - its loader logs at import

    from ragcun.model import load_model

    logging.getLogger().setLevel(logging.INFO)
    model = load_model(base_model="sentence-transformers/all-MiniLM-L6-v2", output_dim=None)
    assert model.output_dim == 384
    captured = capfd.readouterr()
    output = captured.out + captured.err
    assert "LOAD REPORT" not in output and "Loading weights" not in output
    assert logging.getLogger("faiss.loader").getEffectiveLevel() == logging.WARNING
