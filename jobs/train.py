#!/usr/bin/env python3
"""Train a Gaussian embedding model with Ray Train (DDP over --num_workers workers).

    python jobs/train.py --train_data data/processed/train.json --val_data data/processed/val.json --epochs 3
    ray job submit --working-dir . -- python jobs/train.py --train_data ... --storage_path /shared/ray_results

Runs on the Ray cluster it finds (RAY_ADDRESS, or one started with `ray start`), else starts a local one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ragcun.cli import run_main  # noqa: E402
from ragcun.config import (  # noqa: E402
    DEFAULT_BASE_MODEL,
    HEAD_INITS,
    LossConfig,
    ModelConfig,
    RayConfig,
    TrainConfig,
    TrainJobConfig,
)


def add_model_and_loss_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared with tune/sweep.py."""
    m, lo = ModelConfig(), LossConfig()
    p.add_argument("--base_model", default=DEFAULT_BASE_MODEL, help="hub id or local folder of the backbone")
    p.add_argument("--model_path", default=None, help="fine-tune from this ragcun checkpoint")
    p.add_argument("--output_dim", type=int, default=m.output_dim, help="embedding size (default 512; 0 = backbone width)")
    p.add_argument("--pooling", choices=["mean", "cls", "last"], default=m.pooling)
    p.add_argument("--head_init", choices=list(HEAD_INITS), default=m.head_init,
                   help="auto: identity at the backbone width, else random; whiten / standardize / scale: fitted "
                        "on the base model's embeddings of a sample of the training documents (scale: centre and "
                        "one global factor, which keeps the base ranking)")
    p.add_argument("--learn_scale", action="store_true", help="a learnable global scale after the head")
    p.add_argument("--freeze_early_layers", type=int, nargs="?", const=4, default=0,
                   help="freeze the embeddings and the first N layers (bare flag: 4, as the seed)")
    p.add_argument("--max_query_length", type=int, default=m.max_query_length)
    p.add_argument("--max_doc_length", type=int, default=m.max_doc_length)
    p.add_argument("--loss", choices=["infonce", "triplet"], default=lo.loss)
    p.add_argument("--lambda_contrastive", type=float, default=lo.lambda_contrastive)
    p.add_argument("--lambda_isotropy", type=float, default=lo.lambda_isotropy, help="SIGReg weight")
    p.add_argument("--lambda_reg", type=float, default=lo.lambda_reg, help="variance hinge weight")
    p.add_argument("--margin", type=float, default=lo.margin, help="additive margin, in distance units")
    p.add_argument("--temperature", type=float, default=lo.temperature, help="InfoNCE temperature τ")
    p.add_argument("--distance_scale", choices=["none", "dim", "batch"], default=lo.distance_scale,
                   help="InfoNCE divides squared distances by τ × (1 | 2D | 2D × the batch's mean variance)")
    p.add_argument("--num_slices", type=int, default=lo.num_slices, help="SIGReg random directions per step")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    t, r = TrainConfig(), RayConfig()
    p.add_argument("--train_data", required=True, help="triplets: .json/.jsonl/.parquet file or a directory of them")
    p.add_argument("--val_data", default=None, help="validation triplets (loss and retrieval metrics each epoch)")
    p.add_argument("--val_corpus", default=None, help="extra validation distractors: a BEIR corpus.jsonl")
    p.add_argument("--output_dir", default=t.output_dir)
    p.add_argument("--epochs", type=int, default=t.epochs)
    p.add_argument("--batch_size", type=int, default=t.batch_size, help="per worker, per micro-step")
    p.add_argument("--learning_rate", type=float, default=t.learning_rate)
    p.add_argument("--head_learning_rate", type=float, default=None, help="learning rate of the projection head")
    p.add_argument("--weight_decay", type=float, default=t.weight_decay)
    p.add_argument("--warmup_steps", type=int, default=t.warmup_steps, help="optimizer steps of linear warmup")
    p.add_argument("--gradient_accumulation_steps", type=int, default=t.gradient_accumulation_steps)
    p.add_argument("--grad_clip", type=float, default=t.grad_clip)
    p.add_argument("--mixed_precision", nargs="?", const="auto", default="auto",
                   choices=["auto", "no", "bf16", "fp16"], help="default auto: bf16 on a GPU that has it, else fp32")
    p.add_argument("--best_metric", default=t.best_metric, help="reported metric that picks best_model.pt")
    p.add_argument("--seed", type=int, default=t.seed)
    p.add_argument("--resume", action="store_true", help="continue the run in --output_dir from its last checkpoint")
    p.add_argument("--num_workers", type=int, default=r.num_workers)
    p.add_argument("--use_gpu", action="store_true", help="one GPU per worker, NCCL")
    p.add_argument("--cpus_per_worker", type=float, default=None, help="default: fit the cluster")
    p.add_argument("--max_failures", type=int, default=r.max_failures, help="worker failures to recover from")
    p.add_argument("--storage_path", default=None, help="Ray Train storage (absolute; shared on a cluster)")
    p.add_argument("--run_name", default=None, help="Ray run name (default: unique)")
    p.add_argument("--log_every", type=int, default=t.log_every)
    add_model_and_loss_flags(p)
    return p


def job_from_args(a: argparse.Namespace) -> TrainJobConfig:
    model = ModelConfig(base_model=a.base_model, output_dim=a.output_dim or None, pooling=a.pooling,
                        head_init=a.head_init, learn_scale=a.learn_scale,
                        freeze_early_layers=a.freeze_early_layers, max_query_length=a.max_query_length,
                        max_doc_length=a.max_doc_length)
    loss = LossConfig(loss=a.loss, lambda_contrastive=a.lambda_contrastive, lambda_isotropy=a.lambda_isotropy,
                      lambda_reg=a.lambda_reg, margin=a.margin, temperature=a.temperature, num_slices=a.num_slices,
                      distance_scale=a.distance_scale)
    train = TrainConfig(
        train_data=a.train_data, val_data=a.val_data, val_corpus=a.val_corpus, output_dir=a.output_dir,
        epochs=a.epochs, batch_size=a.batch_size, learning_rate=a.learning_rate,
        head_learning_rate=a.head_learning_rate, weight_decay=a.weight_decay, warmup_steps=a.warmup_steps,
        gradient_accumulation_steps=a.gradient_accumulation_steps, grad_clip=a.grad_clip,
        mixed_precision=a.mixed_precision, seed=a.seed, model_path=a.model_path, resume=a.resume,
        best_metric=a.best_metric, log_every=a.log_every)
    ray_cfg = RayConfig(num_workers=a.num_workers, use_gpu=a.use_gpu, cpus_per_worker=a.cpus_per_worker,
                        storage_path=a.storage_path, max_failures=a.max_failures, name=a.run_name)
    return TrainJobConfig(model=model, loss=loss, train=train, ray=ray_cfg)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        job = job_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    import ray

    from ragcun.train.trainer import run_training

    if not ray.is_initialized():
        ray.init(log_to_driver=True)  # joins RAY_ADDRESS / a `ray start` cluster, else starts a local one
    outcome = run_training(job)
    print(json.dumps({"best_model": str(outcome.best_model), "final_model": str(outcome.final_model),
                      "epochs": outcome.metrics, "run": outcome.run_name, "wall_s": round(outcome.wall_s, 1)},
                     indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
