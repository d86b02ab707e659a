"""Hyperparameter search with Ray Tune over the Gaussian objective's weights (``tune/sweep.py``).

Each trial is a real Ray Train run: a Tune function trainable builds the ``TorchTrainer`` of
:mod:`ragcun.train.trainer` with ``RunConfig(callbacks=[TuneReportCallback()])`` (Train V2 has no
``Tuner(trainer)``), so every epoch's validation metrics reach Tune, where ASHA stops poor trials early.

Search space: a dict ``{name: spec}``; a spec is a constant or ``{"type": t, ...}`` with t one of
``choice`` (``values``), ``grid`` (``values``), ``uniform`` / ``loguniform`` (``low``, ``high``),
``randint`` (``low``, ``high``). The defaults search lambda_isotropy on a log grid around LeJEPA's
0.01–0.1 that includes 0 (SIGReg off), lambda_variance log-uniformly, and the margin uniformly.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragcun.config import LossConfig, SweepConfig, TrainJobConfig
from ragcun.data.io import write_json
from ragcun.errors import RagcunError
from ragcun.model import load_checkpoint_payload, save_payload
from ragcun.train.resolve import metric_mode, model_only, new_run_name, resolve

logger = logging.getLogger(__name__)

# name -> (config section, field)
SEARCHABLE = {
    "lambda_isotropy": ("loss", "lambda_isotropy"),
    "lambda_variance": ("loss", "lambda_variance"),
    "margin": ("loss", "margin"),
    "temperature": ("loss", "temperature"),
    "lambda_contrastive": ("loss", "lambda_contrastive"),
    "learning_rate": ("train", "learning_rate"),
    "head_learning_rate": ("train", "head_learning_rate"),
    "weight_decay": ("train", "weight_decay"),
}
DEFAULT_SEARCH_SPACE: dict[str, Any] = {
    "lambda_isotropy": {"type": "choice", "values": [0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2]},
    "lambda_variance": {"type": "loguniform", "low": 1e-3, "high": 1.0},
    "margin": {"type": "uniform", "low": 0.0, "high": 1.0},
}
TRIAL_CPUS = 0.01
STATE_API_WAIT_S = 60.0
REPORTED_METRICS = ("train_loss", "val_loss", "val_ndcg@10", "val_mrr@10", "val_recall@10")


def parse_search_space(space: dict[str, Any]) -> dict[str, Any]:
    """Validate a search space and turn it into Ray Tune domains; errors name the parameter."""
    from ray import tune

    if not space:
        raise RagcunError("the search space is empty")
    domains: dict[str, Any] = {}
    for name, spec in space.items():
        if name in LossConfig.RENAMED:
            logger.warning("search parameter %r is deprecated; use %r", name, LossConfig.RENAMED[name])
            name = LossConfig.RENAMED[name]
        if name not in SEARCHABLE:
            raise RagcunError(f"unknown search parameter '{name}' (searchable: {', '.join(sorted(SEARCHABLE))})")
        if not isinstance(spec, dict):
            domains[name] = spec  # a constant
            continue
        kind = spec.get("type")
        if kind in ("choice", "grid"):
            values = spec.get("values")
            if not isinstance(values, list) or not values:
                raise RagcunError(f"'{name}': {kind} needs a non-empty list of values")
            domains[name] = tune.choice(values) if kind == "choice" else tune.grid_search(values)
        elif kind in ("uniform", "loguniform", "randint"):
            low, high = spec.get("low"), spec.get("high")
            if not isinstance(low, (int, float)) or not isinstance(high, (int, float)):
                raise RagcunError(f"'{name}': {kind} needs numeric low and high")
            if not low < high:
                raise RagcunError(f"'{name}': empty or inverted range [{low}, {high}]")
            if kind == "loguniform" and low <= 0:
                raise RagcunError(f"'{name}': loguniform needs low > 0 (got {low}); use choice to include 0")
            domains[name] = {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint}[kind](
                low, high)
        else:
            raise RagcunError(f"'{name}': unknown type {kind!r} (choice, grid, uniform, loguniform, randint)")
    return domains


def parse_param_override(text: str) -> tuple[str, Any]:
    """``name=loguniform:0.001:0.1``, ``name=choice:0,0.01,0.1``, ``name=grid:…`` or ``name=0.05``."""
    if "=" not in text:
        raise RagcunError(f"--param {text!r}: expected NAME=SPEC")
    name, spec = text.split("=", 1)
    kind, _, rest = spec.partition(":")
    try:
        if kind in ("uniform", "loguniform", "randint"):
            low, high = rest.split(":")
            cast = int if kind == "randint" else float
            return name, {"type": kind, "low": cast(low), "high": cast(high)}
        if kind in ("choice", "grid"):
            return name, {"type": kind, "values": [float(v) for v in rest.split(",") if v != ""]}
        return name, float(spec)
    except ValueError as exc:
        raise RagcunError(f"--param {text!r}: {exc}") from exc


def load_search_space_file(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise RagcunError(f"{p}: no such search-space file")
    text = p.read_text()
    if p.suffix.lower() in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise RagcunError(f"{p}: expected a mapping of parameter name to spec")
    return data


def apply_params(job_dict: dict[str, Any], params: dict[str, Any]) -> TrainJobConfig:
    """A copy of the job with the trial's parameters set."""
    values = copy.deepcopy(job_dict)
    for name, value in params.items():
        section, field_name = SEARCHABLE[name]
        values[section][field_name] = value
    return TrainJobConfig.from_dict(values)


