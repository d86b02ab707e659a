"""Corpus encoding with a Ray Data actor pool: the one code path that embeds a corpus, for
``jobs/build_index.py`` (documents read from files) and for ``jobs/prepare_data.py --mine_negatives`` (the
corpus the pairs came from).

Each actor loads the encoder once from its checkpoint payload (plain tensors and dicts; no pickle of the
module) — with ``encoder_backend`` openvino*, also the OpenVINO graph the driver built, as bytes, so every
actor encodes with the same int8 calibration — and embeds ``batch_size`` documents per call;
``num_encoders`` actors share the cluster, one GPU each with ``use_gpu``. Rows come back in input order
(``preserve_order``), so row i of the embeddings is document i.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ragcun.config import EncoderPoolConfig

logger = logging.getLogger(__name__)

# CPUs the encoder pool leaves free by default: Ray Data's file listing takes a whole CPU and the read tasks
# need theirs; an encoder pool that reserves (almost) everything deadlocks the pipeline on 2 CPUs.
PIPELINE_HEADROOM_CPUS = 1.0
# Rows per block when in-memory texts are handed to Ray Data: small enough to stream, large enough that the
# per-block overhead does not show.
TEXT_BLOCK_ROWS = 4096


class EncodeDocuments:
    """``map_batches`` actor: one encoder per actor; adds an ``embedding`` column to the batch."""

    def __init__(self, payload: dict[str, Any], batch_size: int, use_gpu: bool, num_threads: int):
        import torch

        from ragcun.openvino_encoder import encoder_from_payload

        torch.set_num_threads(max(1, num_threads))
        self.model = encoder_from_payload(payload, max(1, num_threads))
        if use_gpu and torch.cuda.is_available():
            self.model.to("cuda")
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        vectors = self.model.encode(texts, "document", batch_size=self.batch_size, show_progress_bar=False)
        return {**batch, "embedding": vectors}


def encoder_resources(pool: EncoderPoolConfig, cluster_cpus: float, read_cpus: float) -> tuple[float, int]:
    """(CPUs reserved per encoder actor, its torch threads). By default the pool reserves what the pipeline's
    headroom leaves, and each encoder runs as many threads as its share of all the cluster's CPUs: reading
    is light once listed, so the encoders may use the headroom's cores."""
    if pool.cpus_per_encoder is not None:
        cpus = pool.cpus_per_encoder
        threads = max(1, round(cpus))
    else:
        cpus = max(0.25, (cluster_cpus - PIPELINE_HEADROOM_CPUS) / pool.num_encoders)
        threads = max(1, round((cluster_cpus - read_cpus) / pool.num_encoders))
    if cpus * pool.num_encoders + read_cpus > cluster_cpus + 1e-9 and not pool.use_gpu:
        raise ValueError(f"{pool.num_encoders} encoders × {cpus:g} CPUs + {read_cpus} for reading do not fit "
                         f"the cluster's {cluster_cpus:g} CPUs; lower --num_encoders or --cpus_per_encoder")
    return cpus, threads


def encode_dataset(dataset: Any, model: Any, pool: EncoderPoolConfig, batch_size: int, read_cpus: float) -> Any:
    """``dataset`` (a Ray Data dataset with a ``text`` column) with an ``embedding`` column added by the
    pool, lazily, in input order. ``model``: a torch model or an OpenVINO encoder
    (:func:`ragcun.openvino_encoder.with_backend`). ``read_cpus``: what each of the dataset's read tasks
    reserves."""
    import ray
    import ray.data

    from ragcun.openvino_encoder import encoder_payload

    cpus, threads = encoder_resources(pool, float(ray.cluster_resources().get("CPU", 1.0)), read_cpus)
    logger.info("encoding with %d %s encoder(s) (%.2f CPU%s each, %d thread(s))", pool.num_encoders,
                getattr(model, "backend", "torch"), cpus, ", 1 GPU" if pool.use_gpu else "", threads)
    dataset.context.execution_options.preserve_order = True
    return dataset.map_batches(
        EncodeDocuments, fn_constructor_args=(encoder_payload(model), batch_size, pool.use_gpu, threads),
        batch_size=batch_size * 4, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=pool.num_encoders),
        num_cpus=cpus, num_gpus=1 if pool.use_gpu else None)


def encode_texts(texts: Sequence[str], model: Any, pool: EncoderPoolConfig, batch_size: int,
                 show_progress_bar: bool = True) -> np.ndarray:
    """Embeddings (N × d float32, row i = ``texts[i]``) of documents held in memory, through the pool.

    Starts a local Ray if none is running (joins ``RAY_ADDRESS`` when set). The driver keeps only the
    embeddings it collects; the texts travel to the actors in blocks of :data:`TEXT_BLOCK_ROWS`."""
    import ray
    import ray.data

    if not ray.is_initialized():
        ray.init(log_to_driver=False)
    if not texts:
        return np.zeros((0, model.output_dim), dtype=np.float32)
    import pyarrow as pa

    # Each block goes to the object store as soon as it is built, so the driver's heap holds one block of
    # text at a time rather than an Arrow copy of the whole corpus.
    blocks = [ray.put(pa.table({"text": list(texts[start:start + TEXT_BLOCK_ROWS])}))
              for start in range(0, len(texts), TEXT_BLOCK_ROWS)]
    dataset = ray.data.from_arrow_refs(blocks)
    dataset = encode_dataset(dataset, model, pool, batch_size, read_cpus=0.0)
    # One bar counting documents here, instead of Ray Data's progress lines every 10 s in a log.
    dataset.context.enable_progress_bars = False
    # Filled in place as batches arrive: the driver never holds the embeddings twice.
    vectors = np.empty((len(texts), model.output_dim), dtype=np.float32)
    filled = 0
    with tqdm(total=len(texts), desc="encode documents (Ray Data)", unit="doc", disable=not show_progress_bar) as bar:
        for batch in dataset.select_columns(["embedding"]).iter_batches(batch_size=TEXT_BLOCK_ROWS,
                                                                         batch_format="numpy"):
            rows = len(batch["embedding"])
            if filled + rows > len(texts):
                raise RuntimeError(f"the encoder pool returned more embeddings than the {len(texts)} texts")
            vectors[filled:filled + rows] = batch["embedding"]
            filled += rows
            bar.update(rows)
    if filled != len(texts):
        raise RuntimeError(f"the encoder pool returned {filled} embeddings for {len(texts)} texts")
    return vectors
