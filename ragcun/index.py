"""FAISS indexes: build (Flat, HNSW, IVF-PQ, SQ8 or any factory string), search, save, load, GPU clone.

Distances: ``l2`` ranks by Euclidean distance (the Gaussian model's native metric; FAISS returns squared
distances, :func:`search` returns the true distance), ``ip`` by inner product, ``cosine`` by inner product
of L2-normalised vectors. Scores returned by :func:`search` are "higher is better" for ip/cosine and
distances ("lower is better") for l2; :func:`to_scores` turns either into higher-is-better scores.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

import faiss
import numpy as np

logger = logging.getLogger(__name__)

Distance = Literal["l2", "ip", "cosine"]
INDEX_TYPES = {
    "flat": "Flat",
    "hnsw": "HNSW32",
    "sq8": "SQ8",
    # IVF-PQ: 16x compression of float32 at d=512 (512*4 bytes -> 128 codes of 8 bits); nlist is set from N.
    "ivfpq": None,
}


DEFAULT_NPROBE = 16


def check_distance(distance: str) -> Distance:
    if distance not in ("l2", "ip", "cosine"):
        raise ValueError(f"distance must be l2, ip or cosine, got {distance!r}")
    return distance  # type: ignore[return-value]


def faiss_metric(distance: Distance) -> int:
    return faiss.METRIC_L2 if distance == "l2" else faiss.METRIC_INNER_PRODUCT


def factory_string(index_type: str, dim: int, num_vectors: int) -> str:
    """Map ``flat|hnsw|ivfpq|sq8`` to a FAISS factory string; anything else is taken as a factory string."""
    key = index_type.lower()
    if key not in INDEX_TYPES:
        return index_type
    if key == "ivfpq":
        nlist = max(1, min(4096, int(4 * np.sqrt(max(num_vectors, 1)))))
        m = next(m for m in (dim // 4, dim // 8, dim // 16, dim // 2, dim, 1) if m >= 1 and dim % m == 0)
        return f"IVF{nlist},PQ{m}x8"
    return INDEX_TYPES[key]


def prepare_vectors(vectors: np.ndarray, distance: Distance) -> np.ndarray:
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D array of vectors, got shape {x.shape}")
    if distance == "cosine":
        x = x.copy()
        faiss.normalize_L2(x)
    return x


def min_training_vectors(index: faiss.Index) -> int:
    """The fewest training vectors FAISS accepts for ``index``: k-means needs at least as many points as
    clusters (an IVF's nlist, a PQ's 2^nbits codewords, OPQ's 256); 0 for an index that needs no training."""
    index = faiss.downcast_index(index)
    need = 0 if index.is_trained else 1
    if isinstance(index, faiss.IndexPreTransform):
        for i in range(index.chain.size()):
            if isinstance(faiss.downcast_VectorTransform(index.chain.at(i)), faiss.OPQMatrix):
                need = max(need, 256)  # OPQ trains an 8-bit PQ inside
        return max(need, min_training_vectors(index.index))
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        need = max(need, ivf.nlist)
    pq = getattr(index, "pq", None)
    if pq is not None:
        need = max(need, int(pq.ksub))
    return need


def check_trainable(index: faiss.Index, num_vectors: int, index_type: str) -> None:
    need = min_training_vectors(index)
    if num_vectors < need:
        raise ValueError(f"index type {index_type!r} needs at least {need} training vectors, got {num_vectors} "
                         "(for a corpus this small use flat, hnsw or sq8)")


def build_index(
    vectors: np.ndarray | None,
    dim: int | None = None,
    index_type: str = "flat",
    distance: Distance = "l2",
    train_vectors: np.ndarray | None = None,
) -> faiss.Index:
    """An index over ``vectors`` (may be None for an empty trainable-free index such as Flat)."""
    distance = check_distance(distance)
    x = prepare_vectors(vectors, distance) if vectors is not None else None
    dim = dim or (x.shape[1] if x is not None else None)
    if dim is None:
        raise ValueError("give vectors or dim")
    index = faiss.index_factory(dim, factory_string(index_type, dim, 0 if x is None else x.shape[0]), faiss_metric(distance))
    if not index.is_trained:
        sample = prepare_vectors(train_vectors, distance) if train_vectors is not None else x
        if sample is None or sample.shape[0] == 0:
            raise ValueError(f"index type {index_type!r} needs training vectors")
        check_trainable(index, sample.shape[0], index_type)
        index.train(sample)
    if x is not None and x.shape[0]:
        index.add(x)
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        # FAISS's default nprobe of 1 loses much recall; 16 lists is a common starting point (persisted).
        ivf.nprobe = min(ivf.nlist, DEFAULT_NPROBE)
    return index


def search(index: faiss.Index, queries: np.ndarray, top_k: int, distance: Distance) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of the ``top_k`` nearest; for l2 the scores are true (not squared) distances."""
    q = prepare_vectors(queries, distance)
    k = max(1, min(int(top_k), index.ntotal))
    scores, ids = index.search(q, k)
    if distance == "l2":
        scores = np.sqrt(np.maximum(scores, 0.0))
    return scores, ids


def to_scores(values: np.ndarray, distance: Distance) -> np.ndarray:
    """Higher-is-better scores for ranking metrics."""
    return -values if distance == "l2" else values


def exact_search(
    doc_vectors: np.ndarray, query_vectors: np.ndarray, top_k: int, distance: Distance = "l2"
) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force search (a Flat index built on the fly)."""
    return search(build_index(doc_vectors, index_type="flat", distance=distance), query_vectors, top_k, distance)


def gpu_available() -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


# What faiss.index_cpu_to_gpu can clone; HNSW, flat SQ8 and flat PQ raise "not implemented on GPU".
GPU_INDEX_CLASSES = ("IndexFlat", "IndexFlatL2", "IndexFlatIP", "IndexIVFFlat", "IndexIVFScalarQuantizer",
                     "IndexIVFPQ")


def gpu_supports(index: faiss.Index) -> bool:
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexPreTransform):
        return gpu_supports(index.index)
    return type(index).__name__ in GPU_INDEX_CLASSES


def maybe_to_gpu(index: faiss.Index, use_gpu: bool) -> faiss.Index:
    """Clone to GPU 0 when asked and possible (faiss-gpu, a GPU, and an index type FAISS has on the GPU);
    otherwise log why and search on the CPU."""
    if not use_gpu:
        return index
    if not gpu_available():
        logger.warning("use_gpu=True but faiss has no GPU here (faiss-cpu or no device): searching on the CPU")
        return index
    if not gpu_supports(index):
        logger.warning("use_gpu=True but FAISS has no GPU version of %s: this index stays on the CPU "
                       "(the encoder still runs on the GPU)", type(faiss.downcast_index(index)).__name__)
        return index
    logger.info("FAISS index %s cloned to GPU 0", type(faiss.downcast_index(index)).__name__)
    resources = faiss.StandardGpuResources()
    return faiss.index_cpu_to_gpu(resources, 0, index)


def to_cpu(index: faiss.Index) -> faiss.Index:
    return faiss.index_gpu_to_cpu(index) if hasattr(faiss, "index_gpu_to_cpu") and "Gpu" in type(index).__name__ else index


def save_index(index: faiss.Index, path: str | os.PathLike) -> Path:
    """faiss.write_index to a temporary sibling, then rename (no pickle, no half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        faiss.write_index(to_cpu(index), str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_index(path: str | os.PathLike) -> faiss.Index:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such index file")
    return faiss.read_index(str(path))
