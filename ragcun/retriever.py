"""GaussianRetriever: the seed's Python API — embed documents into a FAISS index and retrieve by distance.

    retriever = GaussianRetriever(model_path="checkpoints/best_model.pt")
    retriever.add_documents(["Python is a programming language.", "Machine learning is a subset of AI."])
    for doc, distance in retriever.retrieve("What is ML?", top_k=5):
        ...

A saved retriever is a directory (no pickle anywhere): ``index.faiss`` (faiss.write_index),
``documents.parquet`` (id, text, metadata as JSON text), ``model.pt`` (a ragcun checkpoint, loaded with
``weights_only=True``), ``manifest.json`` (model, dimension, distance, counts, index checksum) and, when an
OpenVINO encoder embedded the documents, its graph (``encoder.xml`` / ``encoder.bin``), which then encodes the
queries too.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ragcun.errors import DataError
from ragcun.index import faiss_index
from ragcun.index.bm25 import BM25Index, Fusion, fuse
from ragcun.index.faiss_index import Distance, build_index, check_distance, is_distance, load_index
from ragcun.index.quantization import DEFAULT_INT8_RANGE, DEFAULT_RESCORE_MULTIPLIER
from ragcun.openvino_encoder import load_encoder_backend, save_encoder

logger = logging.getLogger(__name__)
SearchMode = Literal["dense", "bm25", "hybrid"]
SEARCH_MODES = ("dense", "bm25", "hybrid")
HYBRID_DEPTH = 100  # candidates taken from each ranking before fusion


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
        int8_range: float = DEFAULT_INT8_RANGE,
        rescore_multiplier: int = DEFAULT_RESCORE_MULTIPLIER,
        bm25: bool = False,
    ):
        from ragcun.model import load_model

        self.distance = check_distance(distance)
        self.index_type = index_type
        self.int8_range, self.rescore_multiplier = int8_range, rescore_multiplier
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
        self.with_bm25 = bm25
        self.bm25: BM25Index | None = None
        self.doc_ids: list[str] = []
        self.documents: list[str] = []
        self.metadata: list[dict[str, Any]] = []
        self.manifest: dict[str, Any] | None = None

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
            self.index = faiss_index.maybe_to_gpu(build_index(vectors, index_type=self.index_type, distance=self.distance,
                                                  int8_range=self.int8_range,
                                                  rescore_multiplier=self.rescore_multiplier), self.use_gpu)
        else:
            from ragcun.index.faiss_index import prepare_vectors

            self.index.add(prepare_vectors(vectors, self.distance))
        start = len(self.documents)
        self.doc_ids.extend(ids if ids is not None else [str(start + i) for i in range(len(texts))])
        self.documents.extend(texts)
        self.metadata.extend(metadata if metadata is not None else [{} for _ in texts])
        if self.with_bm25:  # bm25s has no incremental add; indexing is seconds for 10k documents
            self.bm25 = BM25Index.build(self.documents)

    def search(self, queries: list[str], top_k: int = 5, mode: SearchMode = "dense", fusion: Fusion = "rrf",
               alpha: float = 0.5) -> list[list[dict[str, Any]]]:
        """For each query, the ``top_k`` hits as dicts: id, text, distance, metadata (see :meth:`hits`).

        ``mode``: ``dense`` (the model and the FAISS index), ``bm25`` (lexical) or ``hybrid`` (both, fused by
        ``fusion`` — ``rrf`` or ``convex`` with weight ``alpha`` on the dense score — over the top
        max(top_k, 100) of each); the last two need a retriever built with ``bm25=True``."""
        for i, q in enumerate(queries):
            if not isinstance(q, str) or not q.strip():
                raise ValueError(f"query {i} is empty or not a string")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if mode not in SEARCH_MODES:
            raise ValueError(f"mode must be one of {', '.join(SEARCH_MODES)}, got {mode!r}")
        if mode != "dense" and self.bm25 is None:
            raise ValueError(f"mode {mode!r} needs a BM25 index: build the retriever with bm25=True "
                             "(jobs/build_index.py --bm25)")
        if self.index is None or not self.documents:
            return [[] for _ in queries]
        if mode == "bm25":
            scores, ids = self.bm25.search(queries, top_k)
            return self.hits(None, ids, scores)
        vectors = self.model.encode(queries, "query", batch_size=self.batch_size, show_progress_bar=False)
        if mode == "dense":
            return self.search_vectors(vectors, top_k)
        depth = max(top_k, HYBRID_DEPTH)
        values, dense_ids = faiss_index.search(self.index, vectors, depth, self.distance)
        dense_scores = -values if is_distance(self.index, self.distance) else values
        bm25_scores, bm25_ids = self.bm25.search(queries, depth)
        scores, ids = fuse(dense_ids, dense_scores, bm25_ids, bm25_scores, top_k, fusion, alpha)
        return self.hits(None, ids, scores)

    def search_vectors(self, vectors: np.ndarray, top_k: int) -> list[list[dict[str, Any]]]:
        """Hits for precomputed query vectors (from this retriever's model), as :meth:`search` returns them."""
        if self.index is None or not self.documents:
            return [[] for _ in range(len(vectors))]
        values, ids = faiss_index.search(self.index, vectors, top_k, self.distance)
        return self.hits(values, ids)

    def hits(self, values: np.ndarray | None, ids: np.ndarray, scores: np.ndarray | None = None
             ) -> list[list[dict[str, Any]]]:
        """Hit dicts: ``distance`` as the dense index gives it (None in bm25/hybrid modes), and ``score``
        (BM25's or the fused one; higher is better) in those modes."""
        results = []
        for row, row_ids in enumerate(ids):
            hits = []
            for col, idx in enumerate(row_ids):
                if idx < 0:
                    continue
                hit = {"id": self.doc_ids[idx], "text": self.documents[idx],
                       "distance": None if values is None else float(values[row, col]),
                       "metadata": self.metadata[idx]}
                if scores is not None:
                    hit["score"] = float(scores[row, col])
                hits.append(hit)
            results.append(hits)
        return results

    def retrieve(self, query: str, top_k: int = 5) -> list[tuple[str, float]]:
        """(document, distance) pairs, nearest first. For ``l2`` this is the true Euclidean distance."""
        return [(hit["text"], hit["distance"]) for hit in self.search([query], top_k)[0]]

    # ------------------------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike, include_model: bool = True) -> Path:
        """Write the index directory (see :mod:`ragcun.index.directory`); never half-written."""
        from ragcun.index.directory import IndexDirectoryWriter, build_manifest

        if self.index is None:
            raise ValueError("nothing to save: add documents first")
        if not include_model and not self.model_path:
            # An untrained model's head is random: without the weights the index could not be queried again.
            raise ValueError("include_model=False needs a retriever built from a model_path checkpoint")
        with IndexDirectoryWriter(directory) as writer:
            writer.add_documents(self.doc_ids, self.documents,
                                 [json.dumps(m, ensure_ascii=False) for m in self.metadata])
            if include_model:
                self.model.save_checkpoint(writer.model_file)
            encoder_entries = save_encoder(self.model, writer.tmp)
            if self.bm25 is not None:
                self.bm25.save(writer.tmp)
            manifest = build_manifest(self.model, distance=self.distance, index_type=self.index_type,
                                      num_vectors=len(self.doc_ids), int8_range=self.int8_range,
                                      rescore_multiplier=self.rescore_multiplier, bm25=self.bm25 is not None,
                                      model_path=self.model_path, include_model=include_model, **encoder_entries)
            return writer.commit(self.index, manifest)

    @classmethod
    def load(cls, directory: str | os.PathLike, use_gpu: bool = False, model_path: str | None = None) -> GaussianRetriever:
        """Load an index directory written by :meth:`save` or ``jobs/build_index.py``."""
        from ragcun.index.directory import read_documents_table, read_manifest
        from ragcun.model import load_model

        directory = Path(directory)
        manifest = read_manifest(directory)
        info = manifest["model"]
        if model_path is None and info.get("checkpoint"):
            model_path = str(directory / info["checkpoint"])
        model = load_model(model_path or info.get("model_path"), info.get("base_model"), output_dim=manifest["dim"])
        if model.output_dim != manifest["dim"]:
            raise DataError(f"model gives {model.output_dim}-d vectors, the index holds {manifest['dim']}-d",
                            directory / "manifest.json")
        if manifest.get("encoder_backend", "torch") != "torch":
            if use_gpu:
                raise DataError(f"the index's documents were encoded by {manifest['encoder_backend']}, which runs "
                                "on the CPU: load it without use_gpu, or rebuild it with --encoder_backend torch",
                                directory / "manifest.json")
            model = load_encoder_backend(model, directory, manifest)  # queries encoded as the documents were
        retriever = cls(model=model, use_gpu=use_gpu, distance=manifest["distance"], index_type=manifest["index_type"],
                        int8_range=manifest.get("int8_range", DEFAULT_INT8_RANGE),
                        rescore_multiplier=manifest.get("rescore_multiplier", DEFAULT_RESCORE_MULTIPLIER))
        retriever.model_path = model_path
        retriever.manifest = manifest
        index = load_index(directory / "index.faiss", manifest["index_type"], manifest["distance"],
                           retriever.rescore_multiplier)
        retriever.index = faiss_index.maybe_to_gpu(index, retriever.use_gpu)
        retriever.doc_ids, retriever.documents, retriever.metadata = read_documents_table(directory)
        if manifest.get("bm25"):
            retriever.with_bm25, retriever.bm25 = True, BM25Index.load(directory)
        if retriever.index.ntotal != len(retriever.documents):
            raise DataError(f"index holds {retriever.index.ntotal} vectors for {len(retriever.documents)} documents",
                            directory)
        return retriever
