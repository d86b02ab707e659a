#!/usr/bin/env python3
"""Training performance, side by side in one run (ratios; the machine is shared and noisy).

    python bench/train_bench.py --train_data runs/scifact/data/train.json [--sections st sigreg feed workers length]

- ``st``: one optimizer step of ragcun's loop (InfoNCE + SIGReg, our model and StepRunner) vs
  sentence-transformers' MultipleNegativesRankingLoss step on the same backbone (the packaged MiniLM),
  batch, sequence length, optimizer and pre-tokenised triplets, each in float32 and under bf16 autocast, and
  ragcun's documents both ways (positives and negatives in one forward pass, or one each; ``default`` marks
  StepRunner's choice); rounds alternate. Target: ragcun's default (``--mixed_precision auto``: bf16 on a CPU
  with AMX-BF16) >= 1.2x sentence-transformers' default (float32); the same-precision ratios are printed beside it.
- ``sigreg``: SIGReg's forward + backward (queries and documents, 1024 slices, D 512) as a share of a
  whole ragcun step at batch 32 and 128. Target <= 5%.
- ``feed``: the same loop fed by Ray Data on a Ray Train worker (1 worker, its 1 CPU thread) vs over
  in-memory tensors in this process with 1 thread; steady-state triplets/s (median over steps after the
  first). Target >= 0.9.
- ``length``: one epoch over the same triplets in random batches and in length-grouped ones
  (``--group_by_length``), alternating rounds: triplets/s and the tokens the encoder sees per real token.
- ``workers``: Ray Train with 1 and 2 workers (DDP over gloo) on this machine's CPUs; 2 workers also with
  ``--gradient_compression fp16`` (the all-reduce in float16); beside them plain torch processes without Ray
  (1 alone; 2 independent: the cores' ceiling; 2 under DDP with its defaults, with ragcun's DDP_OPTIONS, and
  with those but a hook that skips the all-reduce);
  ``--rounds`` alternating rounds, medians.

Prints a table and writes JSON (default bench/results/train_bench.json).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ragcun.config import DEFAULT_BASE_MODEL, LossConfig, ModelConfig, TrainJobConfig  # noqa: E402
from ragcun.data.io import read_triplets  # noqa: E402
from ragcun.losses.gaussian import GaussianEmbeddingLoss  # noqa: E402
from ragcun.model import GaussianEmbeddingModel, TextInputs, resolve_model_path  # noqa: E402
from ragcun.train.data import Tokenize, trim_padding  # noqa: E402
from ragcun.train.loop import DDP_OPTIONS, StepRunner, autocast, build_optimizer, resolve_precision  # noqa: E402
from ragcun.train.schedule import lr_multiplier  # noqa: E402


def ragcun_setup(seq_len: int, output_dim: int | None, lambda_isotropy: float, query_len: int | None = None):
    model_config = ModelConfig(base_model=DEFAULT_BASE_MODEL, output_dim=output_dim,
                               max_query_length=query_len or seq_len, max_doc_length=seq_len)
    job = TrainJobConfig(model=model_config, loss=LossConfig(lambda_isotropy=lambda_isotropy, temperature=1.0,
                                                              margin=0.0, lambda_variance=0.0, num_slices=1024))
    job.train.learning_rate = 2e-5
    torch.manual_seed(0)
    model = GaussianEmbeddingModel.from_config(job.model)
    optimizer = build_optimizer(model, job)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(0, 10_000, 0.0))
    # The precision a Ray Train worker resolves from the default --mixed_precision auto on this machine.
    runner = StepRunner(model, GaussianEmbeddingLoss(job.loss, distributed=False), optimizer, scheduler,
                        precision=resolve_precision("auto", model, torch.device("cpu")))
    model.train()
    return model, runner, job


def tokenised_batches(model: GaussianEmbeddingModel, triplets: list[dict], batch_size: int) -> list[dict]:
    """The Ray Data pipeline's own tokeniser (ragcun.train.data.Tokenize), applied in memory."""
    tokenize = Tokenize(TextInputs.of_model(model))
    batches = []
    for start in range(0, len(triplets) - batch_size + 1, batch_size):
        chunk = triplets[start:start + batch_size]
        columns = {k: np.array([t[k] for t in chunk], dtype=object) for k in ("query", "positive", "negative")}
        batches.append({k: torch.from_numpy(v) for k, v in tokenize(columns).items()})
    return batches


