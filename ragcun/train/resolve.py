"""A training job made complete before anything runs, and the small rules that training and sweeps share.

:func:`resolve` returns a new job — the caller's is never edited — with every local path checked and
absolute (workers run in another working directory), the output folder, the Ray run name and storage
(those of the run being continued for ``--resume``), the learning rates left unset (lower for synthetic
pairs), a best metric the run will actually report, and the CPUs of each worker planned against the cluster.
:mod:`ragcun.train.trainer` and :mod:`ragcun.sweep` both start from it.
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from pathlib import Path
from typing import Any, Literal

from ragcun.config import TrainConfig, TrainJobConfig
from ragcun.errors import DataError, RagcunError
from ragcun.train.data import PIPELINE_CPUS

TRAIN_CONFIG_FILE = "train_config.json"
LABELLED_PAIRS_LEARNING_RATE = 2e-5
# Synthetic pairs at the labelled-pairs rate cost up to 6 points nDCG@10 on the real queries of MEDLINE, CACM and
# NPL; a 4x lower rate (head 10x the encoder's, as in the labelled recipe) stays level with the untrained model
# (docs/data.md, "Raw documents alone", 2 seeds).
SYNTHETIC_PAIRS_LEARNING_RATES = (5e-6, 5e-5)  # encoder, head
OPTIMIZER_STATE_KEYS = ("optimizer_state_dict", "scheduler_state_dict", "training_log")
logger = logging.getLogger(__name__)


def metric_mode(metric: str) -> Literal["min", "max"]:
    """Losses are minimised, retrieval metrics maximised."""
    return "min" if metric.endswith("loss") else "max"


def new_run_name(prefix: str = "ragcun") -> str:
    """Unique, and sortable by start time."""
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def model_only(payload: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's payload without what only a resume needs (optimizer, schedule, step log)."""
    return {k: v for k, v in payload.items() if k not in OPTIMIZER_STATE_KEYS}


def worker_cpus(total_cpus: float, num_workers: int, requested: float | None = None, concurrent_runs: int = 1,
                reserved_per_run: float = 0.0) -> float:
    """CPUs per training worker so that ``concurrent_runs`` runs, each with its workers, its data pipeline
    (:data:`PIPELINE_CPUS`) and ``reserved_per_run`` (a Tune trial's driver), fit the cluster. Without
    ``requested`` the workers share what is left, at most 1 each (on 2 CPUs, 2 workers × 1 CPU plus a Ray
    Data step would deadlock), rounded down to 0.01 so that fractional sums never exceed the cluster."""
    per_run = total_cpus / concurrent_runs - reserved_per_run
    runs = f"{concurrent_runs} concurrent runs x " if concurrent_runs > 1 else ""
    if requested is not None:
        need = num_workers * requested + PIPELINE_CPUS
        if need > per_run + 1e-9:
            raise RagcunError(f"{runs}({num_workers} workers x {requested:g} CPU + {PIPELINE_CPUS:g} data) need "
                              f"{need * concurrent_runs + reserved_per_run * concurrent_runs:g} CPUs; the cluster "
                              f"has {total_cpus:g}")
        return requested
    share = (per_run - PIPELINE_CPUS) / num_workers
    if share < 0.1:
        raise RagcunError(f"{runs}{num_workers} workers do not fit in {total_cpus:g} CPUs: lower --num_workers"
                          + (" or --max_concurrent_trials" if concurrent_runs > 1 else ""))
    return min(1.0, math.floor(share * 100) / 100)


def synthetic_pairs(train_data: str) -> bool:
    """Whether ``prepare_data --generate_pairs`` wrote ``train_data``: its ``prepare_summary.json`` (beside the
    file, or in the directory) says so. Data without a summary count as labelled pairs."""
    path = Path(train_data)
    summary = (path if path.is_dir() else path.parent) / "prepare_summary.json"
    if not summary.is_file():
        return False
    try:
        return bool(json.loads(summary.read_text(encoding="utf-8"))["config"]["generate_pairs"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"not a prepare_data summary (config.generate_pairs unreadable: {exc})", str(summary)) from exc


def fill_learning_rates(t: TrainConfig) -> None:
    """Set ``t.learning_rate`` (and for synthetic pairs ``t.head_learning_rate``) where the user left them unset."""
    if t.learning_rate is not None:
        return
    if synthetic_pairs(t.train_data):
        t.learning_rate, head = SYNTHETIC_PAIRS_LEARNING_RATES
        t.head_learning_rate = t.head_learning_rate or head
        logger.info("%s: synthetic pairs (prepare_data --generate_pairs), so the learning rate defaults to %g "
                    "(head %g), which measured level with the untrained model on real queries", t.train_data,
                    t.learning_rate, t.head_learning_rate)
    else:
        t.learning_rate = LABELLED_PAIRS_LEARNING_RATE


def _absolute_existing(path: str | None, flag: str) -> str | None:
    if not path:
        return path
    if not Path(path).exists():
        raise DataError(f"{flag}: no such file or directory", path)
    return str(Path(path).resolve())


def resolve(job: TrainJobConfig, cluster_cpus: float, concurrent_runs: int = 1,
            reserved_per_run: float = 0.0) -> TrainJobConfig:
    """A new, complete job (see the module docstring); input errors raise before any work."""
    job = TrainJobConfig.from_dict(job.to_dict())
    t, r = job.train, job.ray
    if not t.train_data:
        raise RagcunError("--train_data is required")
    for flag, attr in (("--train_data", "train_data"), ("--val_data", "val_data"), ("--val_corpus", "val_corpus"),
                       ("--model_path", "model_path")):
        setattr(t, attr, _absolute_existing(getattr(t, attr), flag))
    fill_learning_rates(t)
    if Path(job.model.base_model).is_dir():
        job.model.base_model = str(Path(job.model.base_model).resolve())
    out = Path(t.output_dir).resolve()
    t.output_dir = str(out)
    if t.resume:
        saved = out / TRAIN_CONFIG_FILE
        if not saved.is_file():
            raise RagcunError(f"--resume: {saved} not found (nothing to resume in {out})")
        previous = json.loads(saved.read_text())["ray"]
        r.name, r.storage_path = previous["name"], previous["storage_path"]
    else:
        r.name = r.name or new_run_name()
        r.storage_path = str(Path(r.storage_path or out / "ray_results").resolve())
        run_dir = Path(r.storage_path) / r.name
        if run_dir.exists():
            raise RagcunError(f"{run_dir} exists: pass --resume to continue it, or choose another name")
    if t.best_metric.startswith("val_") and not t.val_data:
        t.best_metric = "train_loss"  # without validation data nothing else is reported
    r.cpus_per_worker = worker_cpus(cluster_cpus, r.num_workers, r.cpus_per_worker, concurrent_runs,
                                    reserved_per_run)
    return job
