"""The driver side of training: build the Ray Data pipeline and the ``TorchTrainer``, run it, and export
the seed's outputs into ``--output_dir``.

Outputs (written by the driver from the checkpoints Ray persisted under ``storage_path/<run name>``, so they
are right on a multi-node cluster too): ``checkpoint_epoch_N.pt`` (model, optimizer, scheduler, step; what a
resume needs), ``best_model.pt`` (best ``best_metric``), ``final_model.pt``, ``train_config.json``
(every setting, plus the Ray run name and storage path) and ``training.log`` (one JSON line per optimizer
step: every part the loss returns — total, contrastive, sigreg, variance, positive distance, embedding std —
and lr, gradient norm, triplets/s).

Run names: a new run gets a unique name, so it never silently resumes an old one (Ray Train resumes a run
whose name it finds in storage). ``--resume`` reuses the name stored in ``train_config.json``, and Ray
restarts from that run's last checkpoint with the same optimizer and schedule state.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragcun.config import FITTED_HEAD_INITS, TrainJobConfig
from ragcun.data.io import write_json
from ragcun.errors import DataError, RagcunError
from ragcun.fs import atomic_file
from ragcun.model import TextInputs, load_checkpoint_payload, save_payload
from ragcun.train.data import read_triplet_dataset, tokenized_dataset
from ragcun.train.loop import CHECKPOINT_FILE, train_func
from ragcun.train.resolve import TRAIN_CONFIG_FILE, metric_mode, model_only, resolve

logger = logging.getLogger(__name__)
FITTED_START_FILE = "fitted_start_model.pt"


@dataclass
class TrainingOutcome:
    output_dir: Path
    best_model: Path
    final_model: Path
    epoch_checkpoints: list[Path]
    metrics: list[dict[str, Any]]
    run_name: str
    storage_path: str
    wall_s: float


def read_training_data(path: str):
    """Read the training files once, in the driver, through Ray Data (materialised in the object store: the
    workers stream these blocks and the fitted head samples them, nobody reads the files again). A malformed
    file or a missing column fails here, naming the file, instead of inside a worker."""
    raw = read_triplet_dataset(path)
    try:
        raw = raw.materialize()
        schema = raw.schema()
    except Exception as exc:  # Ray wraps the reader's error in its own types
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise DataError(f"cannot read training data ({first.strip()[:300]})", path) from exc
    names = set(schema.names) if schema is not None else set()
    for column in ("query", "positive"):
        if column not in names:
            raise DataError(f"training data has no '{column}' column (found {sorted(names)})", path, field=column)
    return raw


def build_trainer(job: TrainJobConfig, fail_at: dict[str, Any] | None = None, callbacks: list | None = None,
                  raw: Any = None, validation: Any = None):
    """The TorchTrainer for ``job`` (Ray must be initialised) over ``raw``, the training data as read by
    :func:`read_training_data` (read here if not given); ``validation``: an object reference to the
    validation triplets the driver read (rank 0 reads ``--val_data`` itself without it). ``callbacks`` go to
    the RunConfig (Tune's TuneReportCallback); ``fail_at`` is a test hook."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    t = job.train
    raw = raw if raw is not None else read_training_data(t.train_data)
    dataset = tokenized_dataset(raw, TextInputs.of(job.model, t.model_path), str(t.train_data))
    num_rows = raw.count()
    if num_rows == 0:
        raise DataError("no training records", t.train_data)
    rows_per_worker = num_rows // job.ray.num_workers  # streaming_split(equal=True) gives each worker this many
    if rows_per_worker == 0:
        raise DataError(f"{num_rows} records cannot feed {job.ray.num_workers} workers", t.train_data)
    micro_batches = math.ceil(rows_per_worker / t.batch_size)
    cpus = job.ray.cpus_per_worker
    scaling = ray.train.ScalingConfig(num_workers=job.ray.num_workers, use_gpu=job.ray.use_gpu,
                                      resources_per_worker={"CPU": cpus, **({"GPU": 1} if job.ray.use_gpu else {})})
    run_config = ray.train.RunConfig(
        name=job.ray.name, storage_path=job.ray.storage_path,
        failure_config=ray.train.FailureConfig(max_failures=job.ray.max_failures),
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=None, checkpoint_score_attribute=t.best_metric,
                                                     checkpoint_score_order=metric_mode(t.best_metric)),
        callbacks=callbacks)
    config = {"job": job.to_dict(), "micro_batches_per_epoch": micro_batches, "validation": validation}
    if fail_at:
        config["fail_at"] = fail_at
    logger.info("training on %d triplets: %d workers x %.2f CPU%s, %d micro-batches of %d per worker per epoch",
                num_rows, job.ray.num_workers, cpus, " + 1 GPU" if job.ray.use_gpu else "", micro_batches, t.batch_size)
    return TorchTrainer(train_func, train_loop_config=config, scaling_config=scaling, run_config=run_config,
                        torch_config=TorchConfig(backend="nccl" if job.ray.use_gpu else "gloo"),
                        datasets={"train": dataset})


