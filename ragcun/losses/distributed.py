"""What the losses need from torch.distributed: whether a process group spans several ranks, and
collectives that keep the autograd graph (so each rank's gradient includes what the other ranks' rows
contributed through the batch-wide terms: in-batch negatives, SIGReg's characteristic function)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist


@contextmanager
def _quiet_deprecation() -> Iterator[None]:
    # torch.distributed.nn.functional is deprecated for a private API; it is still the one whose collectives
    # carry gradients, so keep it and keep every worker's log readable.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.distributed\.nn\.functional", category=FutureWarning)
        yield


def is_distributed() -> bool:
    """A process group with more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_gather_with_grad(tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All ranks' rows concatenated (this rank's keep their gradient) and this rank's row offset."""
    if not is_distributed():
        return tensor, 0
    from torch.distributed.nn.functional import all_gather

    with _quiet_deprecation():
        parts = all_gather(tensor.contiguous())
    offset = sum(p.shape[0] for p in parts[: dist.get_rank()])
    return torch.cat(parts, dim=0), offset


def all_gather_ids(ids: torch.Tensor | None) -> torch.Tensor | None:
    """All ranks' id tensors concatenated (no gradient: ids are labels)."""
    if ids is None or not is_distributed():
        return ids
    parts = [torch.empty_like(ids) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, ids.contiguous())
    return torch.cat(parts)


def all_reduce_sum_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """The sum over ranks; the result carries the autograd graph (an in-place dist.all_reduce would not)."""
    if not is_distributed():
        return tensor
    from torch.distributed.nn.functional import all_reduce

    with _quiet_deprecation():
        return all_reduce(tensor, op=dist.ReduceOp.SUM)
