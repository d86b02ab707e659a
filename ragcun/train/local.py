"""Training in one process, without Ray: the model, loss, step (:class:`~ragcun.train.loop.StepRunner`, with
gradient accumulation and GradCache), optimizer and schedule of the Ray Train loop, on one device. For a
machine whose image has torch and transformers but no Ray (a GPU box running the Gaussian grid in minutes,
``bench/gaussian_local.py``), and for quick experiments. No validation and no checkpoints: the caller
evaluates the returned model.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ragcun.config import FITTED_HEAD_INITS, TrainJobConfig
from ragcun.data.io import read_triplets
from ragcun.losses import GaussianEmbeddingLoss
from ragcun.model import GaussianEmbeddingModel, TextInputs
from ragcun.train.data import Tokenize, training_batches
from ragcun.train.loop import StepRunner, accumulation_group, resolve_precision, start_training
from ragcun.train.resolve import fill_learning_rates

logger = logging.getLogger(__name__)


def triplet_batches(triplets: list[dict[str, Any]], tokenize: Tokenize, batch_size: int, seed: int,
                    device: torch.device) -> Iterator[dict[str, torch.Tensor]]:
    """The triplets in a seeded random order, ``batch_size`` at a time, tokenised as the Ray Data pipeline
    does (a field becomes a column where every row of the batch has it)."""
    order = list(range(len(triplets)))
    random.Random(seed).shuffle(order)
    for start in range(0, len(order), batch_size):
        rows = [triplets[i] for i in order[start:start + batch_size]]
        keys = [k for k in rows[0] if all(k in r for r in rows)]
        columns = {}
        for key in keys:
            column = np.empty(len(rows), dtype=object)
            column[:] = [r[key] for r in rows]
            columns[key] = column
        yield {k: torch.as_tensor(v, device=device) for k, v in tokenize(columns).items()}


def train_in_process(job: TrainJobConfig, device: str | torch.device = "cpu") -> tuple[GaussianEmbeddingModel,
                                                                                      list[dict[str, float]]]:
    """Train ``job`` on ``device``; returns the model (in eval mode) and the per-step log."""
    device = torch.device(device)
    job = TrainJobConfig.from_dict(job.to_dict())
    fill_learning_rates(job.train)
    triplets = read_triplets(job.train.train_data)
    with tempfile.TemporaryDirectory() as tmp:
        if job.model.head_init in FITTED_HEAD_INITS and not job.train.model_path:
            from ragcun.head_init import write_fitted_start

            start = write_fitted_start(job, triplets, Path(tmp) / "fitted_start_model.pt")
            job = dataclasses.replace(job, train=dataclasses.replace(job.train, model_path=start))
        t = job.train
        micro_per_epoch = math.ceil(len(triplets) / t.batch_size)
        total_steps = math.ceil(micro_per_epoch / t.gradient_accumulation_steps) * t.epochs
        state = start_training(job, total_steps, None, lambda m: m.to(device))
    model, scheduler = state.model, state.scheduler
    precision = resolve_precision(t.mixed_precision, model, device)
    runner = StepRunner(model, GaussianEmbeddingLoss(job.loss, distributed=False), state.optimizer, scheduler,
                        t.gradient_accumulation_steps, t.grad_clip, precision, device, t.mini_batch_size)
    tokenize = Tokenize(TextInputs.of_model(model), source=t.train_data)
    history: list[dict[str, float]] = []
    step = 0
    model.train()
    for epoch in range(t.epochs):
        fetch = functools.partial(triplet_batches, triplets, tokenize, seed=t.seed + epoch, device=device)
        batches = training_batches(fetch, t.batch_size, t.group_by_length, seed=t.seed + epoch)
        for micro, batch in enumerate(batches, 1):
            group_size, last = accumulation_group(micro, t.gradient_accumulation_steps, micro_per_epoch)
            parts = runner.micro_step(batch, step, sync=last, group_size=group_size)
            if not last:
                continue
            lr = scheduler.get_last_lr()[0]
            grad_norm = runner.optimizer_step()
            step += 1
            history.append({"step": step, "epoch": epoch + 1, "lr": lr, "grad_norm": grad_norm, **parts})
            if step % t.log_every == 0 or step == 1:
                logger.info("epoch %d step %d/%d loss %.4f", epoch + 1, step, total_steps, parts["total"])
    return model.eval(), history