def export_outputs(result, job: TrainJobConfig) -> TrainingOutcome:
    """Copy Ray's persisted checkpoints to the seed's file names in output_dir."""
    out = Path(job.train.output_dir)
    entries = []
    for checkpoint, metrics in result.best_checkpoints or []:
        with checkpoint.as_directory() as directory:
            source = Path(directory) / CHECKPOINT_FILE
            target = out / f"checkpoint_epoch_{int(metrics['epoch'])}.pt"
            with atomic_file(target) as tmp:
                shutil.copyfile(source, tmp)
        entries.append((int(metrics["epoch"]), metrics, target))
    if not entries:
        raise RagcunError(f"the run {job.ray.name} reported no checkpoint")
    entries.sort(key=lambda e: e[0])
    metric = job.train.best_metric
    sign = -1.0 if metric_mode(metric) == "min" else 1.0
    best = max(entries, key=lambda e: sign * float(e[1].get(metric, float("-inf") * sign)))
    final = entries[-1]

    best_path = save_payload(model_only(load_checkpoint_payload(best[2])), out / "best_model.pt")
    final_path = save_payload(model_only(load_checkpoint_payload(final[2])), out / "final_model.pt")
    log = load_checkpoint_payload(final[2])["training_log"]
    with atomic_file(out / "training.log") as tmp:
        tmp.write_text("".join(json.dumps(record) + "\n" for record in log))
    write_json([e[1] for e in entries], out / "metrics.json")
    return TrainingOutcome(out, best_path, final_path, [e[2] for e in entries], [e[1] for e in entries],
                           job.ray.name or "", job.ray.storage_path or "", 0.0)


def start_from_fitted_head(job: TrainJobConfig, out: Path, raw=None) -> None:
    """A fitted head init (whiten, standardize, scale) is fitted once, here in the driver, on a sample of the
    training documents (``raw``, the training data already read, or read here) and saved as
    ``out``/fitted_start_model.pt; ``job.train.model_path`` then points at it, so every worker (and every sweep
    trial) starts from the same fitted model. Nothing to do (nothing read) when the job starts from a
    checkpoint, resumes, or has no fitted init."""
    if job.model.head_init not in FITTED_HEAD_INITS or job.train.model_path or job.train.resume:
        return
    from ragcun.head_init import write_fitted_start

    if raw is None:
        raw = read_training_data(job.train.train_data)

    columns = [c for c in ("positive", "negative") if c in raw.schema().names]
    documents = raw.select_columns(columns).take_all()
    job.train.model_path = write_fitted_start(job, documents, out / FITTED_START_FILE)


def run_training(job: TrainJobConfig, fail_at: dict[str, Any] | None = None) -> TrainingOutcome:
    """Resolve the job, train on the current Ray cluster (``ray.init`` first), export the outputs."""
    import ray

    job = resolve(job, float(ray.cluster_resources().get("CPU", 1.0)))
    t = job.train
    validation = None
    if t.val_data:
        from ragcun.data.io import read_triplets

        # Read once, here: a malformed file fails now, in the driver; rank 0 gets these triplets.
        validation = ray.put(read_triplets(t.val_data))
    raw = read_training_data(t.train_data)
    out = Path(t.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    start_from_fitted_head(job, out, raw)
    if not t.resume:
        write_json(job.to_dict(), out / TRAIN_CONFIG_FILE)
    start = time.perf_counter()
    result = build_trainer(job, fail_at, raw=raw, validation=validation).fit()
    if result.error:
        raise result.error
    outcome = export_outputs(result, job)
    outcome.wall_s = time.perf_counter() - start
    return outcome
