"""The per-worker training loop: ``train_func(config)`` runs on every Ray Train worker.

One epoch, top to bottom: take this worker's shard of the tokenised triplets, encode queries and documents,
compute the Gaussian embedding loss, backpropagate (DDP all-reduces gradients on the last micro-step of
each accumulation group only), clip, step AdamW and the per-step warmup + cosine schedule. At the end of
the epoch rank 0 validates (loss and retrieval metrics on the validation data) and writes a checkpoint
(model, optimizer, scheduler, step, epoch, config, log) that every rank reports with ``ray.train.report``.
A restarted worker (``FailureConfig``) or a resumed run picks it up from ``ray.train.get_checkpoint()``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ragcun.config import TrainJobConfig
from ragcun.losses import GaussianEmbeddingLoss
from ragcun.model import GaussianEmbeddingModel, load_checkpoint_payload, load_model
from ragcun.train.data import training_batches, trim_padding
from ragcun.train.schedule import lr_multiplier

logger = logging.getLogger("ragcun.train")
CHECKPOINT_FILE = "checkpoint.pt"


# ------------------------------------------------------------------------------------------ building
def build_model(job: TrainJobConfig) -> GaussianEmbeddingModel:
    """The starting model: a ragcun checkpoint to fine-tune (``--model_path``) or the base backbone."""
    if job.train.model_path:
        model = load_model(job.train.model_path)
        model.freeze_early_layers(job.model.freeze_early_layers)  # this job's choice, not the checkpoint's
        return model
    return GaussianEmbeddingModel.from_config(job.model)


def compile_backbone(model: GaussianEmbeddingModel) -> GaussianEmbeddingModel:
    """``torch.compile`` the backbone in place (``nn.Module.compile``): parameter names, and so checkpoints,
    stay those of the eager model. A small encoder over many tokens spends most of an eager step in the
    norms' and activations' elementwise kernels, which Inductor fuses. Compilation is lazy (the first step)
    and recompiles once for dynamic shapes when sequence lengths vary."""
    model.backbone.compile()
    return model


def build_optimizer(model: GaussianEmbeddingModel, job: TrainJobConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases and norms; the head may have its own learning rate."""
    t = job.train
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        is_head = name.startswith(("head.", "head_log_scale"))
        decay = param.ndim >= 2
        groups.setdefault((is_head, decay), []).append(param)
    param_groups = [
        {"params": params, "weight_decay": t.weight_decay if decay else 0.0,
         "lr": (t.head_learning_rate or t.learning_rate) if is_head else t.learning_rate}
        for (is_head, decay), params in sorted(groups.items())
    ]
    return torch.optim.AdamW(param_groups, lr=t.learning_rate)


@functools.lru_cache(maxsize=1)
def cpu_has_amx_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (Intel AMX-BF16), from Linux's /proc/cpuinfo.

    There bf16 autocast pays: a MiniLM training step ran 1.44x as fast as in float32 (bench/train_bench.py).
    On CPUs without it bf16 was not measured, so auto stays float32 there."""
    try:
        with open(cpuinfo, encoding="utf-8") as f:
            return any(line.startswith("flags") and "amx_bf16" in line.split() for line in f)
    except OSError:
        return False


def resolve_precision(requested: str, model: GaussianEmbeddingModel, device: torch.device) -> str:
    """auto: bf16 where the hardware multiplies it natively (a GPU that supports it, a CPU with AMX-BF16), else
    float32; fp16 only on CUDA (with a GradScaler) and never for Gemma."""
    gemma = model.backbone.config.model_type.startswith("gemma")
    if requested == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "no"
        return "bf16" if device.type == "cpu" and cpu_has_amx_bf16() else "no"
    if requested == "fp16":
        if gemma:
            raise ValueError("fp16 is not supported by Gemma models: use --mixed_precision bf16")
        if device.type != "cuda":
            raise ValueError("fp16 needs a CUDA device; on the CPU use --mixed_precision bf16 or no")
    return requested


def autocast(precision: str, device: torch.device):
    if precision == "no":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


# ------------------------------------------------------------------------------------------ one step
def encode_batch(model: torch.nn.Module, batch: dict[str, torch.Tensor],
                 joint_documents: bool = True) -> tuple[torch.Tensor, ...]:
    """Queries in one forward pass; positives and negatives together in another (same length budget) or, without
    ``joint_documents``, in one pass each. A group of K negatives per row, (B, K, L), comes back as B·K rows in
    row order. The vectors are the same either way (padding is masked); only the speed differs."""
    q = model(*trim_padding(batch["query_input_ids"], batch["query_attention_mask"]))
    if "negative_input_ids" not in batch:
        return q, model(*trim_padding(batch["positive_input_ids"], batch["positive_attention_mask"])), None
    width = batch["negative_input_ids"].shape[-1]
    neg_ids = batch["negative_input_ids"].reshape(-1, width)
    neg_mask = batch["negative_attention_mask"].reshape(-1, width)
    if not joint_documents:
        p = model(*trim_padding(batch["positive_input_ids"], batch["positive_attention_mask"]))
        return q, p, model(*trim_padding(neg_ids, neg_mask))
    docs = model(*trim_padding(torch.cat([batch["positive_input_ids"], neg_ids]),
                               torch.cat([batch["positive_attention_mask"], neg_mask])))
    n = q.shape[0]
    return q, docs[:n], docs[n:]


class _RngState:
    """The CPU (and CUDA) generator state at one moment, to replay a forward pass with the same dropout."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.cpu_state = torch.get_rng_state()
        self.cuda_state = torch.cuda.get_rng_state(device) if self.cuda else None
        self.device = device

    def restore(self) -> None:
        torch.set_rng_state(self.cpu_state)
        if self.cuda:
            torch.cuda.set_rng_state(self.cuda_state, self.device)


