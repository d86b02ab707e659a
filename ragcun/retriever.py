"""GaussianRetriever: the seed's Python API — embed documents into a FAISS index and retrieve by distance.

    retriever = GaussianRetriever(model_path="checkpoints/best_model.pt")
    retriever.add_documents(["Python is a programming language.", "Machine learning is a subset of AI."])
    for doc, distance in retriever.retrieve("What is ML?", top_k=5):
        ...

A saved retriever is a directory (no pickle anywhere): ``index.faiss`` (faiss.write_index),
``documents.parquet`` (id, text, metadata as JSON text), ``model.pt`` (a ragcun checkpoint, loaded with
``weights_only=True``) and ``manifest.json`` (model, dimension, distance, counts, index checksum).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ragcun.index import (
    Distance,
    build_index,
    check_distance,
    load_index,
    maybe_to_gpu,
    save_index,
    search,
    to_cpu,
)

logger = logging.getLogger(__name__)
MANIFEST_VERSION = 1


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class GaussianRetriever:
    """Dense retrieval with a Gaussian embedding model and a FAISS index.

    Args:
        model_path: a ragcun checkpoint (``.pt``); None uses the untrained ``base_model``.
        embedding_dim: the head's width for an untrained model (a checkpoint brings its own).
        use_gpu: put the model and the index on the GPU; falls back to the CPU with a warning.
        base_model: backbone for ``model_path=None`` (default: the packaged all-MiniLM-L6-v2).
        distance: ``l2`` (default, the Gaussian model's metric), ``ip`` or ``cosine``.
        index_type: ``flat`` (exact) or any type :func:`ragcun.index.build_index` accepts; trainable types
            (ivfpq) are trained on the first batch of documents added.
    """

    def __init__(
        self,
        model_path: str | None = None,
        embedding_dim: int = 512,
        use_gpu: bool = False,
        base_model: str | None = None,
        distance: Distance = "l2",
        index_type: str = "flat",
        batch_size: int = 32,
        model: Any = None,
    ):
        from ragcun.model import load_model

        self.distance = check_distance(distance)
        self.index_type = index_type
        self.batch_size = batch_size
        self.model_path = model_path
        self.model = model if model is not None else load_model(model_path, base_model, output_dim=embedding_dim)
        if model_path and embedding_dim not in (512, self.model.output_dim):
            logger.warning("embedding_dim=%d ignored: the checkpoint's head has %d dimensions",
                           embedding_dim, self.model.output_dim)
        self.embedding_dim = self.model.output_dim
        self.use_gpu = self._resolve_gpu(use_gpu)
        if self.use_gpu:
            self.model.to("cuda")
        self.index = None
        self.doc_ids: list[str] = []
        self.documents: list[str] = []
        self.metadata: list[dict[str, Any]] = []

    @staticmethod
    def _resolve_gpu(use_gpu: bool) -> bool:
        if not use_gpu:
            return False
        import torch

        if not torch.cuda.is_available():
            logger.warning("use_gpu=True but no CUDA device is available: running on the CPU")
            return False
        return True

    def __len__(self) -> int:
        return len(self.documents)

    def add_documents(
        self, texts: list[str], ids: list[str] | None = None, metadata: list[dict[str, Any]] | None = None
    ) -> None:
        """Embed and append ``texts`` to the index (the existing vectors are kept, not rebuilt)."""
        if isinstance(texts, str):
            raise TypeError("add_documents takes a list of texts, not a single string")
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                raise ValueError(f"document {i} is empty or not a string")
        if ids is not None and len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids for {len(texts)} documents")
        if metadata is not None and len(metadata) != len(texts):
            raise ValueError(f"{len(metadata)} metadata entries for {len(texts)} documents")
        if not texts:
            return
        vectors = self.model.encode(texts, "document", batch_size=self.batch_size)
        self.add_embeddings(vectors, texts, ids, metadata)

    def add_embeddings(
        self,
        vectors: np.ndarray,
        texts: list[str],
        ids: list[str] | None = None,
        metadata: list[dict[str, Any]] | None = None,
    ) -> None:
        """Append precomputed document vectors (they must come from this retriever's model)."""
        if vectors.shape != (len(texts), self.embedding_dim):
            raise ValueError(f"expected vectors of shape ({len(texts)}, {self.embedding_dim}), got {vectors.shape}")
        if self.index is None:
            self.index = maybe_to_gpu(build_index(vectors, index_type=self.index_type, distance=self.distance), self.use_gpu)
        else:
            from ragcun.index import prepare_vectors

            self.index.add(prepare_vectors(vectors, self.distance))
        start = len(self.documents)
        self.doc_ids.extend(ids if ids is not None else [str(start + i) for i in range(len(texts))])
        self.documents.extend(texts)
        self.metadata.extend(metadata if metadata is not None else [{} for _ in texts])

    def search(self, queries: list[str], top_k: int = 5) -> list[list[dict[str, Any]]]:
        """For each query, the ``top_k`` hits as dicts: id, text, distance (or score), metadata."""
        for i, q in enumerate(queries):
            if not isinstance(q, str) or not q.strip():
                raise ValueError(f"query {i} is empty or not a string")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if self.index is None or not self.documents:
            return [[] for _ in queries]
        vectors = self.model.encode(queries, "query", batch_size=self.batch_size, show_progress_bar=False)
        values, ids = search(self.index, vectors, top_k, self.distance)
        results = []
        for row_values, row_ids in zip(values, ids):
            hits = []
            for value, idx in zip(row_values, row_ids):
                if idx < 0:
                    continue
                hits.append({"id": self.doc_ids[idx], "text": self.documents[idx], "distance": float(value),
                             "metadata": self.metadata[idx]})
            results.append(hits)
        return results

    def retrieve(self, query: str, top_k: int = 5) -> list[tuple[str, float]]:
        """(document, distance) pairs, nearest first. For ``l2`` this is the true Euclidean distance."""
        return [(hit["text"], hit["distance"]) for hit in self.search([query], top_k)[0]]

    # ------------------------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike, include_model: bool = True) -> Path:
        """Write the index directory; built in a temporary sibling and renamed, so never half-written."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.index is None:
            raise ValueError("nothing to save: add documents first")
        if not include_model and not self.model_path:
            # An untrained model's head is random: without the weights the index could not be queried again.
            raise ValueError("include_model=False needs a retriever built from a model_path checkpoint")
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            save_index(to_cpu(self.index), tmp / "index.faiss")
            table = pa.table({"id": self.doc_ids, "text": self.documents,
                              "metadata": [json.dumps(m, ensure_ascii=False) for m in self.metadata]})
            pq.write_table(table, tmp / "documents.parquet")
            if include_model:
                self.model.save_checkpoint(tmp / "model.pt")
            manifest = {
                "format": "ragcun-index",
                "format_version": MANIFEST_VERSION,
                "model": {"checkpoint": "model.pt" if include_model else None, "model_path": self.model_path,
                          "base_model": self.model.config.base_model, "output_dim": self.embedding_dim},
                "dim": self.embedding_dim,
                "distance": self.distance,
                "index_type": self.index_type,
                "num_documents": len(self.documents),
                "index_sha256": file_sha256(tmp / "index.faiss"),
            }
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
            if directory.exists():
                shutil.rmtree(directory)
            os.replace(tmp, directory)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike, use_gpu: bool = False, model_path: str | None = None) -> GaussianRetriever:
        """Load an index directory written by :meth:`save` or ``jobs/build_index.py``."""
        import pyarrow.parquet as pq

        from ragcun.errors import DataError
        from ragcun.model import load_model

        directory = Path(directory)
        manifest_path = directory / "manifest.json"
        if not manifest_path.is_file():
            raise DataError("not a ragcun index directory (no manifest.json)", directory)
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != "ragcun-index":
            raise DataError("manifest.json is not a ragcun index manifest", manifest_path)
        index_path = directory / "index.faiss"
        if file_sha256(index_path) != manifest["index_sha256"]:
            raise DataError("index.faiss does not match the checksum in manifest.json", index_path)
        info = manifest["model"]
        if model_path is None and info.get("checkpoint"):
            model_path = str(directory / info["checkpoint"])
        model = load_model(model_path or info.get("model_path"), info.get("base_model"), output_dim=manifest["dim"])
        retriever = cls(model=model, use_gpu=use_gpu, distance=manifest["distance"], index_type=manifest["index_type"])
        retriever.model_path = model_path
        if model.output_dim != manifest["dim"]:
            raise DataError(f"model gives {model.output_dim}-d vectors, the index holds {manifest['dim']}-d", manifest_path)
        retriever.index = maybe_to_gpu(load_index(index_path), retriever.use_gpu)
        table = pq.read_table(directory / "documents.parquet").to_pydict()
        retriever.doc_ids = [str(i) for i in table["id"]]
        retriever.documents = list(table["text"])
        retriever.metadata = [json.loads(m) if m else {} for m in table.get("metadata", [None] * len(retriever.doc_ids))]
        if retriever.index.ntotal != len(retriever.documents):
            raise DataError(f"index holds {retriever.index.ntotal} vectors for {len(retriever.documents)} documents", directory)
        return retriever