def time_ragcun_steps(runner: StepRunner, batches: list[dict], steps: int) -> list[float]:
    times = []
    for i in range(steps):
        started = time.perf_counter()
        runner.micro_step(batches[i % len(batches)], i, sync=True)
        runner.optimizer_step()
        times.append(time.perf_counter() - started)
    return times


# ------------------------------------------------------------------------------------------ sections
def section_st(triplets: list[dict], batch_size: int, seq_len: int, rounds: int, steps: int) -> dict:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    _, runner, _ = ragcun_setup(seq_len, None, 0.05)
    ours = tokenised_batches(runner.model, triplets, batch_size)
    auto = runner.precision

    torch.manual_seed(0)
    st_model = SentenceTransformer(resolve_model_path(DEFAULT_BASE_MODEL), device="cpu")
    st_model.max_seq_length = seq_len
    st_loss = MultipleNegativesRankingLoss(st_model)
    st_optimizer = torch.optim.AdamW(st_model.parameters(), lr=2e-5, weight_decay=0.01)
    st_model.train()
    st_batches = []
    for start in range(0, len(triplets) - batch_size + 1, batch_size):
        chunk = triplets[start:start + batch_size]
        st_batches.append([st_model.tokenize([t[k] for t in chunk]) for k in ("query", "positive", "negative")])

    def st_steps(n: int, precision: str, documents: str) -> list[float]:  # always split: one pass per column
        # What sentence-transformers' trainer does with bf16=True on the CPU: the loss's forward under autocast.
        times = []
        for i in range(n):
            started = time.perf_counter()
            with autocast(precision, torch.device("cpu")):
                loss = st_loss(st_batches[i % len(st_batches)], None)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(st_model.parameters(), 1.0)
            st_optimizer.step()
            st_optimizer.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - started)
        return times

    def ragcun_steps(n: int, precision: str, documents: str) -> list[float]:
        runner.precision, runner.joint_documents = precision, documents == "joint"
        return time_ragcun_steps(runner, ours, n)

    def default_documents(precision: str) -> str:  # StepRunner's own choice at this precision
        runner.precision, runner.joint_documents = precision, None
        return "joint" if runner.joint_documents else "split"

    # documents: positives and negatives in one forward pass ("joint") or one pass each ("split", as
    # sentence-transformers' loss encodes each column).
    variants = {(system, precision, documents): run for precision in ("no", "bf16")
                for system, documents, run in (("ragcun", "joint", ragcun_steps), ("ragcun", "split", ragcun_steps),
                                               ("sentence-transformers", "split", st_steps))}
    defaults = {("ragcun", precision, default_documents(precision)) for precision in ("no", "bf16")}
    ragcun_default, st_default = ("ragcun", auto, default_documents(auto)), ("sentence-transformers", "no", "split")

    for (_, precision, documents), run in variants.items():  # warm-up every variant
        run(1, precision, documents)
    times: dict[tuple[str, str, str], list[float]] = {key: [] for key in variants}
    for _ in range(rounds):
        for key, run in variants.items():
            times[key] += run(steps, *key[1:])
    speed = {key: batch_size / statistics.median(t) for key, t in times.items()}
    rows = []
    for key, tps in speed.items():
        system, precision, documents = key
        rows.append({"system": system, "precision": "fp32" if precision == "no" else precision,
                     "documents": documents, "default": key in defaults or key == st_default,
                     "triplets_per_s": tps, "vs_st_default": tps / speed[st_default]})

    def same_precision(precision: str) -> float:
        return speed[("ragcun", precision, default_documents(precision))] / speed[("sentence-transformers", precision,
                                                                                   "split")]

    return {"batch_size": batch_size, "seq_len": seq_len, "threads": torch.get_num_threads(),
            "steps_each": len(times[st_default]), "ragcun_auto_precision": auto, "rows": rows,
            "ratio": speed[ragcun_default] / speed[st_default], "target": ">= 1.2",
            "ratio_both_bf16": same_precision("bf16"), "ratio_both_fp32": same_precision("no")}


