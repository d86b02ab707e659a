"""The evaluation job (``jobs/evaluate.py``) as a library call: an :class:`~ragcun.config.EvalConfig` in,
the metrics JSON out, in one visible order — read the retrieval set, load the models, lay out the variants
(each model × each distance, baselines, rotations, hybrids, BM25), check the compressed index types before any
encoding, evaluate, write the JSON, the TREC run and the report."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ragcun.config import EvalConfig
from ragcun.data.retrieval_sets import RetrievalSet
from ragcun.eval.compare import Variant

logger = logging.getLogger(__name__)


class Evaluation(NamedTuple):
    output: dict[str, Any]  # the metrics JSON: the first variant's measures at the top, all under "variants"
    table: str  # the variants side by side (markdown)
    report: Path | None  # the report folder, when one was asked for


def build_variants(config: EvalConfig, corpus_texts: Sequence[str] = ()) -> list[Variant]:
    """Every ranking the job evaluates, in the order of its table: each checkpoint by each distance, then the
    base model's baselines, the rotated copies, the hybrids and BM25. Every model runs on ``--encoder_backend``
    (int8 calibrated on ``corpus_texts``, the documents to rank, for each model), so a comparison is made
    within one backend."""
    from ragcun.model import load_encoder
    from ragcun.openvino_encoder import with_backend

    lengths = {"max_query_length": config.max_query_length, "max_doc_length": config.max_doc_length}
    distances = list(config.distance)

    def named(name: str, distance: str) -> str:
        return name if len(distances) == 1 else f"{name} ({distance})"

    variants: list[Variant] = []
    for name, path in config.checkpoints():
        model = with_backend(load_encoder(path, **lengths), config.encoder_backend, corpus_texts)
        training_dir = Path(path).resolve().parent
        has_history = (training_dir / "training.log").exists() or (training_dir / "metrics.json").exists()
        variants += [Variant(named(name, distance), model, distance, source=path,  # training curves drawn once
                             training_dir=training_dir if has_history and i == 0 else None)
                     for i, distance in enumerate(distances)]
    base_name = config.base_model or (variants[0].model.config.base_model if variants else None)
    if config.base_model or set(config.baselines) - {"bm25"}:
        base = with_backend(load_encoder(None, base_name, config.pooling, **lengths), config.encoder_backend,
                            corpus_texts)
        if not config.model_path:
            variants += [Variant(named("base", distance), base, distance, source=base_name) for distance in distances]
        if "base" in config.baselines:
            variants.append(Variant("base", base, config.baseline_distance, source=base_name))
        if "whitening" in config.baselines:
            variants.append(Variant("base + whitening", base, config.baseline_distance, whiten=True,
                                    source=base_name))
    if config.rotate:
        variants += [Variant(f"{v.name} + rotation", v.model, v.distance, rotate=True, source=v.source)
                     for v in list(variants) if not v.whiten]
    if config.hybrid:
        fusion = "RRF" if config.fusion == "rrf" else f"convex α {config.hybrid_alpha:g}"
        variants += [Variant(f"{v.name} + BM25 ({fusion})", v.model, v.distance, mode="hybrid",
                             fusion=config.fusion, alpha=config.hybrid_alpha, source=v.source)
                     for v in list(variants) if not v.whiten and not v.rotate]
    if "bm25" in config.baselines:
        variants.append(Variant("BM25", None, mode="bm25", source="bm25s"))
    return variants


def check_compressed_indexes(config: EvalConfig, variants: list[Variant], num_documents: int) -> None:
    """An index type that cannot be built for some variant fails now, not after the corpus is encoded."""
    from ragcun.errors import RagcunError
    from ragcun.index.build import check_index_type

    for index_type in config.compress:
        for v in {(v.model.output_dim, v.distance): v for v in variants if v.model is not None}.values():
            try:
                check_index_type(index_type, v.model.output_dim, v.distance, num_documents, config.int8_range,
                                 config.rescore_multiplier)
            except ValueError as exc:
                raise RagcunError(str(exc).replace("--index_type", "--compress")) from exc


def load_retrieval_set(config: EvalConfig) -> RetrievalSet:
    from ragcun.data.retrieval_sets import load_beir, read_test_eval

    return load_beir(config.beir_dir, config.split, config.strict) if config.beir_dir else read_test_eval(config.test_data)


def run_evaluation(config: EvalConfig) -> Evaluation:
    """Evaluate every variant, write the files ``config`` names, and return what was measured."""
    from ragcun.data.io import write_json
    from ragcun.eval.compare import evaluate_variants, results_table
    from ragcun.eval.retrieval import write_trec_run
    from ragcun.openvino_encoder import check_backend

    if config.report:
        from ragcun.eval.report import check_report_output

        check_report_output(config.report)  # before any encoding: never replace a folder ragcun did not write
    retrieval_set = load_retrieval_set(config)
    variants = build_variants(config, retrieval_set.corpus_texts)
    num_documents = len(retrieval_set.corpus_ids)
    check_compressed_indexes(config, variants, num_documents)
    if config.top_k > num_documents:
        logger.warning("--top_k %d > corpus size %d: retrieving the whole corpus", config.top_k, num_documents)
    logger.info("evaluating %s on %s: %d queries, %d documents", ", ".join(v.name for v in variants),
                retrieval_set.source, len(retrieval_set.query_ids), num_documents)
    results = evaluate_variants(variants, retrieval_set, compress=config.compress, batch_size=config.batch_size,
                                top_k=config.top_k, cache_dir=config.cache_dir, int8_range=config.int8_range,
                                rescore_multiplier=config.rescore_multiplier)
    primary = results[0]
    date = time.strftime("%Y-%m-%dT%H:%M:%S")
    output = {
        "metrics": primary.metrics,
        "model": primary.source,
        "data": retrieval_set.source,
        "distance": primary.distance,
        "encoder_backend": check_backend(config.encoder_backend),
        "top_k": config.top_k,
        "isotropy": primary.isotropy,
        "compression": primary.compression,
        "timing": primary.timing,
        "date": date,
        "variants": [r.to_dict() for r in results],
    }
    if config.output_file:
        out = Path(config.output_file)
        write_json(output, out)
        write_trec_run(primary.run, config.run_file or out.with_suffix(".run"), tag=Path(primary.source).name)
    elif config.run_file:
        write_trec_run(primary.run, config.run_file)
    report = None
    if config.report:
        from ragcun.eval.report import write_report

        meta = {"data": retrieval_set.source, "num_queries": len(retrieval_set.query_ids),
                "num_documents": num_documents, "top_k": config.top_k, "date": date}
        report = write_report(results, config.report, meta)
    return Evaluation(output, results_table(results), report)
