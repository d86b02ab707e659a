"""Index types that rely on the Gaussian assumption instead of calibrating on the data.

``int8`` — fixed-range scalar quantisation. If the embeddings are N(0, I), every coordinate lies in
[−r, r] with r = 4 (all but 6e-5 of them); 256 levels over that range quantise each coordinate with a step of
0.031σ. The range comes from the assumption, not from a calibration pass over the corpus (FAISS's ``SQ8``
learns each dimension's min and max from the data): a FAISS 8-bit scalar quantiser trained on the two
points ±r·1. For ``cosine`` (unit vectors) the range is r/√D. 4 bytes → 1 byte per dimension.

``binary`` / ``binary-hamming`` — one sign bit per dimension (32× smaller than float32), searched by
Hamming distance in a FAISS binary index. For a centred isotropic Gaussian the sign pattern is uniformly
distributed and P(sign differs) = θ/π for two vectors at angle θ, so Hamming distance estimates the angle.
``binary`` then rescores the top ``k × rescore_multiplier`` candidates exactly with the float32 vectors, kept
beside the index in ``vectors.npy`` and memory-mapped on load (read from disk only for the candidates);
``binary-hamming`` ranks by Hamming distance alone, and its "distance" is the number of differing bits.

A sign code only makes sense for a centred cloud: the Gaussian model's embeddings are centred by
training, a baseline's by :class:`ragcun.eval.compare.Variant` (``rotate``).
"""

from __future__ import annotations

import math
from pathlib import Path

import faiss
import numpy as np

DEFAULT_INT8_RANGE = 4.0
DEFAULT_RESCORE_MULTIPLIER = 10
BINARY_TYPES = ("binary", "binary-hamming")
VECTORS_FILE = "vectors.npy"


def check_quantization_options(index_type: str, dim: int, int8_range: float, rescore_multiplier: int) -> None:
    """The errors name the flag: a bad value is refused before any encoding."""
    if index_type in BINARY_TYPES and dim % 8:
        raise ValueError(f"--index_type {index_type}: the dimension must be a multiple of 8 for sign bits, got {dim}")
    if index_type == "int8" and not (int8_range > 0 and math.isfinite(int8_range)):
        raise ValueError(f"--int8_range must be a positive number, got {int8_range}")
    if index_type == "binary" and (int(rescore_multiplier) != rescore_multiplier or rescore_multiplier < 1):
        raise ValueError(f"--rescore_multiplier must be a whole number >= 1, got {rescore_multiplier}")


def fixed_range_int8(dim: int, metric: int, value_range: float) -> faiss.Index:
    """An 8-bit scalar quantiser over [−value_range, value_range] in every dimension, no data needed."""
    index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, metric)
    index.sq.rangestat = faiss.ScalarQuantizer.RS_minmax
    bounds = np.stack([-np.full(dim, value_range), np.full(dim, value_range)]).astype(np.float32)
    index.train(bounds)
    return index


def sign_codes(x: np.ndarray) -> np.ndarray:
    """Bit j of a code is 1 where coordinate j is positive (packed, d/8 bytes)."""
    return np.packbits(np.asarray(x) > 0, axis=1, bitorder="little")


class BinaryIndex:
    """Sign-bit codes in a ``faiss.IndexBinaryFlat``, optionally rescored with the float vectors.

    ``search`` follows FAISS's convention for the ``metric`` (squared L2, or inner product) when rescoring;
    without rescoring it returns Hamming distances (smaller is nearer, for every metric)."""

    def __init__(self, dim: int, metric: int, rescore_multiplier: int | None, vectors: np.ndarray | None = None):
        if dim % 8:
            raise ValueError(f"binary codes need a dimension that is a multiple of 8, got {dim}")
        self.d = dim
        self.metric = metric
        self.rescore_multiplier = rescore_multiplier
        self.codes = faiss.IndexBinaryFlat(dim)
        self.vectors = np.zeros((0, dim), np.float32) if vectors is None else vectors
        self.is_trained = True

    @property
    def ntotal(self) -> int:
        return int(self.codes.ntotal)

    @property
    def code_size(self) -> int:
        return self.d // 8

    def add(self, x: np.ndarray) -> None:
        x = np.ascontiguousarray(x, dtype=np.float32)
        self.codes.add(sign_codes(x))
        if self.rescore_multiplier:
            self.vectors = np.concatenate([np.asarray(self.vectors), x]) if len(self.vectors) else x.copy()

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(k, self.ntotal)
        if not self.rescore_multiplier:
            hamming, ids = self.codes.search(sign_codes(queries), k)
            return hamming.astype(np.float32), ids
        candidates = min(self.ntotal, k * self.rescore_multiplier)
        _, ids = self.codes.search(sign_codes(queries), candidates)
        out_values = np.empty((len(queries), k), np.float32)
        out_ids = np.empty((len(queries), k), np.int64)
        for row, (query, cand) in enumerate(zip(queries, ids)):
            cand = np.sort(cand[cand >= 0])  # ascending row numbers: sequential reads from a memmap
            vectors = np.asarray(self.vectors[cand], dtype=np.float32)
            if self.metric == faiss.METRIC_L2:
                values = ((vectors - query) ** 2).sum(axis=1)
                order = np.argsort(values, kind="stable")[:k]
            else:
                values = vectors @ query
                order = np.argsort(-values, kind="stable")[:k]
            out_values[row, : len(order)], out_ids[row, : len(order)] = values[order], cand[order]
            out_ids[row, len(order):] = -1
        return out_values, out_ids

    # ------------------------------------------------------------------------------------ files
    def save(self, index_path: Path) -> None:
        faiss.write_index_binary(self.codes, str(index_path))
        if self.rescore_multiplier:
            np.save(index_path.with_name(VECTORS_FILE), np.asarray(self.vectors, dtype=np.float32), allow_pickle=False)

    @classmethod
    def load(cls, index_path: Path, metric: int, rescore_multiplier: int | None) -> BinaryIndex:
        codes = faiss.read_index_binary(str(index_path))
        vectors = None
        if rescore_multiplier:
            vectors = np.load(index_path.with_name(VECTORS_FILE), mmap_mode="r", allow_pickle=False)
            if vectors.shape != (codes.ntotal, codes.d):
                raise ValueError(f"{VECTORS_FILE} holds {vectors.shape} for {codes.ntotal} codes of {codes.d} bits")
        index = cls(codes.d, metric, rescore_multiplier, vectors)
        index.codes = codes
        return index
