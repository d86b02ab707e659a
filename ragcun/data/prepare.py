"""The data-preparation pipeline behind ``jobs/prepare_data.py``.

source → triplets → split by query → negatives (random or mined) → train / val files + test_eval.json.

Everything is computed and validated before the first file is written, and every file is written
atomically, so bad input never leaves partial output behind. ``test_eval.json`` ranks the test queries
against the *whole* document collection (every document of the source), not only the test positives.
"""

from __future__ import annotations

import hashlib
import logging
import random
from pathlib import Path
from typing import Any

from ragcun.config import PrepareConfig
from ragcun.data.io import read_documents, read_triplets, write_json, write_records
from ragcun.data.mining import mine_hard_negatives
from ragcun.data.pairs import generate_pairs
from ragcun.data.retrieval_sets import (
    RetrievalSet,
    load_beir,
    load_beir_corpus,
    load_beir_qrels,
    load_beir_queries,
)
from ragcun.data.splits import check_ratios, split_by_query
from ragcun.embedding_cache import encode_cached
from ragcun.errors import DataError

logger = logging.getLogger(__name__)


def text_id(prefix: str, text: str) -> str:
    return prefix + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


class Corpus:
    """The whole document collection of a source, in a stable order, addressable by id."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.texts: list[str] = []
        self._position: dict[str, int] = {}

    def add(self, doc_id: str, text: str) -> None:
        if doc_id in self._position:
            self.texts[self._position[doc_id]] = text
            return
        self._position[doc_id] = len(self.ids)
        self.ids.append(doc_id)
        self.texts.append(text)


def _load_source(cfg: PrepareConfig) -> tuple[list[dict[str, Any]], Corpus, str]:
    sources = [n for n in ("documents", "csv_file", "input", "beir_dir") if getattr(cfg, n)]
    if len(sources) != 1:
        raise DataError(f"give exactly one of --documents, --csv_file, --input, --beir_dir (got {sources or 'none'})")
    corpus = Corpus()
    if cfg.documents:
        if not cfg.generate_pairs:
            raise DataError("--documents needs --generate_pairs (raw documents have no queries)", cfg.documents)
        docs = read_documents(cfg.documents)
        triplets = generate_pairs(docs, cfg.num_pairs, add_negatives=False, seed=cfg.seed, source=cfg.documents,
                                  method=cfg.pair_method, pairs_per_document=cfg.pairs_per_document)
        for i, d in enumerate(docs):
            corpus.add(f"doc{i}", d)
        # The positive is the document without its query sentence; that is what a query should find.
        for t in triplets:
            corpus.add(t["positive_id"], t["positive"])
        return triplets, corpus, cfg.documents
    if cfg.num_pairs is not None or cfg.generate_pairs:
        raise DataError("--generate_pairs/--num_pairs apply to --documents only")
    if cfg.beir_dir:
        beir = Path(cfg.beir_dir)
        beir_corpus = load_beir_corpus(beir, cfg.strict)
        for d, t in zip(beir_corpus.ids, beir_corpus.texts):
            corpus.add(d, t)
        queries = load_beir_queries(beir)
        qrels = load_beir_qrels(beir, cfg.beir_split, set(beir_corpus.ids) | set(beir_corpus.skipped_ids),
                                set(queries))
        # A judgement of a skipped (empty) document makes no training pair: there is no text to learn from.
        triplets = [
            {"query": queries[q], "positive": corpus.texts[corpus._position[d]], "query_id": q, "positive_id": d}
            for q, docs in qrels.items() for d, score in docs.items() if score > 0 and d in corpus._position
        ]
        return triplets, corpus, str(beir)
    path = cfg.csv_file or cfg.input
    triplets = read_triplets(path)
    for t in triplets:
        t.setdefault("query_id", text_id("q", t["query"]))
        for role in ("positive", "negative"):
            if role in t:
                t.setdefault(f"{role}_id", text_id("d", t[role]))
                corpus.add(t[f"{role}_id"], t[role])
    return triplets, corpus, str(path)


def attach_positive_sets(triplets: list[dict[str, Any]]) -> None:
    """Give every triplet ``positive_ids``: the ids of all its query's positives (sorted). Training masks
    them all out of the query's negatives, so a query's other relevant document, met as another row's
    positive or as a mined negative, is never pushed away."""
    positives: dict[str, set[str]] = {}
    for t in triplets:
        if t.get("query_id") is not None and t.get("positive_id") is not None:
            positives.setdefault(str(t["query_id"]), set()).add(str(t["positive_id"]))
    for t in triplets:
        if t.get("query_id") is not None and str(t["query_id"]) in positives:
            t["positive_ids"] = sorted(positives[str(t["query_id"])])


def _random_negatives(triplets: list[dict[str, Any]], corpus: Corpus, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    positives: dict[str, set[str]] = {}
    for t in triplets:
        positives.setdefault(t["query_id"], set()).add(t["positive_id"])
    out = []
    for t in triplets:
        if "negative" in t:
            out.append(t)
            continue
        skip = positives[t["query_id"]]
        if len(skip) >= len(corpus.ids):
            raise DataError("cannot draw a negative: every document is a positive of this query")
        neg = rng.randrange(len(corpus.ids))
        while corpus.ids[neg] in skip:
            neg = rng.randrange(len(corpus.ids))
        out.append({**t, "negative": corpus.texts[neg], "negative_id": corpus.ids[neg]})
    return out


def _test_eval(test: list[dict[str, Any]], corpus: Corpus, source: str) -> RetrievalSet:
    qrels: dict[str, dict[str, int]] = {}
    query_text: dict[str, str] = {}
    for t in test:
        qrels.setdefault(t["query_id"], {})[t["positive_id"]] = 1
        query_text[t["query_id"]] = t["query"]
    qids = list(qrels)
    return RetrievalSet(corpus.ids, corpus.texts, qids, [query_text[q] for q in qids], qrels, source=source)


def prepare(cfg: PrepareConfig, model: Any = None) -> dict[str, Any]:
    """Run the pipeline; returns a summary (paths written and counts). ``model`` is used for mining."""
    if cfg.split is not None:
        cfg.split = check_ratios(cfg.split)
    if cfg.format not in ("json", "jsonl", "parquet"):
        raise DataError(f"--format must be json, jsonl or parquet, got {cfg.format!r}")
    if cfg.num_pairs is not None and cfg.num_pairs <= 0:
        raise DataError(f"--num_pairs must be positive, got {cfg.num_pairs}")
    triplets, corpus, source = _load_source(cfg)
    attach_positive_sets(triplets)
    logger.info("%s: %d query/positive pairs over a collection of %d documents", source, len(triplets), len(corpus.ids))
    if cfg.generate_pairs:
        logger.info("synthetic pairs: jobs/train.py trains them at --learning_rate 5e-6 --head_learning_rate 5e-5 "
                    "unless told otherwise (prepare_summary.json marks them), the rates that measured level with the "
                    "untrained model on real queries (docs/data.md, 'Raw documents alone')")

    eval_set: RetrievalSet | None = None
    if cfg.split is not None:
        if cfg.beir_eval_split and cfg.split[2] > 0:
            raise DataError("--beir_eval_split gives the test set: set the test ratio of --split to 0")
        train, val, test = split_by_query(triplets, cfg.split, seed=cfg.seed, shuffle=cfg.shuffle)
        if not train:
            raise DataError(f"the train split is empty ({len(triplets)} records, --split {list(cfg.split)})")
        if test:
            eval_set = _test_eval(test, corpus, source)
    else:
        train, val = triplets, []
    if cfg.beir_eval_split:
        if not cfg.beir_dir:
            raise DataError("--beir_eval_split needs --beir_dir")
        eval_set = load_beir(cfg.beir_dir, cfg.beir_eval_split, cfg.strict)

    mining_stats = None
    if cfg.mine_negatives:
        if model is None:
            from ragcun.model import load_model

            model = load_model(base_model=cfg.base_model, output_dim=None)
        from ragcun.encoder_pool import encode_texts
        from ragcun.openvino_encoder import with_backend

        model = with_backend(model, cfg.encoders.encoder_backend, corpus.texts, cfg.encoders.use_gpu)

        # The corpus through the Ray Data encoder pool (as jobs/build_index.py); the queries, few, in process.
        corpus_embeddings = encode_cached(
            model, corpus.texts, "document", cfg.batch_size, cfg.cache_dir,
            encode=lambda texts: encode_texts(texts, model, cfg.encoders, cfg.batch_size))

        def mine(part: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
            without_negatives = [{k: v for k, v in t.items() if not k.startswith("negative")} for t in part]
            return mine_hard_negatives(
                without_negatives, corpus.ids, corpus.texts, model, num_negatives=cfg.num_negatives,
                range_max=cfg.mining_range_max, relative_margin=cfg.mining_relative_margin,
                sampling=cfg.mining_sampling, batch_size=cfg.batch_size, seed=cfg.seed,
                corpus_embeddings=corpus_embeddings)

        train, mining_stats = mine(train)
        if val:
            val, _ = mine(val)
    elif cfg.add_negatives:
        train = _random_negatives(train, corpus, cfg.seed)
        val = _random_negatives(val, corpus, cfg.seed + 1)

    out_dir = Path(cfg.output_dir)
    written: dict[str, str] = {}
    if cfg.split is None and not cfg.beir_eval_split:
        target = Path(cfg.output) if cfg.output else out_dir / f"train.{cfg.format}"
        written["train"] = str(write_records(train, target))
    else:
        written["train"] = str(write_records(train, out_dir / f"train.{cfg.format}"))
        if val:
            written["val"] = str(write_records(val, out_dir / f"val.{cfg.format}"))
        if eval_set is not None:
            written["test_eval"] = str(write_json(eval_set.to_test_eval(), out_dir / "test_eval.json"))
    summary = {
        "source": source,
        "counts": {"train": len(train), "val": len(val), "test_queries": len(eval_set.query_ids) if eval_set else 0,
                   "corpus": len(corpus.ids)},
        "files": written,
        "mining": mining_stats,
        "config": cfg.to_dict(),
    }
    summary_dir = Path(written["train"]).parent
    written["summary"] = str(write_json(summary, summary_dir / "prepare_summary.json"))
    return summary
