#!/usr/bin/env python3
"""One run of the Gaussian grid in one process — train (ragcun.train.local), encode, exact search in torch,
trec_eval's nDCG@10 / Recall@k (ragcun.eval.in_process), isotropy — with no Ray, FAISS or pytrec_eval: for a
GPU image that has torch and transformers only, where the whole grid takes minutes. The JSON has the shape of
jobs/evaluate.py's (variants with metrics, isotropy and per-query nDCG@10), so bench/gaussian_table.py reads it.

    python bench/gaussian_local.py --train_data runs/scifact/data/train.json \
        --test_data runs/scifact/data/test_eval.json --output_dim 0 --head_init scale --learn_scale \
        --distance_scale batch --temperature 0.1 --lambda_isotropy 0.1 --lambda_variance 0 --epochs 2 \
        --batch_size 32 --learning_rate 2e-5 --head_learning_rate 2e-4 --warmup_steps 6 --seed 42 \
        --device cuda --output_file bench/results/gaussian/gauss_scale_iso0.1_tau0.1_e2_s42.json

Every training flag of jobs/train.py applies (the same dataclasses); --batch_size is the whole batch here.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ragcun.cli import run_main  # noqa: E402
from ragcun.config import LossConfig, ModelConfig, TrainConfig, TrainJobConfig  # noqa: E402
from ragcun.flags import add_flags, from_args  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(p, ModelConfig, LossConfig, TrainConfig)
    p.add_argument("--test_data", required=True, help="test_eval.json (jobs/prepare_data.py) or a BEIR folder")
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.add_argument("--distance", nargs="+", choices=["l2", "ip", "cosine"], default=["l2", "cosine"])
    p.add_argument("--name", default=None, help="the run's name in the JSON (default: the output file's stem)")
    p.add_argument("--output_file", required=True)
    return p


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        job = TrainJobConfig(model=from_args(ModelConfig, a), loss=from_args(LossConfig, a),
                             train=from_args(TrainConfig, a))
    except ValueError as exc:
        parser.error(str(exc))
    from ragcun.data.io import write_json
    from ragcun.data.retrieval_sets import load_beir, read_test_eval
    from ragcun.eval.in_process import exact_search, mean_metrics, per_query_metrics
    from ragcun.eval.isotropy import isotropy_report
    from ragcun.train.local import train_in_process

    test = load_beir(a.test_data) if Path(a.test_data).is_dir() else read_test_eval(a.test_data)
    name = a.name or Path(a.output_file).stem
    started = time.perf_counter()
    model, history = train_in_process(job, a.device)
    train_s = time.perf_counter() - started
    corpus = model.encode(test.corpus_texts, "document", batch_size=256, show_progress_bar=False)
    queries = model.encode(test.query_texts, "query", batch_size=256, show_progress_bar=False)
    isotropy = isotropy_report(corpus)
    variants = []
    for distance in dict.fromkeys(a.distance):
        ids = exact_search(corpus, queries, 100, distance, a.device)
        ranked = {q: [test.corpus_ids[i] for i in row] for q, row in zip(test.query_ids, ids)}
        per_query = per_query_metrics(test.qrels, ranked)
        variants.append({"name": f"{name} ({distance})", "model": name, "distance": distance,
                         "metrics": mean_metrics(per_query), "isotropy": isotropy,
                         "per_query": {"ndcg@10": {q: round(v["ndcg@10"], 6) for q, v in per_query.items()}}})
        print(f"{name} ({distance}): nDCG@10 {variants[-1]['metrics']['ndcg@10']:.4f}, "
              f"Epps–Pulley {isotropy['epps_pulley']:.1f}", file=sys.stderr)
    write_json({"data": test.source, "model": name, "device": str(a.device), "job": job.to_dict(),
                "timing": {"train_s": round(train_s, 1), "total_s": round(time.perf_counter() - started, 1)},
                "training_log": history, "variants": variants}, a.output_file)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