def _rows(batch: dict[str, torch.Tensor], start: int, stop: int) -> dict[str, torch.Tensor]:
    return {k: v[start:stop] for k, v in batch.items()}


class StepRunner:
    """Micro-steps with gradient accumulation, then one clipped optimizer + scheduler step.

    With ``mini_batch_size`` below a micro-batch's size, a micro-step is GradCache's (Gao et al., "Scaling
    Deep Contrastive Learning Batch Size under Memory Limited Setup", RepL4NLP 2021; sentence-transformers'
    CachedMultipleNegativesRankingLoss): (1) embed the batch mini-batch by mini-batch without a graph,
    (2) compute the loss on all the embeddings and its gradient with respect to each embedding, (3) embed
    each mini-batch again with a graph, replaying its dropout, and backpropagate the cached embedding
    gradients. The loss and the parameter gradients equal those of the plain step on the whole batch (every
    in-batch negative, SIGReg on the whole batch, DDP's cross-rank terms), while activation memory is that
    of one mini-batch."""

    def __init__(self, model, loss_fn, optimizer, scheduler, accumulation_steps: int = 1, grad_clip: float = 1.0,
                 precision: str = "no", device: torch.device | None = None, mini_batch_size: int | None = None,
                 joint_documents: bool | None = None):
        self.model, self.loss_fn, self.optimizer, self.scheduler = model, loss_fn, optimizer, scheduler
        self.mini_batch_size = mini_batch_size
        self._joint_documents = joint_documents
        self.accumulation_steps = accumulation_steps
        self.grad_clip = grad_clip
        self.precision = precision
        self.device = device or torch.device("cpu")
        self.scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None

    @property
    def joint_documents(self) -> bool:
        """Positives and negatives in one forward pass (``encode_batch``) unless set: so on a GPU and in float32,
        but one pass each under bf16 autocast on a CPU, where two passes of B rows ran faster than one of 2B
        (``bench/train_bench.py``'s st section measures both)."""
        if self._joint_documents is not None:
            return self._joint_documents
        return not (self.precision == "bf16" and self.device.type == "cpu")

    @joint_documents.setter
    def joint_documents(self, value: bool | None) -> None:  # None: the rule above
        self._joint_documents = value

    def micro_step(self, batch: dict[str, torch.Tensor], step: int, sync: bool,
                   group_size: int | None = None) -> dict[str, float]:
        """Forward and backward one micro-batch; DDP all-reduces gradients only when ``sync``.

        The loss is divided by ``group_size``, the number of micro-batches in this accumulation group (the
        last group of an epoch may be shorter), so every optimizer step sees the mean gradient of its group."""
        rows = int(batch["query_input_ids"].shape[0])
        if self.mini_batch_size and self.mini_batch_size < rows:
            return self._cached_micro_step(batch, step, sync, group_size, rows)
        with self._sync_context(sync):
            with autocast(self.precision, self.device):
                q, p, n = encode_batch(self.model, batch, self.joint_documents)
            parts = self._loss(batch, q.float(), p.float(), None if n is None else n.float(), step)
            loss = parts["total"] / (group_size or self.accumulation_steps)
            (self.scaler.scale(loss) if self.scaler else loss).backward()
        return {k: float(v.detach()) for k, v in parts.items()}

    def _sync_context(self, sync: bool):
        no_sync = getattr(self.model, "no_sync", None)
        return no_sync() if (no_sync is not None and not sync) else contextlib.nullcontext()

    def _loss(self, batch, q, p, n, step: int) -> dict[str, torch.Tensor]:
        negative_ids = batch.get("negative_id")
        return self.loss_fn(q, p, n, step=step, query_ids=batch.get("query_id"), positive_ids=batch.get("positive_id"),
                            negative_ids=None if negative_ids is None else negative_ids.reshape(-1),
                            positive_sets=batch.get("query_positive_ids"))

    def _cached_micro_step(self, batch, step: int, sync: bool, group_size: int | None, rows: int) -> dict[str, float]:
        bounds = [(s, min(s + self.mini_batch_size, rows)) for s in range(0, rows, self.mini_batch_size)]
        states, pieces = [], []
        with torch.no_grad():  # (1) embeddings only
            for start, stop in bounds:
                states.append(_RngState(self.device))
                with autocast(self.precision, self.device):
                    pieces.append([t.float() if t is not None else None for t in
                                   encode_batch(self.model, _rows(batch, start, stop), self.joint_documents)])
        after_first_pass = _RngState(self.device)
        q, p, n = ([piece[i] for piece in pieces] for i in range(3))
        q, p = torch.cat(q).requires_grad_(), torch.cat(p).requires_grad_()
        n = torch.cat(n).requires_grad_() if n[0] is not None else None
        parts = self._loss(batch, q, p, n, step)  # (2) the loss on the whole batch, and d loss / d embedding
        loss = parts["total"] / (group_size or self.accumulation_steps)
        (self.scaler.scale(loss) if self.scaler else loss).backward()
        offsets = [0, 0, 0]  # rows of q, p, n consumed so far (a group of K negatives gives K rows per row)
        for i, ((start, stop), state) in enumerate(zip(bounds, states)):  # (3) replay with a graph
            state.restore()
            with self._sync_context(sync and i == len(bounds) - 1):
                with autocast(self.precision, self.device):
                    embedded = encode_batch(self.model, _rows(batch, start, stop), self.joint_documents)
                surrogate = 0.0
                for role, (e, g) in enumerate(zip(embedded, (q, p, n))):
                    if e is not None:
                        surrogate = surrogate + (e.float() * g.grad[offsets[role]:offsets[role] + len(e)]).sum()
                        offsets[role] += len(e)
                surrogate.backward()
        after_first_pass.restore()
        return {k: float(v.detach()) for k, v in parts.items()}

    def optimizer_step(self) -> float:
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, self.grad_clip)) if self.grad_clip else float("nan")
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm


