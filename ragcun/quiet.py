"""Messages that every run prints although nothing is wrong, silenced at their source (real warnings stay).

- faiss first tries to import its AVX2/AVX512 builds and logs the failed import, with a traceback-like
  ``ModuleNotFoundError``, at INFO; the generic build it then loads is the one faiss-cpu ships for this CPU.
- transformers prints a LOAD REPORT table when a BERT checkpoint's pooler weights go unused: ragcun builds
  BERT backbones without the pooler on purpose (mean pooling never uses it, and an unused parameter breaks
  DDP's gradient reduction). Only a report whose every row is an unexpected ``pooler.*`` key is dropped; any
  missing or mismatched key is still reported.
"""

from __future__ import annotations

import logging

_STATUSES = ("UNEXPECTED", "MISSING", "MISMATCH", "CONVERSION")


class _PoolerOnlyLoadReport(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "LOAD REPORT" not in message:
            return True
        rows = [line for line in message.splitlines() if "|" in line and any(s in line for s in _STATUSES)]
        return not rows or not all(row.lstrip().startswith("pooler.") and "UNEXPECTED" in row for row in rows)


_FILTER = _PoolerOnlyLoadReport()


def silence_expected_messages() -> None:
    """Idempotent; called when ragcun is imported, so it holds in Ray workers, actors and replicas too."""
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    transformers_logger = logging.getLogger("transformers.modeling_utils")
    if _FILTER not in transformers_logger.filters:
        transformers_logger.addFilter(_FILTER)