def trial_function(config: dict[str, Any]) -> None:
    """One trial: a full TorchTrainer run whose per-epoch reports are forwarded to Tune."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from ragcun.train.trainer import build_trainer

    params = {k: v for k, v in config.items() if k in SEARCHABLE}
    job = apply_params(config["__job__"], params)
    job.ray.name = f"trial-{tune.get_context().get_trial_id()}"
    build_trainer(job, callbacks=[TuneReportCallback()]).fit()


def start_sweep_cluster() -> None:
    """Connect to (``RAY_ADDRESS``) or start the Ray cluster of a sweep, and name its state API for every
    process of the cluster.

    Ray Train's clean-up actor (see :func:`check_state_api`) finds the state API through
    ``RAY_API_SERVER_ADDRESS``, else by auto-detection, which on a machine where another Ray cluster has run
    can pick that cluster's dashboard: stopped trials then keep their CPUs and the sweep stalls. A local
    cluster started here gets a dashboard on a free port named in the environment *before* ``ray.init``, so
    the raylet and every worker it starts inherit it; a cluster joined through ``RAY_ADDRESS`` has its API
    address read from its GCS and passed as a job-level ``runtime_env`` variable."""
    import os

    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address and address != "local":
        from ray.dashboard.utils import ray_address_to_api_server_url

        api = os.environ.get("RAY_API_SERVER_ADDRESS") or ray_address_to_api_server_url(address)
        os.environ["RAY_API_SERVER_ADDRESS"] = api
        ray.init(address=address, runtime_env={"env_vars": {"RAY_API_SERVER_ADDRESS": api}})
        return
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"
    ray.init(address="local", include_dashboard=True, dashboard_port=port)


def check_state_api() -> None:
    """Tune stops trials (ASHA, or at the last epoch) by killing the trial actor, which kills its Ray Train
    controller before it removes the worker group's placement group. Ray Train's detached
    PlacementGroupCleaner then removes it, but it finds dead controllers through Ray's state API, which the
    dashboard serves: without a dashboard every stopped trial leaves its workers' CPUs reserved and the next
    trial waits forever (seen on a 2-CPU cluster started with include_dashboard=False)."""
    import ray
    from ray.util.state import list_actors

    # This cluster's GCS address: with none, the state API guesses, and picks another cluster's dashboard when
    # several run on the machine (or fails on RAY_ADDRESS=local).
    address = ray.get_runtime_context().gcs_address
    deadline = time.monotonic() + STATE_API_WAIT_S  # a dashboard started with the cluster needs a few seconds
    while True:
        try:
            list_actors(address=address, limit=1, raise_on_missing_output=False)
            return
        except Exception as exc:  # the state API raises several types when the dashboard is absent
            if time.monotonic() < deadline:
                time.sleep(1.0)
                continue
            raise RagcunError(
                "Ray's state API is unavailable (the cluster runs without its dashboard), so placement groups of "
                "trials that Tune stops would never be released and the sweep would hang; start Ray with the "
                f"dashboard (`ray start --head` or ray.init(include_dashboard=True)) ({type(exc).__name__})"
            ) from exc


@dataclass
class SweepOutcome:
    results_dir: Path
    best_config: dict[str, Any]
    best_metric: float
    best_model: Path
    trials: list[dict[str, Any]]
    wall_s: float


def run_sweep(job: TrainJobConfig, space: dict[str, Any], sweep: SweepConfig) -> SweepOutcome:
    """Validate everything, then run (or resume) the sweep and write best_config.json, trials.csv and
    best_model.pt into ``<output_dir>/<name>/``."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from ragcun.train.trainer import start_from_fitted_head

    mode = sweep.mode or metric_mode(sweep.metric)
    if sweep.metric not in REPORTED_METRICS:
        raise RagcunError(f"--metric {sweep.metric!r} is not reported by the trials "
                          f"(reported: {', '.join(REPORTED_METRICS)})")
    if sweep.metric.startswith("val_") and not job.train.val_data:
        raise RagcunError(f"--metric {sweep.metric} needs --val_data (without it only train_loss is reported)")
    if mode not in ("min", "max"):
        raise RagcunError(f"--mode must be min or max, got {mode!r}")
    if sweep.num_samples < 1 or sweep.max_concurrent_trials < 1:
        raise RagcunError("--num_samples and --max_concurrent_trials must be >= 1")
    epochs = job.train.epochs if sweep.trial_epochs is None else sweep.trial_epochs
    if not 1 <= epochs <= job.train.epochs:
        raise RagcunError(f"--trial_epochs must be between 1 and --epochs ({job.train.epochs}), got {epochs}")
    domains = parse_search_space(space)
    out_root = Path(sweep.output_dir).resolve()
    name = sweep.name or new_run_name("sweep")
    storage = str(Path(sweep.storage_path or out_root / "ray_results").resolve())
    start_sweep_cluster()
    # Every trial trains this job, its runs kept under the sweep, each fitting beside the others.
    job = TrainJobConfig.from_dict(job.to_dict())
    job.train.best_metric, job.train.resume = sweep.metric, False
    job.ray.storage_path = str(Path(storage) / name / "train_runs")
    job = resolve(job, float(ray.cluster_resources().get("CPU", 0.0)), sweep.max_concurrent_trials, TRIAL_CPUS)
    check_state_api()
    experiment = Path(storage) / name
    trainable = tune.with_resources(trial_function, {"CPU": TRIAL_CPUS})
    start = time.perf_counter()
    if tune.Tuner.can_restore(str(experiment)):
        logger.info("resuming sweep %s from %s", name, experiment)
        tuner = tune.Tuner.restore(str(experiment), trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        # A fitted head is fitted once for the whole sweep: the trials differ only in the searched parameters.
        start_from_fitted_head(job, out_root / name)
        if sweep.scheduler == "asha":
            scheduler = ASHAScheduler(time_attr="training_iteration", max_t=epochs,
                                      grace_period=sweep.grace_period, reduction_factor=sweep.reduction_factor)
        elif sweep.scheduler == "fifo":
            scheduler = FIFOScheduler()
        else:
            raise RagcunError(f"--scheduler must be asha or fifo, got {sweep.scheduler!r}")
        search_alg = None
        if sweep.search_alg == "optuna":
            try:
                from ray.tune.search.optuna import OptunaSearch
            except ImportError as exc:
                raise RagcunError("--search_alg optuna needs optuna: pip install 'ragcun[tune]'") from exc
            if any(isinstance(v, dict) and "grid_search" in v for v in domains.values()):
                raise RagcunError("grid parameters cannot be used with --search_alg optuna; use choice")
            search_alg = OptunaSearch(seed=sweep.seed)
        elif sweep.search_alg != "random":
            raise RagcunError(f"--search_alg must be random or optuna, got {sweep.search_alg!r}")
        tuner = tune.Tuner(
            trainable,
            param_space={**domains, "__job__": job.to_dict()},
            tune_config=tune.TuneConfig(metric=sweep.metric, mode=mode, num_samples=sweep.num_samples,
                                        max_concurrent_trials=sweep.max_concurrent_trials, scheduler=scheduler,
                                        search_alg=search_alg),
            run_config=tune.RunConfig(name=name, storage_path=storage, stop={"training_iteration": epochs}),
        )
    grid = tuner.fit()
    return export_sweep(grid, sweep, name, out_root, mode, epochs, time.perf_counter() - start)


def export_sweep(grid, sweep: SweepConfig, name: str, out_root: Path, mode: str, max_epochs: int,
                 wall_s: float) -> SweepOutcome:
    from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY

    out = out_root / name
    out.mkdir(parents=True, exist_ok=True)
    trials = []
    for result in grid:
        history = result.metrics_dataframe
        params = {k: v for k, v in (result.config or {}).items() if k in SEARCHABLE}
        row: dict[str, Any] = {"trial_id": Path(result.path).name, **params,
                               "epochs_run": int(history["epoch"].max()) if history is not None and len(history) else 0,
                               "stopped_early": False, "status": "ERROR" if result.error else "OK"}
        if history is not None and sweep.metric in history:
            values = history[sweep.metric]
            row[f"{sweep.metric}_by_epoch"] = json.dumps([float(v) for v in values])
            best_idx = values.idxmax() if mode == "max" else values.idxmin()
            row[sweep.metric] = float(values[best_idx])
            row["best_checkpoint"] = str(history.loc[best_idx].get(CHECKPOINT_PATH_KEY, ""))
        row["stopped_early"] = row["epochs_run"] < max_epochs and not result.error
        trials.append(row)
    scored = [t for t in trials if sweep.metric in t and not math.isnan(t[sweep.metric])]
    if not scored:
        raise RagcunError(f"no trial reported {sweep.metric}; see {grid.experiment_path}")
    best = (max if mode == "max" else min)(scored, key=lambda t: t[sweep.metric])
    best_config = {k: best[k] for k in SEARCHABLE if k in best}
    write_json({"metric": sweep.metric, "mode": mode, "value": best[sweep.metric], "config": best_config,
                "trial_id": best["trial_id"]}, out / "best_config.json")
    import pandas as pd

    table = pd.DataFrame(trials)
    table.to_csv(out / "trials.csv", index=False)
    payload = load_checkpoint_payload(Path(best["best_checkpoint"]) / "checkpoint.pt")
    best_model = save_payload(model_only(payload), out / "best_model.pt")
    return SweepOutcome(Path(grid.experiment_path), best_config, best[sweep.metric], best_model, trials, wall_s)