def accumulation_group(micro: int, accumulation_steps: int, micro_per_epoch: int) -> tuple[int, bool]:
    """(micro-batches in the group of the 1-based ``micro``, whether ``micro`` ends it); the epoch's last
    group holds what is left over."""
    start = (micro - 1) // accumulation_steps * accumulation_steps + 1
    end = min(start + accumulation_steps - 1, micro_per_epoch)
    return end - start + 1, micro >= end


# ---------------------------------------------------------------------------------------- validation
def load_validation(job: TrainJobConfig, triplets: list[dict] | None = None):
    """Validation triplets (``triplets``, as the driver read them, else read from ``--val_data``) and a
    retrieval set over their documents (plus ``--val_corpus`` distractors)."""
    from ragcun.data.io import read_triplets
    from ragcun.data.retrieval_sets import RetrievalSet, load_beir_corpus

    if not job.train.val_data:
        return None, None
    triplets = triplets if triplets is not None else read_triplets(job.train.val_data)
    ids: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    queries: dict[str, str] = {}
    for t in triplets:
        qid = t.get("query_id") or t["query"]
        queries[qid] = t["query"]
        for role in ("positive", "negative"):
            if role in t:
                ids.setdefault(t.get(f"{role}_id") or t[role], t[role])
        for i, text in enumerate(t.get("negatives", [])):  # a group of hard negatives: all distractors
            ids.setdefault(t["negative_ids"][i] if "negative_ids" in t else text, text)
        qrels.setdefault(qid, {})[t.get("positive_id") or t["positive"]] = 1
    if job.train.val_corpus:
        corpus_path = Path(job.train.val_corpus)
        extra = load_beir_corpus(corpus_path.parent if corpus_path.is_file() else corpus_path)
        for d, text in zip(extra.ids, extra.texts):
            ids.setdefault(d, text)
    retrieval_set = RetrievalSet(list(ids), list(ids.values()), list(queries), list(queries.values()), qrels,
                                 source=str(job.train.val_data))
    return triplets, retrieval_set


