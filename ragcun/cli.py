"""What every entry point shares: logging set-up and turning input errors into a message and exit code 2."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from ragcun.errors import RagcunError


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # The hub is unreachable by design; never let transformers try it for a local or packaged model.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run_main(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Run ``main``; a RagcunError (bad input) prints ``error: …`` and returns 2 instead of a traceback."""
    setup_logging()
    try:
        return int(main(argv) or 0)
    except RagcunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
