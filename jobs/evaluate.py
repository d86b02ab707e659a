#!/usr/bin/env python3
"""Evaluate ragcun checkpoints (or an untrained backbone) on a retrieval set: Recall@1/5/10/20/50/100,
MRR@10, MRR, nDCG@10 and MAP@100 with trec_eval's definitions (pytrec_eval), the isotropy of the corpus
embeddings, optionally nDCG@10 over compressed FAISS indexes, a TREC run file, and a report with plots.

    python jobs/evaluate.py --model_path checkpoints/best_model.pt --test_data data/processed/test_eval.json
    python jobs/evaluate.py --base_model sentence-transformers/all-MiniLM-L6-v2 --beir_dir data/scifact \
        --split test --distance cosine --output_file results/minilm_scifact.json
    python jobs/evaluate.py --model_path trained=runs/x/best_model.pt --test_data test_eval.json \
        --baselines base whitening --compress sq8 ivfpq --report runs/x/report

Several --model_path values (each optionally NAME=PATH) are evaluated side by side; --baselines adds the
checkpoints' base model as is (cosine) and whitened (BERT-whitening fitted on the corpus).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ragcun.cli import run_main  # noqa: E402

BASELINES = ("base", "whitening", "bm25")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_path", nargs="+", default=[], metavar="[NAME=]PATH", help="ragcun checkpoint(s) (.pt)")
    p.add_argument("--base_model", help="an untrained backbone (hub id or folder): evaluated as is when no "
                   "--model_path is given, else the model of --baselines")
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument("--test_data", help="test_eval.json written by jobs/prepare_data.py")
    data.add_argument("--beir_dir", help="a BEIR folder (corpus.jsonl, queries.jsonl, qrels/)")
    p.add_argument("--split", default="test", help="BEIR qrels split (default: test)")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--top_k", type=int, default=100, help="documents retrieved per query (default: 100)")
    p.add_argument("--distance", choices=["l2", "ip", "cosine"], nargs="+", default=["l2"],
                   help="ranking distance(s) of the evaluated model(s) (default: l2, the Gaussian model's); "
                        "several: each model ranked by each, encoded once")
    p.add_argument("--baselines", nargs="*", choices=BASELINES, default=[],
                   help="also evaluate the base model as is and/or whitened, ranked by --baseline_distance")
    p.add_argument("--baseline_distance", choices=["l2", "ip", "cosine"], default="cosine")
    p.add_argument("--hybrid", action="store_true",
                   help="also evaluate each model fused with BM25 (--fusion, --hybrid_alpha)")
    p.add_argument("--fusion", choices=["rrf", "convex"], default="rrf",
                   help="hybrid: reciprocal-rank fusion (k 60) or a convex combination of min-max scores")
    p.add_argument("--hybrid_alpha", type=float, default=0.5, help="convex fusion: weight of the dense score")
    p.add_argument("--compress", nargs="*", default=[], metavar="INDEX_TYPE",
                   help="also search compressed indexes: sq8, int8 (fixed range), binary (sign bits, rescored), "
                        "binary-hamming, ivfpq (16x), ivfpq32, or FAISS factory strings")
    p.add_argument("--int8_range", type=float, default=4.0, help="--compress int8: the range [-r, r]")
    p.add_argument("--rescore_multiplier", type=int, default=10,
                   help="--compress binary: rescore the top k x M Hamming candidates")
    p.add_argument("--rotate", action="store_true",
                   help="also evaluate each model centred and randomly rotated (a free baseline for "
                        "quantisation: the ranking is unchanged, the coordinates balanced)")
    p.add_argument("--pooling", choices=["mean", "cls", "last"], default="mean", help="with --base_model")
    p.add_argument("--max_query_length", type=int, default=None, help="override the model's query max tokens")
    p.add_argument("--max_doc_length", type=int, default=None, help="override the model's document max tokens")
    p.add_argument("--cache_dir", default=None, help="embedding cache shared with jobs/prepare_data.py and jobs/build_index.py")
    p.add_argument("--output_file", default=None, help="metrics JSON")
    p.add_argument("--run_file", default=None, help="TREC run file (default: beside --output_file)")
    p.add_argument("--report", default=None, metavar="DIR",
                   help="write metrics.json, report.md, report.html and PNG plots into DIR")
    p.add_argument("--strict", action="store_true",
                   help="refuse a corpus with a document whose title and text are both empty (default: skip "
                        "such documents with one warning)")
    a = p.parse_args(argv)
    if not a.model_path and not a.base_model:
        p.error("give --model_path and/or --base_model")
    if a.baselines and not a.model_path and "base" in a.baselines:
        a.baselines = [b for b in a.baselines if b != "base"]  # the evaluated model already is the base
    if a.top_k < 1:
        p.error("--top_k must be >= 1")
    if not 0.0 <= a.hybrid_alpha <= 1.0:
        p.error("--hybrid_alpha must be in [0, 1]")
    if a.batch_size < 1:
        p.error("--batch_size must be >= 1")
    a.checkpoints = [_labelled(entry) for entry in a.model_path]
    if len({name for name, _ in a.checkpoints}) != len(a.checkpoints):
        p.error("--model_path: two checkpoints share a name; label them NAME=PATH")
    return a


def _labelled(entry: str) -> tuple[str, str]:
    """NAME=PATH, or PATH named after its folder (runs/minilm_iso0/best_model.pt → minilm_iso0)."""
    name, sep, path = entry.partition("=")
    if sep and name and "/" not in name:
        return name, path
    parent = Path(entry).resolve().parent.name
    return parent or Path(entry).stem, entry


def main(argv: list[str] | None = None) -> int:
    from ragcun.data.retrieval_sets import load_beir, read_test_eval
    from ragcun.errors import RagcunError
    from ragcun.eval.compare import Variant, evaluate_variants, results_table
    from ragcun.eval.retrieval import write_trec_run
    from ragcun.index.build import check_index_type
    from ragcun.model import load_encoder

    a = parse_args(argv)
    if a.report:
        from ragcun.eval.report import check_report_output

        check_report_output(a.report)  # before any encoding: never replace a folder ragcun did not write
    retrieval_set = load_beir(a.beir_dir, a.split, a.strict) if a.beir_dir else read_test_eval(a.test_data)
    lengths = {"max_query_length": a.max_query_length, "max_doc_length": a.max_doc_length}
    distances = list(dict.fromkeys(a.distance))

    def named(name: str, distance: str) -> str:
        return name if len(distances) == 1 else f"{name} ({distance})"

    variants = []
    for name, path in a.checkpoints:
        model = load_encoder(path, **lengths)
        training_dir = Path(path).resolve().parent
        has_history = (training_dir / "training.log").exists() or (training_dir / "metrics.json").exists()
        variants += [Variant(named(name, distance), model, distance, source=path,  # training curves drawn once
                             training_dir=training_dir if has_history and i == 0 else None)
                     for i, distance in enumerate(distances)]
    base_name = a.base_model or (variants[0].model.config.base_model if variants else None)
    if a.base_model or set(a.baselines) - {"bm25"}:
        base = load_encoder(None, base_name, a.pooling, **lengths)
        if not a.model_path:
            variants += [Variant(named("base", distance), base, distance, source=base_name) for distance in distances]
        if "base" in a.baselines:
            variants.append(Variant("base", base, a.baseline_distance, source=base_name))
        if "whitening" in a.baselines:
            variants.append(Variant("base + whitening", base, a.baseline_distance, whiten=True, source=base_name))
    if a.rotate:
        variants += [Variant(f"{v.name} + rotation", v.model, v.distance, rotate=True, source=v.source)
                     for v in list(variants) if not v.whiten]
    if a.hybrid:
        fusion = "RRF" if a.fusion == "rrf" else f"convex α {a.hybrid_alpha:g}"
        variants += [Variant(f"{v.name} + BM25 ({fusion})", v.model, v.distance, mode="hybrid", fusion=a.fusion,
                             alpha=a.hybrid_alpha, source=v.source)
                     for v in list(variants) if not v.whiten and not v.rotate]
    if "bm25" in a.baselines:
        variants.append(Variant("BM25", None, mode="bm25", source="bm25s"))
    for index_type in a.compress:  # an unknown index type fails now, not after encoding the corpus
        for v in {(v.model.output_dim, v.distance): v for v in variants if v.model is not None}.values():
            try:
                check_index_type(index_type, v.model.output_dim, v.distance, len(retrieval_set.corpus_ids),
                                 a.int8_range, a.rescore_multiplier)
            except ValueError as exc:
                raise RagcunError(str(exc).replace("--index_type", "--compress")) from exc
    if a.top_k > len(retrieval_set.corpus_ids):
        print(f"note: --top_k {a.top_k} > corpus size {len(retrieval_set.corpus_ids)}; retrieving the whole corpus",
              file=sys.stderr)
    print(f"evaluating {', '.join(v.name for v in variants)} on {retrieval_set.source}: "
          f"{len(retrieval_set.query_ids)} queries, {len(retrieval_set.corpus_ids)} documents", file=sys.stderr)
    results = evaluate_variants(variants, retrieval_set, compress=tuple(a.compress), batch_size=a.batch_size,
                                top_k=a.top_k, cache_dir=a.cache_dir, int8_range=a.int8_range,
                                rescore_multiplier=a.rescore_multiplier)
    primary = results[0]
    date = time.strftime("%Y-%m-%dT%H:%M:%S")
    output = {
        "metrics": primary.metrics,
        "model": primary.source,
        "data": retrieval_set.source,
        "distance": primary.distance,
        "top_k": a.top_k,
        "isotropy": primary.isotropy,
        "compression": primary.compression,
        "timing": primary.timing,
        "date": date,
        "variants": [r.to_dict() for r in results],
    }
    print(json.dumps(output, indent=2))
    if a.output_file:
        from ragcun.data.io import write_json

        out = Path(a.output_file)
        write_json(output, out)
        write_trec_run(primary.run, a.run_file or out.with_suffix(".run"), tag=Path(primary.source).name)
    elif a.run_file:
        write_trec_run(primary.run, a.run_file)
    if a.report:
        from ragcun.eval.report import write_report

        meta = {"data": retrieval_set.source, "num_queries": len(retrieval_set.query_ids),
                "num_documents": len(retrieval_set.corpus_ids), "top_k": a.top_k, "date": date}
        report = write_report(results, a.report, meta)
        print(f"report: {report / 'report.html'} (and report.md, metrics.json, PNG plots)", file=sys.stderr)
    print("\n" + results_table(results), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
