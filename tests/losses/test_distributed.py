"""Two gloo processes vs one process on the concatenated batch: same SIGReg value, same gradient after
DDP-style averaging, and the same for in-batch InfoNCE over the gathered global batch."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ragcun.losses import InfoNCELoss, SIGRegLoss

WORLD = 2
ROWS_PER_RANK = 24
DIM_IN, DIM = 10, 12


def _data():
    g = torch.Generator().manual_seed(123)
    weight = torch.randn(DIM_IN, DIM, generator=g) * 0.5
    x = torch.randn(WORLD * ROWS_PER_RANK, DIM_IN, generator=g)
    xp = x + 0.3 * torch.randn(x.shape, generator=g)
    xn = torch.randn(x.shape, generator=g)
    return weight, x, xp, xn


def _losses(weight, x, xp, xn, step):
    sig = SIGRegLoss(num_slices=32)(x @ weight, step=step)
    nce = InfoNCELoss(temperature=2.0, margin=0.1)(x @ weight, xp @ weight, xn @ weight)["loss"]
    return sig, nce


def _worker(rank: int, out_dir: str) -> None:
    # File rendezvous: no TCP port to race for on a shared machine.
    dist.init_process_group("gloo", init_method=f"file://{out_dir}/rendezvous", rank=rank, world_size=WORLD)
    try:
        weight, x, xp, xn = _data()
        rows = slice(rank * ROWS_PER_RANK, (rank + 1) * ROWS_PER_RANK)
        out = {}
        for name, pick in (("sigreg", 0), ("infonce", 1)):
            w = weight.clone().requires_grad_(True)
            loss = _losses(w, x[rows], xp[rows], xn[rows], step=7)[pick]
            loss.backward()
            grad = w.grad.clone()
            dist.all_reduce(grad)  # what DDP does to parameter gradients: average over ranks
            out[name] = (float(loss), grad / WORLD)
        # Each rank's local InfoNCE loss differs; DDP's effective loss is their mean.
        mean_nce = torch.tensor(out["infonce"][0])
        dist.all_reduce(mean_nce)
        out["infonce"] = (float(mean_nce) / WORLD, out["infonce"][1])
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()  # neither rank tears down gloo while the other still talks to it
    finally:
        dist.destroy_process_group()


def test_two_ranks_equal_one_process_on_the_concatenated_batch(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path),), nprocs=WORLD, join=True)
    results = {r: torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)}

    weight, x, xp, xn = _data()
    for name, pick in (("sigreg", 0), ("infonce", 1)):
        w = weight.clone().requires_grad_(True)
        loss = _losses(w, x, xp, xn, step=7)[pick]
        loss.backward()
        for rank in range(WORLD):
            value, grad = results[rank][name]
            assert abs(value - float(loss)) < 1e-5 * max(1.0, abs(float(loss))), (name, rank, value, float(loss))
            torch.testing.assert_close(grad, w.grad, rtol=1e-4, atol=1e-6, msg=f"{name} rank {rank}")
