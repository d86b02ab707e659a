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

import faiss
import numpy as np

from ragcun.config import Distance
from ragcun.fs import atomic_file
from ragcun.index.quantization import (
    BINARY_TYPES,
    DEFAULT_INT8_RANGE,
    DEFAULT_RESCORE_MULTIPLIER,
    BinaryIndex,
    check_quantization_options,
    fixed_range_int8,
)

logger = logging.getLogger(__name__)

INDEX_TYPES = {
    "flat": "Flat",
    "hnsw": "HNSW32",
    "sq8": "SQ8",
    # IVF-PQ: 16x compression of float32 at d=512 (512*4 bytes -> 128 codes of 8 bits); nlist is set from N.
    "ivfpq": None,
    "ivfpq32": None,  # the same at d/8 bytes: 32x
    # ivfpq32 after OPQ, a rotation learned to balance the PQ subspaces: the free baseline a Gaussian
    # embedding's PQ codes must beat (an isotropic cloud needs no such rotation).
    "opq-ivfpq32": None,
    # ragcun.index.quantization: the range or the code comes from the Gaussian assumption, not from the data.
    "int8": "SQ8 over the fixed range [-r, r]",
    "binary": "sign bits (BinaryFlat), top k x M rescored with float32",
    "binary-hamming": "sign bits (BinaryFlat), Hamming ranking",
}
NOT_FACTORY_TYPES = ("int8", *BINARY_TYPES)


DEFAULT_NPROBE = 16


def check_distance(distance: str) -> Distance:
    if distance not in ("l2", "ip", "cosine"):
        raise ValueError(f"distance must be l2, ip or cosine, got {distance!r}")
    return distance  # type: ignore[return-value]


def faiss_metric(distance: Distance) -> int:
    return faiss.METRIC_L2 if distance == "l2" else faiss.METRIC_INNER_PRODUCT