def section_sigreg(triplets: list[dict], batch_sizes: list[int], seq_len: int, steps: int) -> list[dict]:
    from ragcun.losses.sigreg import SIGRegLoss

    model, runner, job = ragcun_setup(seq_len, 512, 1.0, query_len=min(64, seq_len))
    sigreg = SIGRegLoss(num_slices=1024, sync_distributed=False)
    rows = []
    for batch_size in batch_sizes:
        batches = tokenised_batches(model, triplets, batch_size)[:2]
        time_ragcun_steps(runner, batches, 1)
        step_s = statistics.median(time_ragcun_steps(runner, batches, steps))
        sigreg_times = []
        for i in range(max(steps, 5)):
            queries = torch.randn(batch_size, 512, requires_grad=True)
            docs = torch.randn(2 * batch_size, 512, requires_grad=True)
            started = time.perf_counter()
            (0.5 * (sigreg(queries, i) + sigreg(docs, i))).backward()
            sigreg_times.append(time.perf_counter() - started)
        sigreg_s = statistics.median(sigreg_times)
        rows.append({"batch_size": batch_size, "dim": 512, "num_slices": 1024, "seq_len": seq_len,
                     "step_s": step_s, "sigreg_s": sigreg_s, "share": sigreg_s / step_s, "target": "<= 0.05"})
    return rows


def ray_training(train_file: str, num_workers: int, batch_size: int, seq_len: int, out: Path,
                 gradient_compression: str = "none") -> dict:
    import ray

    from ragcun.train.trainer import run_training

    if not ray.is_initialized():
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    job = TrainJobConfig(model=ModelConfig(output_dim=None, max_query_length=min(64, seq_len), max_doc_length=seq_len),
                         loss=LossConfig(lambda_isotropy=0.05, temperature=1.0, margin=0.0, lambda_variance=0.0))
    job.train.train_data, job.train.output_dir = train_file, str(out)
    job.train.epochs, job.train.batch_size, job.train.learning_rate = 1, batch_size, 2e-5
    job.train.log_every = 1000
    job.ray.num_workers, job.ray.gradient_compression = num_workers, gradient_compression
    started = time.perf_counter()
    run_training(job)
    wall = time.perf_counter() - started
    log = [json.loads(line) for line in (out / "training.log").read_text().splitlines() if line.strip()]
    steady = [r["triplets_per_s"] for r in log[1:]] or [log[0]["triplets_per_s"]]
    return {"num_workers": num_workers, "gradient_compression": gradient_compression, "steps": len(log),
            "triplets_per_s": statistics.median(steady), "wall_s": wall}


def section_feed(triplets: list[dict], batch_size: int, seq_len: int, steps: int, scratch: Path) -> dict:
    import ray

    train_file = scratch / "feed_triplets.json"
    train_file.write_text(json.dumps(triplets[: batch_size * steps]))
    ray_run = ray_training(str(train_file), 1, batch_size, seq_len, scratch / "feed_ray")
    ray.shutdown()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what Ray gives a 1-CPU worker (OMP_NUM_THREADS=1)
    try:
        _, runner, _ = ragcun_setup(seq_len, None, 0.05, query_len=min(64, seq_len))
        batches = tokenised_batches(runner.model, triplets[: batch_size * steps], batch_size)
        times = time_ragcun_steps(runner, batches, len(batches))
    finally:
        torch.set_num_threads(threads)
    memory_tps = batch_size / statistics.median(times[1:] or times)
    return {"batch_size": batch_size, "seq_len": seq_len, "steps": ray_run["steps"],
            "ray_data_triplets_per_s": ray_run["triplets_per_s"], "in_memory_triplets_per_s": memory_tps,
            "ratio": ray_run["triplets_per_s"] / memory_tps, "target": ">= 0.9"}


def _unreduced_bucket(_state, bucket):  # unannotated: DDP rejects a string annotation (postponed evaluation)
    future: torch.futures.Future = torch.futures.Future()
    future.set_result(bucket.buffer())
    return future