@torch.no_grad()
def validate(model: GaussianEmbeddingModel, job: TrainJobConfig, triplets, retrieval_set, step: int) -> dict[str, float]:
    """Validation loss (same objective, slices of ``step``, no cross-rank sync) and retrieval metrics."""
    from ragcun.eval.retrieval import evaluate_model

    if retrieval_set is None:
        return {}
    model.eval()
    loss_fn = GaussianEmbeddingLoss(job.loss, distributed=False)
    total, count = 0.0, 0
    size = job.train.val_batch_size
    for start in range(0, len(triplets), size):
        chunk = triplets[start : start + size]
        if len(chunk) < 2:
            continue
        q = model.encode([t["query"] for t in chunk], "query", batch_size=size, show_progress_bar=False)
        p = model.encode([t["positive"] for t in chunk], "document", batch_size=size, show_progress_bar=False)
        negs = [t.get("negative") for t in chunk]
        n = model.encode(negs, "document", batch_size=size, show_progress_bar=False) if all(negs) else None
        to_t = torch.from_numpy
        parts = loss_fn(to_t(q), to_t(p), None if n is None else to_t(n), step=step)
        total += float(parts["total"]) * len(chunk)
        count += len(chunk)
    metrics = evaluate_model(model, retrieval_set, batch_size=size, top_k=min(100, len(retrieval_set.corpus_ids)),
                             distance="l2", show_progress_bar=False)["metrics"]
    model.train()
    return {
        "val_loss": total / max(count, 1),
        "val_ndcg@10": metrics["ndcg@10"],
        "val_mrr@10": metrics["mrr@10"],
        "val_recall@10": metrics["recall@10"],
    }


# ------------------------------------------------------------------------------------------ start-up
@dataclass
class TrainingState:
    model: GaussianEmbeddingModel
    ddp_model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


# DDP keeps each gradient as a view into its all-reduce bucket instead of copying it there and back every step.
# Paired runs of bench/train_bench.py's plain-torch rows measure what it saves on busy CPU cores.
DDP_OPTIONS: dict[str, Any] = {"gradient_as_bucket_view": True}


def compress_gradients(ddp_model: torch.nn.Module, compression: str) -> torch.nn.Module:
    """Register DDP's float16 compression hook on a DDP-wrapped model (one worker has nothing to exchange).
    float16 rather than bf16: torch's bf16 hook needs NCCL, and float16 keeps 3 more mantissa bits."""
    if compression == "fp16" and isinstance(ddp_model, torch.nn.parallel.DistributedDataParallel):
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import fp16_compress_hook

        ddp_model.register_comm_hook(None, fp16_compress_hook)
        logger.info("DDP exchanges gradients in float16 (--gradient_compression fp16)")
    return ddp_model


def start_training(job: TrainJobConfig, total_steps: int, payload: dict[str, Any] | None,
                   prepare: Callable[[torch.nn.Module], torch.nn.Module]) -> TrainingState:
    """Build the model, restore a checkpoint's weights, ``prepare`` it (move to the device, wrap in DDP), and
    only then restore the optimizer and schedule.

    The order matters on a GPU: ``prepare`` moves the same Parameter objects to CUDA, and AdamW's
    ``load_state_dict`` puts each state tensor on its parameter's device and dtype *at load time*; loaded
    before the move, the moments would stay on the CPU and the first step would fail."""
    t = job.train
    torch.manual_seed(t.seed)  # the same head initialisation on every rank
    model = build_model(job)
    if payload is not None:
        model.load_state_dict(payload["model_state_dict"])
    if t.compile:
        compile_backbone(model)
    ddp_model = compress_gradients(prepare(model), job.ray.gradient_compression)
    optimizer = build_optimizer(model, job)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(t.warmup_steps, total_steps, t.min_lr_ratio))
    state = TrainingState(model, ddp_model, optimizer, scheduler)
    if payload is not None:
        optimizer.load_state_dict(payload["optimizer_state_dict"])
        scheduler.load_state_dict(payload["scheduler_state_dict"])
        state.epoch, state.step, state.history = payload["epoch"], payload["step"], list(payload["training_log"])
    return state


