"""Train/val/test splits by query: every triplet of one query lands in the same split (no leakage)."""

from __future__ import annotations

import math
import random
from typing import Any

from ragcun.errors import DataError


def check_ratios(ratios: tuple[float, ...] | list[float]) -> tuple[float, float, float]:
    if len(ratios) != 3:
        raise DataError(f"--split takes three ratios (train val test), got {len(ratios)}")
    if any(r < 0 for r in ratios):
        raise DataError(f"--split ratios must be >= 0, got {list(ratios)}")
    if not math.isclose(sum(ratios), 1.0, abs_tol=1e-6):
        raise DataError(f"--split ratios must sum to 1, got {list(ratios)} (sum {sum(ratios):g})")
    return float(ratios[0]), float(ratios[1]), float(ratios[2])


def split_by_query(
    records: list[dict[str, Any]], ratios: tuple[float, float, float], seed: int = 42, shuffle: bool = True
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    train_r, val_r, _ = check_ratios(ratios)
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(record.get("query_id") or record["query"], []).append(record)
    keys = list(groups)
    if shuffle:
        random.Random(seed).shuffle(keys)
    n = len(keys)
    n_train = int(round(n * train_r))
    n_val = min(n - n_train, int(round(n * val_r)))
    parts = (keys[:n_train], keys[n_train : n_train + n_val], keys[n_train + n_val :])
    return tuple([r for k in part for r in groups[k]] for part in parts)  # type: ignore[return-value]