def _torch_worker(rank: int, world: int, mode: str, train_file: str, batch_size: int, seq_len: int, port: int,
                  out_dir: str) -> None:
    """One process of the plain-torch rows (no Ray): 1 thread, like a 1-CPU Ray worker. ``mode``: ``alone``
    (world 1), ``independent`` (no gradient exchange: what the cores give two processes), ``ddp`` (DDP's
    defaults over gloo and the distributed loss), ``ddp_ragcun`` (the same with ragcun's DDP_OPTIONS, as its
    Ray Train workers run it) or ``ddp_no_exchange`` (ddp_ragcun with a communication hook that hands each
    bucket back unreduced: DDP's bookkeeping and the loss's all-gather without the gradient all-reduce; the
    ranks drift apart, which does not change a step's cost). Writes its median step time to out_dir/rank.json."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    model, runner, job = ragcun_setup(seq_len, None, 0.05, query_len=min(64, seq_len))
    if mode.startswith("ddp"):
        ddp_model = torch.nn.parallel.DistributedDataParallel(model, **({} if mode == "ddp" else DDP_OPTIONS))
        if mode == "ddp_no_exchange":
            ddp_model.register_comm_hook(None, _unreduced_bucket)
        runner = StepRunner(ddp_model, GaussianEmbeddingLoss(job.loss), runner.optimizer, runner.scheduler,
                            precision=runner.precision)
    batches = tokenised_batches(model, json.loads(Path(train_file).read_text()), batch_size)
    own = batches[rank::world]  # each rank its own batches, as streaming_split gives them
    time_ragcun_steps(runner, own, 1)  # warm-up
    dist.barrier()
    times = time_ragcun_steps(runner, own, len(own))
    Path(out_dir, f"{rank}.json").write_text(json.dumps(statistics.median(times)))
    dist.destroy_process_group()


def torch_training(train_file: str, world: int, mode: str, batch_size: int, seq_len: int, out: Path) -> dict:
    """Triplets/s of ``world`` plain torch processes (see :func:`_torch_worker`), summed over processes."""
    import torch.multiprocessing

    from ragcun.serving import free_port

    out.mkdir(parents=True)
    torch.multiprocessing.spawn(_torch_worker, nprocs=world, args=(world, mode, train_file, batch_size, seq_len,
                                                                   free_port(), str(out)))
    step_s = [json.loads((out / f"{rank}.json").read_text()) for rank in range(world)]
    # DDP's steps are in lockstep (the slower rank sets the pace); independent processes each run their own.
    total = world * batch_size / max(step_s) if mode.startswith("ddp") else sum(batch_size / s for s in step_s)
    return {"triplets_per_s": total}


def section_workers(triplets: list[dict], batch_size: int, seq_len: int, steps: int, rounds: int,
                    scratch: Path) -> list[dict]:
    """Ray Train with 1 worker, 2 workers, 2 workers with fp16 gradient exchange, beside plain torch processes
    without Ray (1 alone; 2 independent, the cores' own ceiling; 2 under DDP over gloo, with DDP's defaults,
    with ragcun's options, and with ragcun's options but no all-reduce), so the 2-worker ratio can be split
    into what the cores allow, what DDP's exchange and its lockstep cost, and what Ray adds. ``rounds``
    alternating rounds, each configuration's figure the median over rounds (this shared machine's speed drifts
    within minutes)."""
    import ray

    train_file = scratch / "worker_triplets.json"
    train_file.write_text(json.dumps(triplets[: 2 * batch_size * steps]))
    configurations = (("ray", 1, "none"), ("ray", 2, "none"), ("ray", 2, "fp16"),
                      ("torch", 1, "alone"), ("torch", 2, "independent"), ("torch", 2, "ddp"),
                      ("torch", 2, "ddp_ragcun"), ("torch", 2, "ddp_no_exchange"))
    runs: dict = {c: [] for c in configurations}
    for round_ in range(rounds):
        for system, workers, variant in configurations:
            out = scratch / f"workers_{system}_{workers}_{variant}_{round_}"
            if system == "ray":
                runs[(system, workers, variant)].append(ray_training(
                    str(train_file), workers, batch_size, seq_len, out, variant))
                ray.shutdown()
            else:
                runs[(system, workers, variant)].append(torch_training(
                    str(train_file), workers, variant, batch_size, seq_len, out))
    rows = []
    for (system, workers, variant), measured in runs.items():
        speeds = [r["triplets_per_s"] for r in measured]
        rows.append({"system": system, "num_workers": workers, "variant": variant,
                     "triplets_per_s": statistics.median(speeds), "per_round": speeds})
    for row in rows:
        one = next(r for r in rows if r["system"] == row["system"] and r["num_workers"] == 1)
        row["speedup_vs_1"] = row["triplets_per_s"] / one["triplets_per_s"]
        row["per_round_speedup"] = [s / o for s, o in zip(row["per_round"], one["per_round"])]
    return rows


def section_length(triplets: list[dict], batch_size: int, seq_len: int, steps: int, rounds: int) -> dict:
    """One epoch over the same ``steps * batch_size`` triplets in random batches and in length-grouped ones
    (``--group_by_length``: ragcun.train.data.training_batches over train_in_process's seeded, tokenised
    stream), ``rounds`` alternating rounds; triplets/s over each whole epoch, and the tokens the encoder sees
    (each role's batch trimmed to its longest row) per real token."""
    from ragcun.train.data import training_batches
    from ragcun.train.local import triplet_batches

    _, runner, _ = ragcun_setup(seq_len, None, 0.05, query_len=min(64, seq_len))
    rows = triplets[: steps * batch_size]
    fetch = functools.partial(triplet_batches, rows, Tokenize(TextInputs.of_model(runner.model)), seed=0,
                              device=torch.device("cpu"))
    variants = {grouped: list(training_batches(fetch, batch_size, grouped, seed=0)) for grouped in (False, True)}

    def tokens(batches: list[dict]) -> float:
        seen = real = 0
        for batch in batches:
            for role in ("query", "positive", "negative"):
                ids, mask = trim_padding(batch[f"{role}_input_ids"], batch[f"{role}_attention_mask"])
                seen, real = seen + ids.numel(), real + int(mask.sum())
        return seen / real

    time_ragcun_steps(runner, variants[False], 1)  # warm-up
    seconds: dict[bool, list[float]] = {False: [], True: []}
    for round_ in range(rounds):
        for grouped in ((False, True) if round_ % 2 == 0 else (True, False)):
            seconds[grouped].append(sum(time_ragcun_steps(runner, variants[grouped], len(variants[grouped]))))
    speed = {g: len(rows) / statistics.median(s) for g, s in seconds.items()}
    return {"triplets": len(rows), "batch_size": batch_size, "doc_len": seq_len, "precision": runner.precision,
            "threads": torch.get_num_threads(), "rounds": rounds,
            "random_triplets_per_s": speed[False], "grouped_triplets_per_s": speed[True],
            "speedup": speed[True] / speed[False],
            "per_round_speedup": [r / g for r, g in zip(seconds[False], seconds[True])],
            "random_tokens_per_real": tokens(variants[False]), "grouped_tokens_per_real": tokens(variants[True])}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train_data", default="runs/scifact/data/train.json", help="triplets (real text)")
    p.add_argument("--sections", nargs="+", default=["st", "sigreg", "feed", "workers"],
                   choices=["st", "sigreg", "feed", "workers", "length"])
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--seq_len", type=int, default=128, help="max tokens of every text")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--steps", type=int, default=6, help="timed steps per round / per Ray run")
    p.add_argument("--output", default="bench/results/train_bench.json")
    a = p.parse_args()
    triplets = [t for t in read_triplets(a.train_data) if t.get("negative")]
    results: dict = {"command": " ".join(sys.argv), "cpus": os.cpu_count(), "torch": torch.__version__,
                     "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        if "st" in a.sections:
            results["st_mnrl"] = section_st(triplets, a.batch_size, a.seq_len, a.rounds, a.steps)
            print_rows("ragcun vs sentence-transformers MNRL (one optimizer step; default: each one's default "
                       f"precision here; ragcun's auto = {results['st_mnrl']['ragcun_auto_precision']})",
                       results["st_mnrl"]["rows"])
            print(f"ragcun default / sentence-transformers default: {results['st_mnrl']['ratio']:.3g} (target >= 1.2); "
                  f"same precision: fp32 {results['st_mnrl']['ratio_both_fp32']:.3g}, "
                  f"bf16 {results['st_mnrl']['ratio_both_bf16']:.3g}")
        if "sigreg" in a.sections:
            results["sigreg_share"] = section_sigreg(triplets, [32, 128], a.seq_len, max(2, a.steps // 2))
            print_rows("SIGReg's share of a step (D 512, 1024 slices)", results["sigreg_share"])
        if "feed" in a.sections:
            results["ray_data_feed"] = section_feed(triplets, a.batch_size // 2, a.seq_len, 2 * a.steps, scratch)
            print_rows("Ray Data feed vs in-memory tensors (1 worker, 1 thread)", [results["ray_data_feed"]])
        if "workers" in a.sections:
            results["workers"] = section_workers(triplets, a.batch_size // 2, a.seq_len, a.steps, a.rounds, scratch)
            print_rows("Ray Train workers on this machine", results["workers"])
        if "length" in a.sections:
            results["length_grouping"] = section_length(triplets, a.batch_size, a.seq_len, a.steps, a.rounds)
            print_rows("length-grouped batches vs random batches (one epoch over the same triplets)",
                       [results["length_grouping"]])
    out = Path(a.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwrote {out}")
    return 0


def print_rows(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    keys = list(rows[0])
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(format_cell(row[k]) for k in keys))


def format_cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return " / ".join(format_cell(v) for v in value)
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
