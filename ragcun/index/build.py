"""Building an index directory over a corpus with Ray Data batch inference (``jobs/build_index.py``).

:func:`build_index_directory` validates the corpus once in the driver (:mod:`ragcun.data.corpus`), reads it
with Ray Data (streamed, never whole in the driver), encodes it with an actor pool of encoders
(``map_batches`` with ``concurrency``; one GPU per actor with ``use_gpu``), writes the documents to Parquet
batch by batch as the embeddings come back, builds the FAISS index (:mod:`ragcun.index.faiss_index`) and
commits the directory (:mod:`ragcun.index.directory`).
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
from ragcun.index.directory import IndexDirectoryWriter, build_manifest, check_index_output, read_manifest
from ragcun.index.quantization import DEFAULT_INT8_RANGE, DEFAULT_RESCORE_MULTIPLIER

logger = logging.getLogger(__name__)

# CPUs the encoder pool leaves free by default: Ray Data's file listing takes a whole CPU and the read tasks
# need theirs; an encoder pool that reserves (almost) everything deadlocks the pipeline on 2 CPUs.
PIPELINE_HEADROOM_CPUS = 1.0


class EncodeDocuments:
    """``map_batches`` actor: one encoder per actor, loaded once from the checkpoint payload."""

    def __init__(self, payload: dict[str, Any], batch_size: int, use_gpu: bool, num_threads: int):
        import torch

        from ragcun.model import GaussianEmbeddingModel

        torch.set_num_threads(max(1, num_threads))
        self.model = GaussianEmbeddingModel.from_payload(payload)
        if use_gpu and torch.cuda.is_available():
            self.model.to("cuda")
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        vectors = self.model.encode(texts, "document", batch_size=self.batch_size, show_progress_bar=False)
        return {"id": batch["id"], "text": batch["text"], "metadata": batch["metadata"], "embedding": vectors}


def encoder_resources(config: IndexBuildConfig, cluster_cpus: float) -> tuple[float, int]:
    """(CPUs reserved per encoder actor, its torch threads). By default the pool reserves what the pipeline's
    headroom leaves, and each encoder runs as many threads as its share of all the cluster's CPUs: reading
    is light once listed, so the encoders may use the headroom's cores."""
    if config.cpus_per_encoder is not None:
        cpus = config.cpus_per_encoder
        threads = max(1, round(cpus))
    else:
        cpus = max(0.25, (cluster_cpus - PIPELINE_HEADROOM_CPUS) / config.num_encoders)
        threads = max(1, round((cluster_cpus - READ_CPUS) / config.num_encoders))
    if cpus * config.num_encoders + READ_CPUS > cluster_cpus + 1e-9 and not config.use_gpu:
        raise ValueError(f"{config.num_encoders} encoders × {cpus:g} CPUs + {READ_CPUS} for reading do not fit "
                         f"the cluster's {cluster_cpus:g} CPUs; lower --num_encoders or --cpus_per_encoder")
    return cpus, threads


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
    import ray
    import ray.data

    from ragcun.index.faiss_index import build_index, check_distance

    distance = check_distance(config.distance)
    check_index_output(config.output_dir)
    files = corpus_files(config.corpus)
    started = time.perf_counter()
    digest = TextDigest() if config.cache_dir else None
    num_documents = validate_corpus(files, digest.add if digest else None, config.strict)
    from ragcun.model import load_encoder

    model = load_encoder(config.model_path, config.base_model, config.pooling, max_doc_length=config.max_doc_length)
    check_index_type(config.index_type, model.output_dim, distance, num_documents, config.int8_range,
                     config.rescore_multiplier)
    cache = EmbeddingCache(config.cache_dir) if config.cache_dir else None
    cache_entry = cache_key(model, digest, "document") if cache is not None else ""
    cached = cache.load(cache_entry, num_documents) if cache is not None else None
    corpus = read_corpus_dataset(files)
    if cached is None:
        cpus, threads = encoder_resources(config, float(ray.cluster_resources().get("CPU", 1.0)))
        logger.info("encoding %d documents from %s with %d encoder(s) (%.2f CPU%s each)", num_documents,
                    config.corpus, config.num_encoders, cpus, ", 1 GPU" if config.use_gpu else "")
        corpus = corpus.map_batches(
            EncodeDocuments, fn_constructor_args=(model.checkpoint_payload(), config.batch_size, config.use_gpu, threads),
            batch_size=config.batch_size * 4, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=config.num_encoders),
            num_cpus=cpus, num_gpus=1 if config.use_gpu else None)
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
        if config.bm25:
            from ragcun.index.bm25 import BM25Index

            BM25Index.build(texts).save(writer.tmp)
        manifest = build_manifest(
            model, distance=distance, index_type=config.index_type, num_vectors=len(vectors),
            int8_range=config.int8_range, rescore_multiplier=config.rescore_multiplier, bm25=config.bm25,
            model_path=config.model_path, corpus=str(Path(config.corpus).resolve()),
            build={"encode_seconds": round(encode_seconds, 2), "index_seconds": round(index_seconds, 2),
                   "total_seconds": round(time.perf_counter() - started, 2), "num_encoders": config.num_encoders,
                   "use_gpu": config.use_gpu, "embeddings_from_cache": cached is not None,
                   "date": time.strftime("%Y-%m-%dT%H:%M:%S")})
        writer.commit(index, manifest)
    return read_manifest(config.output_dir)