# ------------------------------------------------------------------------------------------ the loop
def _maybe_inject_failure(config: dict[str, Any], rank: int, step: int) -> None:
    """Test hook: kill this worker process once, at a given step (the marker file makes it once only)."""
    fail = config.get("fail_at")
    if fail and rank == fail["rank"] and step == fail["step"] and not os.path.exists(fail["marker"]):
        Path(fail["marker"]).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)


def train_func(config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    job = TrainJobConfig.from_dict(config["job"])
    t = job.train
    micro_per_epoch: int = config["micro_batches_per_epoch"]
    steps_per_epoch = math.ceil(micro_per_epoch / t.gradient_accumulation_steps)
    total_steps = steps_per_epoch * t.epochs
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    payload = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as directory:
            payload = load_checkpoint_payload(Path(directory) / CHECKPOINT_FILE)
    # prepare_model: to the worker's device, then DDP over gloo (CPU) or NCCL (GPU) when world > 1.
    prepare = functools.partial(ray.train.torch.prepare_model, parallel_strategy_kwargs=DDP_OPTIONS)
    state = start_training(job, total_steps, payload, prepare)
    model, ddp_model, optimizer, scheduler = state.model, state.ddp_model, state.optimizer, state.scheduler
    start_epoch, step, history = state.epoch, state.step, state.history
    if payload is not None:
        logger.info("rank %d resumed from epoch %d, step %d", rank, start_epoch, step)
    precision = resolve_precision(t.mixed_precision, model, device)
    if rank == 0:
        logger.info("precision: %s (--mixed_precision %s, %s)", "float32" if precision == "no" else precision,
                    t.mixed_precision, device.type)
    runner = StepRunner(ddp_model, GaussianEmbeddingLoss(job.loss), optimizer, scheduler,
                        t.gradient_accumulation_steps, t.grad_clip, precision, device, t.mini_batch_size)
    validation = ray.get(config["validation"]) if rank == 0 and config.get("validation") is not None else None
    val_triplets, val_set = load_validation(job, validation) if rank == 0 else (None, None)
    shard = ray.train.get_dataset_shard("train")
    model.train()

    for epoch in range(start_epoch, t.epochs):
        epoch_losses: list[float] = []
        window_start, window_triplets = time.perf_counter(), 0
        fetch = functools.partial(shard.iter_torch_batches, device=device, local_shuffle_seed=t.seed + epoch,
                                  local_shuffle_buffer_size=None if t.batch_size < 2 else 4 * t.batch_size)
        batches = training_batches(fetch, t.batch_size, t.group_by_length, seed=t.seed + epoch)
        for micro, batch in enumerate(batches, start=1):
            group_size, last_of_group = accumulation_group(micro, t.gradient_accumulation_steps, micro_per_epoch)
            parts = runner.micro_step(batch, step, sync=last_of_group, group_size=group_size)
            window_triplets += int(batch["query_input_ids"].shape[0]) * world
            epoch_losses.append(parts["total"])
            if not last_of_group:
                continue
            lr = scheduler.get_last_lr()[0]
            grad_norm = runner.optimizer_step()
            step += 1
            _maybe_inject_failure(config, rank, step)
            elapsed = time.perf_counter() - window_start
            record = {"step": step, "epoch": epoch + 1, "lr": lr, "grad_norm": grad_norm,
                      "triplets_per_s": window_triplets / max(elapsed, 1e-9), **parts}
            window_start, window_triplets = time.perf_counter(), 0
            if rank == 0:
                history.append(record)
                if step % t.log_every == 0 or step == 1:
                    logger.info("epoch %d step %d/%d lr %.2e loss %.4f (%s) %.1f triplets/s", epoch + 1, step,
                                total_steps, lr, parts["total"],
                                " ".join(f"{k} {v:.4f}" for k, v in parts.items() if k != "total"),
                                record["triplets_per_s"])

        metrics = {"epoch": epoch + 1, "step": step, "train_loss": float(np.mean(epoch_losses)) if epoch_losses else
                   float("nan"), "lr": scheduler.get_last_lr()[0]}
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:
                metrics.update(validate(model, job, val_triplets, val_set, step))
                logger.info("epoch %d done: %s", epoch + 1, {k: round(v, 4) for k, v in metrics.items()})
                model.save_checkpoint(
                    Path(tmp) / CHECKPOINT_FILE, optimizer_state_dict=optimizer.state_dict(),
                    scheduler_state_dict=scheduler.state_dict(), epoch=epoch + 1, step=step, metrics=metrics,
                    train_config=job.to_dict(), training_log=history)
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=checkpoint)
