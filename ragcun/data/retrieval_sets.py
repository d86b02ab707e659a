"""Retrieval evaluation sets: a corpus, queries and relevance judgements.

Two on-disk forms are read:

* a BEIR folder (Thakur et al. 2021): ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl``
  (``_id``, ``text``) and ``qrels/<split>.tsv`` (header ``query-id corpus-id score``);
* the seed's ``test_eval.json``: ``{"corpus": [text, ...], "queries": [text, ...], "relevance": [[corpus
  index, ...], ...]}``, which ragcun writes with ``corpus_ids`` and ``query_ids`` beside them.
  ``{"corpus": {id: text}, "queries": {id: text}, "qrels": {qid: {docid: score}}}`` is accepted too.

A BEIR document's text is ``title + " " + text`` (the convention of the published MTEB figures).
"""

from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ragcun.data.io import document_text, iter_jsonl, write_json
from ragcun.errors import DataError

logger = logging.getLogger(__name__)


@dataclass
class RetrievalSet:
    corpus_ids: list[str]
    corpus_texts: list[str]
    query_ids: list[str]
    query_texts: list[str]
    qrels: dict[str, dict[str, int]]
    source: str = ""
    corpus_titles: list[str] = field(default_factory=list)
    # Judged documents left out of the corpus (empty): relevant for the metrics, never retrievable.
    skipped_corpus_ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.corpus_ids) != len(self.corpus_texts) or len(self.query_ids) != len(self.query_texts):
            raise DataError("ids and texts differ in length", self.source or None)
        if not self.corpus_ids:
            raise DataError("empty corpus", self.source or None)

    def to_test_eval(self) -> dict[str, Any]:
        """The seed's test_eval.json layout, with ids kept beside the texts."""
        position = {d: i for i, d in enumerate(self.corpus_ids)}
        return {
            "corpus": self.corpus_texts,
            "corpus_ids": self.corpus_ids,
            "queries": self.query_texts,
            "query_ids": self.query_ids,
            "relevance": [sorted(position[d] for d, s in self.qrels.get(q, {}).items() if s > 0 and d in position)
                          for q in self.query_ids],
            "qrels": self.qrels,
            "skipped_corpus_ids": self.skipped_corpus_ids,
        }


class BeirCorpus(NamedTuple):
    ids: list[str]
    texts: list[str]  # title + " " + text
    titles: list[str]
    skipped_ids: list[str]  # documents whose title and text are both empty


def warn_empty_documents(path: str | os.PathLike, skipped: list[tuple[int | None, str]]) -> None:
    """One warning for all the empty documents of a corpus (BEIR, ir_datasets and pyserini index them too)."""
    if skipped:
        line, doc_id = skipped[0]
        where = f"line {line}, " if line is not None else ""
        logger.warning("%s: skipped %d document(s) whose title and text are both empty (first: %sid %r); judgements "
                       "that name them still count as relevant, and they can never be retrieved. --strict refuses "
                       "such a corpus", path, len(skipped), where, doc_id)


def load_beir_corpus(beir_dir: str | os.PathLike, strict: bool = False) -> BeirCorpus:
    """``corpus.jsonl`` as ids, texts (title + ' ' + text) and titles. A document whose title and text are
    both empty is skipped with one warning for all of them (``strict``: refused, naming its line)."""
    path = Path(beir_dir) / "corpus.jsonl"
    if not path.is_file():
        raise DataError("BEIR corpus not found (expected corpus.jsonl)", path)
    corpus = BeirCorpus([], [], [], [])
    seen: set[str] = set()
    empty: list[tuple[int | None, str]] = []
    for line, obj in iter_jsonl(path):
        doc_id, text, title = obj.get("_id"), obj.get("text"), obj.get("title") or ""
        if doc_id is None or str(doc_id) == "":
            raise DataError("missing id", path, line, "_id")
        if not isinstance(text, str):
            raise DataError("missing or non-string text", path, line, "text")
        if str(doc_id) in seen:
            raise DataError(f"duplicate document id {doc_id!r}", path, line, "_id")
        seen.add(str(doc_id))
        full = document_text(title if isinstance(title, str) else "", text)
        if not full:
            if strict:
                raise DataError("empty text (and no title)", path, line, "text")
            empty.append((line, str(doc_id)))
            corpus.skipped_ids.append(str(doc_id))
            continue
        corpus.ids.append(str(doc_id))
        corpus.texts.append(full)
        corpus.titles.append(title if isinstance(title, str) else "")
    if not corpus.ids:
        raise DataError("empty corpus", path)
    warn_empty_documents(path, empty)
    return corpus


def load_beir_queries(beir_dir: str | os.PathLike) -> dict[str, str]:
    path = Path(beir_dir) / "queries.jsonl"
    if not path.is_file():
        raise DataError("BEIR queries not found (expected queries.jsonl)", path)
    queries: dict[str, str] = {}
    for line, obj in iter_jsonl(path):
        qid, text = obj.get("_id"), obj.get("text")
        if qid is None or str(qid) == "":
            raise DataError("missing id", path, line, "_id")
        if not isinstance(text, str) or not text.strip():
            raise DataError("missing or empty text", path, line, "text")
        queries[str(qid)] = text
    return queries


