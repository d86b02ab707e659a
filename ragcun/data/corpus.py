"""Reading a corpus to index: JSONL / JSON / Parquet records or one document per line, from a file, a folder
or a BEIR folder, validated once in the driver (errors name the file, line and field) and streamed with Ray
Data for encoding. A record's text is its title and text joined (:func:`ragcun.data.io.document_text`,
as everywhere in ragcun); an empty document is skipped with one warning, or refused when strict.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ragcun.data.io import document_text, iter_jsonl, read_json_dataset, read_records
from ragcun.data.retrieval_sets import warn_empty_documents
from ragcun.errors import DataError

CORPUS_SUFFIXES = (".jsonl", ".json", ".parquet", ".txt")
ID_FIELDS = ("_id", "id", "doc_id")
READ_CPUS = 0.25  # per read / normalise task: whole-CPU reads starve a 2-CPU machine


def corpus_files(path: str | os.PathLike) -> list[Path]:
    """The corpus file(s) at ``path``: a file, a BEIR folder (``corpus.jsonl``) or a folder of corpus files."""
    path = Path(path)
    if path.is_dir():
        if (path / "corpus.jsonl").is_file():
            return [path / "corpus.jsonl"]
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in CORPUS_SUFFIXES)
        if not files:
            raise DataError(f"no corpus files ({', '.join(CORPUS_SUFFIXES)}) and no corpus.jsonl in directory", path)
    else:
        if not path.is_file():
            raise DataError("no such file", path)
        files = [path]
    for f in files:
        if f.suffix.lower() not in CORPUS_SUFFIXES:
            raise DataError(f"unsupported corpus file type '{f.suffix}' (expected {', '.join(CORPUS_SUFFIXES)})", f)
    if len({f.suffix.lower() for f in files}) > 1:
        raise DataError("mixed corpus file types in one directory", path)
    return files


class EmptyDocument(ValueError):
    """A corpus record whose title and text are both empty (skipped unless the build is strict)."""

    def __init__(self, doc_id: str):
        super().__init__("field 'text': empty text (and no title)")
        self.doc_id = doc_id


def normalise_record(record: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """(id, text, metadata) of a corpus record: id from ``_id``/``id``/``doc_id``, text = title + ' ' + text,
    every other field (and the title) kept as metadata. Raises ValueError naming the bad field."""
    doc_id = next((record[k] for k in ID_FIELDS if record.get(k) not in (None, "")), None)
    if doc_id is None:
        raise ValueError("field '_id': missing (each record needs an '_id' or 'id'; a .txt corpus gets line ids)")
    text = record.get("text")
    if not isinstance(text, str):
        raise ValueError("field 'text': missing or not a string")
    title = record.get("title")
    if title is not None and not isinstance(title, str):
        raise ValueError("field 'title': not a string")
    full = document_text(title, text)
    if not full:
        raise EmptyDocument(str(doc_id))
    metadata = {k: v for k, v in record.items() if k not in (*ID_FIELDS, "text", "__record__") and v is not None}
    return str(doc_id), full, metadata


def validate_corpus(files: list[Path], on_text: Callable[[str], None] | None = None, strict: bool = False) -> int:
    """Stream the corpus once in the driver: the first malformed record stops the build with its file, line
    and field, before any encoding. Returns the number of documents indexed. Ids must be unique. ``on_text``
    sees every indexed document's text in corpus order (the embedding cache's digest). Empty documents are
    skipped with one warning per file (the Ray Data read drops them too), or refused when ``strict``."""
    seen: set[str] = set()
    count = 0
    for path in files:
        suffix = path.suffix.lower()
        if suffix == ".txt":
            with open(path, encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        count += 1
                        if on_text is not None:
                            on_text(line.strip())
            continue
        if suffix == ".jsonl":
            records: Any = iter_jsonl(path)
        elif suffix == ".json":
            records = read_records(path)
        else:
            records = _parquet_records(path)
        empty: list[tuple[int | None, str]] = []
        for line, record in records:
            where = {"line": line} if line is not None else {}
            prefix = "" if line is not None else f"record {record.get('__record__', '?')}: "
            try:
                doc_id, text, _ = normalise_record(record)
                json.dumps(record, default=str)
            except EmptyDocument as exc:
                if strict:
                    raise DataError(prefix + str(exc), path, **where) from exc
                doc_id, text = exc.doc_id, None
            except ValueError as exc:
                raise DataError(prefix + str(exc), path, **where) from exc
            if doc_id in seen:
                raise DataError(f"{prefix}field 'id': duplicate document id {doc_id!r}", path, **where)
            seen.add(doc_id)
            if text is None:
                empty.append((line, doc_id))
                continue
            count += 1
            if on_text is not None:
                on_text(text)
        warn_empty_documents(path, empty)
    if count == 0:
        raise DataError("empty corpus", files[0])
    return count


def _parquet_records(path: Path):
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise DataError(f"cannot read Parquet ({exc})", path) from exc
    row = 0
    for batch in parquet.iter_batches(batch_size=4096):
        for record in batch.to_pylist():
            yield None, {**record, "__record__": row}
            row += 1


def read_corpus_dataset(files: list[Path]):
    """A Ray Dataset of the corpus with columns id, text, metadata (JSON text)."""
    import ray.data

    suffix = files[0].suffix.lower()
    paths = [str(f.resolve()) for f in files]
    if suffix == ".txt":
        # One document per line; ids are the 0-based positions of the non-blank lines, as GaussianRetriever's.
        texts = [line.strip() for f in files for line in open(f, encoding="utf-8") if line.strip()]
        return ray.data.from_items([{"id": str(i), "text": t, "metadata": "{}"} for i, t in enumerate(texts)])
    if suffix == ".parquet":
        raw = ray.data.read_parquet(paths, num_cpus=READ_CPUS)
    else:
        raw = read_json_dataset(paths, lines=suffix == ".jsonl", num_cpus=READ_CPUS)
    return raw.map_batches(_normalise_batch, batch_format="pyarrow", num_cpus=READ_CPUS)


def _normalise_batch(table):
    """Arrow batch (types kept: an int stays an int) → id, text, metadata columns."""
    import pyarrow as pa

    ids, texts, metadata = [], [], []
    for record in table.to_pylist():
        try:
            doc_id, text, meta = normalise_record(record)
        except EmptyDocument:
            continue  # counted and reported by validate_corpus
        ids.append(doc_id)
        texts.append(text)
        metadata.append(json.dumps(meta, ensure_ascii=False, default=str))
    return pa.table({"id": pa.array(ids, pa.string()), "text": pa.array(texts, pa.string()),
                     "metadata": pa.array(metadata, pa.string())})
