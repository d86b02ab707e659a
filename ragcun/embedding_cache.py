"""An on-disk cache of corpus embeddings, so one model encodes one corpus once.

Encoding a corpus dominates every CPU job here (SciFact: ~4 minutes on 2 cores), and the demo encodes the
same corpus with the same base model twice (hard-negative mining, then the base model's evaluation). The
cache key is a SHA-256 of the model's *weights and configuration* (not its path: a retrained checkpoint
at the same path is a different model), the kind of text (query/document prompts differ) and the texts;
any change misses. Entries are plain ``.npy`` files read with ``allow_pickle=False`` and written through a
temporary file and a rename, so an interrupted run leaves no half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragcun.fs import atomic_file

logger = logging.getLogger(__name__)

_FINGERPRINT_ATTR = "_ragcun_fingerprint"


def model_fingerprint(model: Any) -> str:
    """SHA-256 of the model's configuration and every tensor of its state dict, and of how it computes
    (an :class:`ragcun.openvino_encoder.OpenVINOEncoder`'s ``fingerprint_extra``: its backend and graph).
    Memoised on the model; call :func:`forget_fingerprint` after changing the weights in place."""
    cached = getattr(model, _FINGERPRINT_ATTR, None)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    config = getattr(model, "config", None)
    config_dict = config.to_dict() if hasattr(config, "to_dict") else vars(config) if config is not None else {}
    digest.update(json.dumps(config_dict, sort_keys=True, default=str).encode())
    digest.update(getattr(model, "fingerprint_extra", "").encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    value = digest.hexdigest()
    setattr(model, _FINGERPRINT_ATTR, value)
    return value


def forget_fingerprint(model: Any) -> None:
    if hasattr(model, _FINGERPRINT_ATTR):
        delattr(model, _FINGERPRINT_ATTR)


class TextDigest:
    """SHA-256 over a sequence of texts, fed one at a time (so a streamed corpus need not be held)."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self.count = 0

    def add(self, text: str) -> None:
        self._digest.update(hashlib.sha256(text.encode()).digest())
        self.count += 1

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def cache_key(model: Any, texts: Sequence[str] | TextDigest, kind: str) -> str:
    """Key of (model weights and config, kind, texts in order)."""
    if not isinstance(texts, TextDigest):
        digest = TextDigest()
        for text in texts:
            digest.add(text)
        texts = digest
    return hashlib.sha256(f"{model_fingerprint(model)}|{kind}|{texts.count}|{texts.hexdigest()}".encode()).hexdigest()


class EmbeddingCache:
    """A directory of ``<key>.npy`` entries."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)

    def load(self, key: str, num_rows: int) -> np.ndarray | None:
        path = self.directory / f"{key}.npy"
        if not path.exists():
            return None
        vectors = np.load(path, allow_pickle=False)
        if vectors.ndim != 2 or vectors.shape[0] != num_rows:
            logger.warning("embedding cache entry %s has shape %s for %d texts; ignoring it", path, vectors.shape,
                           num_rows)
            return None
        logger.info("embedding cache hit: %d embeddings from %s", num_rows, path)
        return vectors

    def save(self, key: str, vectors: np.ndarray) -> Path:
        path = self.directory / f"{key}.npy"
        with atomic_file(path) as tmp:
            np.save(tmp, np.asarray(vectors, dtype=np.float32), allow_pickle=False)
        logger.info("embedding cache: wrote %d embeddings to %s", len(vectors), path)
        return path


def encode_cached(
    model: Any,
    texts: Sequence[str],
    kind: str = "document",
    batch_size: int = 32,
    cache_dir: str | os.PathLike | None = None,
    show_progress_bar: bool = True,
    encode: Callable[[Sequence[str]], np.ndarray] | None = None,
) -> np.ndarray:
    """``model.encode(texts, kind)`` — or ``encode(texts)``, another way to compute the same embeddings (the
    Ray Data encoder pool) — read from / written to ``cache_dir`` when one is given."""
    def compute() -> np.ndarray:
        if encode is not None:
            return np.asarray(encode(texts), dtype=np.float32)
        return np.asarray(model.encode(list(texts), kind, batch_size=batch_size, show_progress_bar=show_progress_bar),
                          dtype=np.float32)

    if cache_dir is None:
        return compute()
    cache = EmbeddingCache(cache_dir)
    key = cache_key(model, texts, kind)
    vectors = cache.load(key, len(texts))
    if vectors is None:
        vectors = compute()
        cache.save(key, vectors)
    return vectors
