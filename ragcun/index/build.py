"""Building an index directory over a corpus with Ray Data batch inference (``jobs/build_index.py``).

:func:`build_index_directory` validates the corpus once in the driver (:mod:`ragcun.data.corpus`), reads it
with Ray Data (streamed, never whole in the driver), encodes it with the Ray Data encoder pool
(:mod:`ragcun.encoder_pool`), writes the documents to Parquet batch by batch as the embeddings come back,
builds the FAISS index (:mod:`ragcun.index.faiss_index`) and commits the directory (:mod:`ragcun.index.directory`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from ragcun.config import IndexBuildConfig
from ragcun.data.corpus import READ_CPUS, corpus_files, read_corpus_dataset, validate_corpus
from ragcun.embedding_cache import EmbeddingCache, TextDigest, cache_key
from ragcun.encoder_pool import encode_dataset
from ragcun.index.directory import IndexDirectoryWriter, build_manifest, check_index_output, read_manifest
from ragcun.index.quantization import DEFAULT_INT8_RANGE, DEFAULT_RESCORE_MULTIPLIER
from ragcun.openvino_encoder import CalibrationSample, check_backend, save_encoder, with_backend

logger = logging.getLogger(__name__)


def check_index_type(index_type: str, dim: int, distance: str, num_vectors: int | None = None,
                     int8_range: float = DEFAULT_INT8_RANGE, rescore_multiplier: int = DEFAULT_RESCORE_MULTIPLIER) -> None:
    """Fail before encoding when FAISS cannot build ``index_type`` at this dimension, or cannot train it on
    ``num_vectors`` vectors (IVF-PQ on a small corpus)."""
    import faiss

    from ragcun.index.faiss_index import NOT_FACTORY_TYPES, check_trainable, factory_string, faiss_metric
    from ragcun.index.quantization import check_quantization_options

    if index_type.lower() in NOT_FACTORY_TYPES:
        check_quantization_options(index_type.lower(), dim, int8_range, rescore_multiplier)
        return
    spec = factory_string(index_type, dim, num_vectors or 1_000_000)
    try:
        index = faiss.index_factory(dim, spec, faiss_metric(distance))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"--index_type {index_type!r}: FAISS cannot build {spec!r} for {dim}-d vectors ({first})") from exc
    if num_vectors is not None:
        try:
            check_trainable(index, num_vectors, index_type)
        except ValueError as exc:
            raise ValueError(f"--index_type {index_type!r} ({spec}): {exc}") from exc


def build_index_directory(config: IndexBuildConfig) -> dict[str, Any]:
    """Encode the corpus with Ray Data and write the index directory; returns the manifest.

    Ray must be initialised (``ray.init()``); the driver holds only the embeddings (N × d float32) for the
    FAISS build, the documents go straight to Parquet."""
    from ragcun.index.faiss_index import build_index, check_distance

    distance = check_distance(config.distance)
    check_index_output(config.output_dir)
    files = corpus_files(config.corpus)
    started = time.perf_counter()
    digest = TextDigest() if config.cache_dir else None
    backend = check_backend(config.encoders.encoder_backend, config.encoders.use_gpu)
    calibration = CalibrationSample() if backend == "openvino-int8" else None
    watchers = [w for w in (digest, calibration) if w is not None]

    def see(text: str) -> None:  # the one pass over the corpus feeds the cache key and the int8 calibration
        for watcher in watchers:
            watcher.add(text)

    num_documents = validate_corpus(files, see if watchers else None, config.strict)
    from ragcun.model import load_encoder

    model = load_encoder(config.model_path, config.base_model, config.pooling, max_doc_length=config.max_doc_length)
    model = with_backend(model, backend, calibration.texts if calibration else ())
    check_index_type(config.index_type, model.output_dim, distance, num_documents, config.int8_range,
                     config.rescore_multiplier)
    cache = EmbeddingCache(config.cache_dir) if config.cache_dir else None
    cache_entry = cache_key(model, digest, "document") if cache is not None else ""
    cached = cache.load(cache_entry, num_documents) if cache is not None else None
    corpus = read_corpus_dataset(files)
    if cached is None:
        logger.info("encoding %d documents from %s", num_documents, config.corpus)
        corpus = encode_dataset(corpus, model, config.encoders, config.batch_size, READ_CPUS)
    else:
        logger.info("%d document embeddings from the cache (%s); not re-encoding", num_documents, config.cache_dir)
    # Row i of the index is document i of the corpus: deterministic, and what GaussianRetriever does.
    corpus.context.execution_options.preserve_order = True
    corpus.context.enable_operator_progress_bars = False  # one bar for the build, not one per operator
    chunks: list[np.ndarray] = []
    texts: list[str] = []  # for BM25 only
    with IndexDirectoryWriter(config.output_dir) as writer:
        encode_started = time.perf_counter()
        for batch in corpus.iter_batches(batch_size=4096, batch_format="numpy"):
            batch_texts = [str(t) for t in batch["text"]]
            writer.add_documents([str(i) for i in batch["id"]], batch_texts, [str(m) for m in batch["metadata"]])
            if config.bm25:
                texts.extend(batch_texts)
            if cached is None:
                chunks.append(np.asarray(batch["embedding"], dtype=np.float32))
        encode_seconds = time.perf_counter() - encode_started
        if cached is not None:
            vectors = cached
        else:
            vectors = np.concatenate(chunks) if chunks else np.zeros((0, model.output_dim), np.float32)
        if len(vectors) != num_documents:
            raise RuntimeError(f"encoded {len(vectors)} documents, the corpus has {num_documents}")
        if cache is not None and cached is None:
            cache.save(cache_entry, vectors)
        index_started = time.perf_counter()
        index = build_index(vectors, index_type=config.index_type, distance=distance, int8_range=config.int8_range,
                            rescore_multiplier=config.rescore_multiplier)
        index_seconds = time.perf_counter() - index_started
        model.save_checkpoint(writer.model_file)
        encoder_entries = save_encoder(model, writer.tmp)
        if config.bm25:
            from ragcun.index.bm25 import BM25Index

            BM25Index.build(texts).save(writer.tmp)
        manifest = build_manifest(
            model, distance=distance, index_type=config.index_type, num_vectors=len(vectors),
            int8_range=config.int8_range, rescore_multiplier=config.rescore_multiplier, bm25=config.bm25,
            model_path=config.model_path, corpus=str(Path(config.corpus).resolve()),
            build={"encode_seconds": round(encode_seconds, 2), "index_seconds": round(index_seconds, 2),
                   "total_seconds": round(time.perf_counter() - started, 2), "num_encoders": config.encoders.num_encoders,
                   "use_gpu": config.encoders.use_gpu, "embeddings_from_cache": cached is not None,
                   "date": time.strftime("%Y-%m-%dT%H:%M:%S")}, **encoder_entries)
        writer.commit(index, manifest)
    return read_manifest(config.output_dir)