def factory_string(index_type: str, dim: int, num_vectors: int) -> str:
    """Map ``flat|hnsw|ivfpq|ivfpq32|opq-ivfpq32|sq8`` to a FAISS factory string; anything else is taken as a
    factory string."""
    key = index_type.lower()
    if key not in INDEX_TYPES:
        return index_type
    if key in ("ivfpq", "ivfpq32", "opq-ivfpq32"):
        nlist = max(1, min(4096, int(4 * np.sqrt(max(num_vectors, 1)))))
        first = dim // 4 if key == "ivfpq" else dim // 8
        m = next(m for m in (first, dim // 8, dim // 16, dim // 2, dim, 1) if m >= 1 and dim % m == 0)
        return f"{f'OPQ{m},' if key.startswith('opq') else ''}IVF{nlist},PQ{m}x8"
    return INDEX_TYPES[key]


def prepare_vectors(vectors: np.ndarray, distance: Distance) -> np.ndarray:
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D array of vectors, got shape {x.shape}")
    if distance == "cosine":
        x = x.copy()
        faiss.normalize_L2(x)
    return x


def min_training_vectors(index) -> int:
    """The fewest training vectors FAISS accepts for ``index``: k-means needs at least as many points as
    clusters (an IVF's nlist, a PQ's 2^nbits codewords, OPQ's 256); 0 for an index that needs no training."""
    if not isinstance(index, faiss.Index):
        return 0
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


def new_index(index_type: str, dim: int, distance: Distance, num_vectors: int,
              int8_range: float = DEFAULT_INT8_RANGE, rescore_multiplier: int = DEFAULT_RESCORE_MULTIPLIER):
    """An empty index of ``index_type`` (see :data:`INDEX_TYPES`; anything else is a FAISS factory string)."""
    key = index_type.lower()
    check_quantization_options(key, dim, int8_range, rescore_multiplier)
    if key == "int8":
        # Unit vectors (cosine) have coordinates of size 1/√D where N(0, I)'s are of size 1.
        value_range = int8_range / np.sqrt(dim) if distance == "cosine" else int8_range
        return fixed_range_int8(dim, faiss_metric(distance), float(value_range))
    if key in BINARY_TYPES:
        return BinaryIndex(dim, faiss_metric(distance), rescore_multiplier if key == "binary" else None)
    return faiss.index_factory(dim, factory_string(index_type, dim, num_vectors), faiss_metric(distance))


def build_index(
    vectors: np.ndarray | None,
    dim: int | None = None,
    index_type: str = "flat",
    distance: Distance = "l2",
    train_vectors: np.ndarray | None = None,
    int8_range: float = DEFAULT_INT8_RANGE,
    rescore_multiplier: int = DEFAULT_RESCORE_MULTIPLIER,
):
    """An index over ``vectors`` (may be None for an empty trainable-free index such as Flat)."""
    distance = check_distance(distance)
    x = prepare_vectors(vectors, distance) if vectors is not None else None
    dim = dim or (x.shape[1] if x is not None else None)
    if dim is None:
        raise ValueError("give vectors or dim")
    index = new_index(index_type, dim, distance, 0 if x is None else x.shape[0], int8_range, rescore_multiplier)
    if not index.is_trained:
        sample = prepare_vectors(train_vectors, distance) if train_vectors is not None else x
        if sample is None or sample.shape[0] == 0:
            raise ValueError(f"index type {index_type!r} needs training vectors")
        check_trainable(index, sample.shape[0], index_type)
        index.train(sample)
    if x is not None and x.shape[0]:
        index.add(x)
    ivf = faiss.try_extract_index_ivf(index) if isinstance(index, faiss.Index) else None
    if ivf is not None:
        # FAISS's default nprobe of 1 loses much recall; 16 lists is a common starting point (persisted).
        ivf.nprobe = min(ivf.nlist, DEFAULT_NPROBE)
    return index


def search(index: faiss.Index, queries: np.ndarray, top_k: int, distance: Distance) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of the ``top_k`` nearest; for l2 the scores are true (not squared) distances."""
    q = prepare_vectors(queries, distance)
    k = max(1, min(int(top_k), index.ntotal))
    scores, ids = index.search(q, k)
    if isinstance(index, BinaryIndex) and not index.rescore_multiplier:
        return scores, ids  # Hamming distances, smaller is nearer whatever the metric
    if distance == "l2":
        scores = np.sqrt(np.maximum(scores, 0.0))
    return scores, ids


def is_distance(index, distance: Distance) -> bool:
    """Whether ``search`` returns distances (lower is better) rather than similarities for this index."""
    return distance == "l2" or (isinstance(index, BinaryIndex) and not index.rescore_multiplier)


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


def gpu_supports(index) -> bool:
    if not isinstance(index, faiss.Index):
        return False  # ragcun's binary index stays on the CPU
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
                       "(the encoder still runs on the GPU)", _type_name(index))
        return index
    logger.info("FAISS index %s cloned to GPU 0", _type_name(index))
    resources = faiss.StandardGpuResources()
    return faiss.index_cpu_to_gpu(resources, 0, index)


def _type_name(index) -> str:
    return type(faiss.downcast_index(index) if isinstance(index, faiss.Index) else index).__name__


def to_cpu(index: faiss.Index) -> faiss.Index:
    return faiss.index_gpu_to_cpu(index) if hasattr(faiss, "index_gpu_to_cpu") and "Gpu" in type(index).__name__ else index


def save_index(index: faiss.Index, path: str | os.PathLike) -> Path:
    """faiss.write_index to a temporary sibling, then rename (no pickle, no half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(index, BinaryIndex):
        index.save(path)  # only ever into an index directory's staging folder
        return path
    with atomic_file(path) as tmp:
        faiss.write_index(to_cpu(index), str(tmp))
    return path


def load_index(path: str | os.PathLike, index_type: str = "flat", distance: Distance = "l2",
               rescore_multiplier: int | None = None):
    """Read an index written by :func:`save_index`; a binary index needs its type, metric and multiplier."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such index file")
    if index_type in BINARY_TYPES:
        return BinaryIndex.load(path, faiss_metric(distance), rescore_multiplier if index_type == "binary" else None)
    return faiss.read_index(str(path))