def load_beir_qrels(
    beir_dir: str | os.PathLike, split: str, corpus_ids: set[str], query_ids: set[str]
) -> dict[str, dict[str, int]]:
    """``qrels/<split>.tsv``; every id must exist in the corpus / queries (an error names the line)."""
    path = Path(beir_dir) / "qrels" / f"{split}.tsv"
    if not path.is_file():
        available = sorted(p.stem for p in (Path(beir_dir) / "qrels").glob("*.tsv"))
        raise DataError(f"no qrels for split '{split}' (available: {available})", path)
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        for line_no, row in enumerate(reader, start=1):
            if not row or (line_no == 1 and row[0].strip().lower() in ("query-id", "query_id", "qid")):
                continue
            if len(row) < 3:
                raise DataError(f"expected 3 tab-separated columns (query-id corpus-id score), got {len(row)}", path, line_no)
            qid, did, score = row[0].strip(), row[1].strip(), row[2].strip()
            if qid not in query_ids:
                raise DataError(f"unknown query id {qid!r} (not in queries.jsonl)", path, line_no, "query-id")
            if did not in corpus_ids:
                raise DataError(f"unknown corpus id {did!r} (not in corpus.jsonl)", path, line_no, "corpus-id")
            try:
                qrels.setdefault(qid, {})[did] = int(float(score))
            except ValueError as exc:
                raise DataError(f"score {score!r} is not a number", path, line_no, "score") from exc
    if not qrels:
        raise DataError("no judgements", path)
    return qrels


def load_beir(beir_dir: str | os.PathLike, split: str = "test", strict: bool = False) -> RetrievalSet:
    """The queries judged in ``split``, over the whole corpus (empty documents: see :func:`load_beir_corpus`)."""
    beir_dir = Path(beir_dir)
    if not beir_dir.is_dir():
        raise DataError("BEIR folder not found", beir_dir)
    corpus = load_beir_corpus(beir_dir, strict)
    queries = load_beir_queries(beir_dir)
    qrels = load_beir_qrels(beir_dir, split, set(corpus.ids) | set(corpus.skipped_ids), set(queries))
    query_ids = [q for q in queries if q in qrels]
    return RetrievalSet(corpus.ids, corpus.texts, query_ids, [queries[q] for q in query_ids], qrels,
                        source=f"{beir_dir} ({split})", corpus_titles=corpus.titles,
                        skipped_corpus_ids=corpus.skipped_ids)


def read_test_eval(path: str | os.PathLike) -> RetrievalSet:
    """Read test_eval.json in the seed's list form or the id-keyed dict form (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file", path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"malformed JSON ({exc.msg} at column {exc.colno})", path, exc.lineno) from exc
    if not isinstance(data, dict):
        raise DataError("expected a JSON object with corpus, queries and relevance", path)
    for name in ("corpus", "queries"):
        if name not in data:
            raise DataError("missing required field", path, field=name)
    corpus, queries = data["corpus"], data["queries"]
    if isinstance(corpus, dict):
        corpus_ids = [str(k) for k in corpus]
        corpus_texts = [v if isinstance(v, str) else document_text(v.get("title"), v.get("text", "")) for v in corpus.values()]
    elif isinstance(corpus, list):
        corpus_texts = corpus
        corpus_ids = [str(i) for i in data.get("corpus_ids", range(len(corpus)))]
    else:
        raise DataError("must be a list of texts or an {id: text} object", path, field="corpus")
    if isinstance(queries, dict):
        query_ids, query_texts = [str(k) for k in queries], list(queries.values())
    elif isinstance(queries, list):
        query_texts = queries
        query_ids = [str(i) for i in data.get("query_ids", range(len(queries)))]
    else:
        raise DataError("must be a list of texts or an {id: text} object", path, field="queries")
    for name, texts in (("corpus", corpus_texts), ("queries", query_texts)):
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                raise DataError(f"entry {i} is empty or not a string", path, field=name)
    skipped = [str(d) for d in data.get("skipped_corpus_ids", [])]
    known_docs = set(corpus_ids) | set(skipped)
    if "qrels" in data and isinstance(data["qrels"], dict):
        qrels = {str(q): {str(d): int(s) for d, s in docs.items()} for q, docs in data["qrels"].items()}
        for q, docs in qrels.items():
            unknown = [d for d in docs if d not in known_docs]
            if unknown:
                raise DataError(f"query {q!r} judges unknown corpus ids {unknown[:3]}", path, field="qrels")
    elif "relevance" in data:
        relevance = data["relevance"]
        if not isinstance(relevance, list) or len(relevance) != len(query_ids):
            raise DataError(f"must be a list with one entry per query ({len(query_ids)})", path, field="relevance")
        qrels = {}
        for qid, rel in zip(query_ids, relevance):
            rel = rel if isinstance(rel, list) else [rel]
            for idx in rel:
                if not isinstance(idx, int) or not 0 <= idx < len(corpus_ids):
                    raise DataError(f"query {qid!r}: corpus index {idx!r} out of range", path, field="relevance")
                qrels.setdefault(qid, {})[corpus_ids[idx]] = 1
    else:
        raise DataError("missing required field (or 'qrels')", path, field="relevance")
    return RetrievalSet(corpus_ids, list(corpus_texts), query_ids, list(query_texts), qrels, source=str(path),
                        skipped_corpus_ids=skipped)


def write_test_eval(retrieval_set: RetrievalSet, path: str | os.PathLike) -> Path:
    return write_json(retrieval_set.to_test_eval(), path)
