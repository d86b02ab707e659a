"""StepRunner under real DDP: two gloo processes. GradCache (mini-batches of 2) against the plain step on each
rank's half of a batch: after DDP's gradient averaging both give the same gradients, with the cross-rank terms
(gathered in-batch negatives, SIGReg over both ranks) in the loss. And ragcun's DDP options (gradients as views
of the all-reduce buckets) against DDP's defaults over accumulation groups and optimizer steps."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from ragcun.config import LossConfig
from ragcun.losses import GaussianEmbeddingLoss
from ragcun.train.loop import DDP_OPTIONS, StepRunner

WORLD, ROWS, LENGTH, VOCAB = 2, 6, 7, 40


class Toy(nn.Module):
    """Mean of token embeddings, then a linear head: what encode_batch needs (ids, mask → vectors)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 8)
        self.head = nn.Linear(8, 6)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).float()
        return self.head((self.embed(input_ids) * mask).sum(1) / mask.sum(1))


def _batch(rank: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + rank)
    batch = {}
    for role in ("query", "positive", "negative"):
        lengths = torch.randint(2, LENGTH + 1, (ROWS,), generator=g)
        batch[f"{role}_input_ids"] = torch.randint(1, VOCAB, (ROWS, LENGTH), generator=g)
        batch[f"{role}_attention_mask"] = (torch.arange(LENGTH) < lengths[:, None]).long()
    return batch


def _ddp_runner(options: dict, optimizer: type, lr: float, **runner_options) -> tuple[nn.Module, StepRunner]:
    """Toy under DDP (with ``options``) and a StepRunner over the full loss, its cross-rank terms included."""
    torch.manual_seed(0)  # the same weights on both ranks, as DDP's broadcast would give
    model = nn.parallel.DistributedDataParallel(Toy(), **options)
    loss = GaussianEmbeddingLoss(LossConfig(temperature=0.5, distance_scale="batch", lambda_isotropy=0.2,
                                            lambda_variance=0.1, num_slices=8), distributed=True)
    opt = optimizer(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return model, StepRunner(model, loss, opt, scheduler, **runner_options)


def _on_rank(rank: int, out_dir: str, body) -> None:
    """One gloo rank: run ``body(rank)`` and save what it returns for the test to read."""
    dist.init_process_group("gloo", init_method=f"file://{out_dir}/rendezvous", rank=rank, world_size=WORLD)
    try:
        torch.save(body(rank), os.path.join(out_dir, f"{body.__name__}{rank}.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _run_on_ranks(body, tmp_path) -> list:
    mp.spawn(_on_rank, args=(str(tmp_path), body), nprocs=WORLD, join=True)
    return [torch.load(tmp_path / f"{body.__name__}{r}.pt", weights_only=True) for r in range(WORLD)]


def _plain_and_cached_gradients(rank: int) -> dict:
    grads = {}
    for mini in (None, 2):
        model, runner = _ddp_runner({}, torch.optim.SGD, lr=0.1, grad_clip=0.0, mini_batch_size=mini)
        parts = runner.micro_step(_batch(rank), step=1, sync=True)
        grads[str(mini)] = ({k: p.grad.clone() for k, p in model.module.named_parameters()}, parts["total"])
    return grads


def test_cached_step_under_ddp_equals_the_plain_step(tmp_path):
    results = _run_on_ranks(_plain_and_cached_gradients, tmp_path)
    for rank, result in enumerate(results):
        (plain, plain_loss), (cached, cached_loss) = result["None"], result["2"]
        assert abs(plain_loss - cached_loss) < 1e-5 * max(1.0, abs(plain_loss)), rank
        for name in plain:
            torch.testing.assert_close(cached[name], plain[name], rtol=1e-5, atol=1e-7, msg=f"rank {rank} {name}")
    for name in results[0]["2"][0]:  # DDP averaged the gradients: both ranks hold the same
        torch.testing.assert_close(results[0]["2"][0][name], results[1]["2"][0][name])


def _weights_with_both_options(rank: int) -> dict:
    """Two optimizer steps, each over an accumulation group of two micro-batches (no_sync, then sync), with
    DDP's defaults and with ragcun's DDP_OPTIONS: the weights after them."""
    weights = {}
    for name, options in (("defaults", {}), ("ragcun", DDP_OPTIONS)):
        model, runner = _ddp_runner(options, torch.optim.AdamW, lr=0.05, accumulation_steps=2, grad_clip=1.0)
        assert model.gradient_as_bucket_view == (name == "ragcun")
        for step in range(2):
            runner.micro_step(_batch(10 * step + rank), step, sync=False)
            runner.micro_step(_batch(10 * step + rank + 2), step, sync=True)
            runner.optimizer_step()
        weights[name] = {k: p.detach().clone() for k, p in model.module.named_parameters()}
    return weights


def test_ragcuns_ddp_options_train_as_ddps_defaults(tmp_path):
    results = _run_on_ranks(_weights_with_both_options, tmp_path)
    torch.manual_seed(0)
    initial = Toy().state_dict()
    for rank, weights in enumerate(results):
        for name, value in weights["defaults"].items():
            torch.testing.assert_close(weights["ragcun"][name], value, rtol=1e-5, atol=1e-6, msg=f"rank {rank} {name}")
            assert not torch.equal(value, initial[name]), f"{name} did not train"
