"""Reading and writing records (JSON, JSONL, CSV, Parquet) with errors that name the file and line.

A *triplet* record is ``{"query": str, "positive": str, "negative": str (optional)}`` plus optional ids
(``query_id``, ``positive_id``, ``negative_id``). Writers are atomic: they write a temporary sibling and
rename it, so a failure never leaves a half-written file behind.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ragcun.errors import DataError
from ragcun.fs import atomic_file

TRIPLET_FIELDS = ("query", "positive", "negative")
ID_FIELDS = ("query_id", "positive_id", "negative_id")
# A group of hard negatives for one (query, positive): texts, and optionally their ids, in the same order.
GROUP_FIELDS = ("negatives", "negative_ids")


def document_text(title: str | None, text: str) -> str:
    """A document as ragcun embeds and indexes it: its title and text joined (the text alone without a title)."""
    return f"{title} {text}".strip() if title else text.strip()
RECORD_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in RECORD_SUFFIXES:
        raise DataError(f"unsupported file type '{suffix}' (expected one of {', '.join(RECORD_SUFFIXES)})", path)
    return suffix


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; a malformed line raises DataError naming it."""
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"malformed JSON ({exc.msg} at column {exc.colno})", path, line_no) from exc
            if not isinstance(obj, dict):
                raise DataError(f"expected a JSON object, got {type(obj).__name__}", path, line_no)
            yield line_no, obj


def read_records(path: str | os.PathLike) -> list[tuple[int | None, dict[str, Any]]]:
    """All records of a file as (line number or None, dict). JSON may be a list or ``{"data": [...]}``."""
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file", path)
    suffix = _suffix(path)
    if suffix == ".jsonl":
        return list(iter_jsonl(path))
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"malformed JSON ({exc.msg} at column {exc.colno})", path, exc.lineno) from exc
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list):
            raise DataError("expected a JSON list of records (or {\"data\": [...]})", path)
        out: list[tuple[int | None, dict[str, Any]]] = []
        for i, obj in enumerate(data):
            if not isinstance(obj, dict):
                raise DataError(f"record {i}: expected a JSON object, got {type(obj).__name__}", path)
            out.append((None, {**obj, "__record__": i}))
        return out
    if suffix == ".csv":
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None:
                raise DataError("empty CSV file (expected a header line)", path, 1)
            rows = []
            try:
                for row in reader:
                    if None in row:
                        raise DataError(
                            f"{len(row[None]) + len(reader.fieldnames)} values for {len(reader.fieldnames)} columns",
                            path, reader.line_num)
                    rows.append((reader.line_num, dict(row)))
            except csv.Error as exc:
                raise DataError(f"malformed CSV ({exc})", path, reader.line_num) from exc
            return rows
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise DataError(f"cannot read Parquet ({exc})", path) from exc
    return [(None, {**row, "__record__": i}) for i, row in enumerate(table.to_pylist())]


def _where(path: Path, line: int | None, record: dict[str, Any]) -> tuple[Path, int | None, str]:
    if line is not None:
        return path, line, ""
    return path, None, f"record {record.get('__record__', '?')}: "


def validate_triplets(
    rows: list[tuple[int | None, dict[str, Any]]], path: str | os.PathLike, require_negative: bool = False
) -> list[dict[str, Any]]:
    """Check every record has non-empty string ``query`` and ``positive`` (and ``negative`` if given)."""
    path = Path(path)
    if not rows:
        raise DataError("no records", path)
    out = []
    for line, record in rows:
        p, ln, prefix = _where(path, line, record)
        clean: dict[str, Any] = {}
        for name in TRIPLET_FIELDS:
            value = record.get(name)
            if value is None or (name == "negative" and value == "" and not require_negative):
                if name == "negative" and not require_negative:
                    continue
                raise DataError(f"{prefix}missing required field", p, ln, name)
            if not isinstance(value, str):
                raise DataError(f"{prefix}expected a string, got {type(value).__name__}", p, ln, name)
            if not value.strip():
                raise DataError(f"{prefix}empty text", p, ln, name)
            clean[name] = value
        for name in ID_FIELDS:
            if record.get(name) not in (None, ""):
                clean[name] = str(record[name])
        if isinstance(record.get("positive_ids"), list):  # every positive of the query (false-negative mask)
            clean["positive_ids"] = [str(i) for i in record["positive_ids"]]
        group = record.get("negatives")
        if group is not None:
            if not isinstance(group, list) or not group:
                raise DataError(f"{prefix}expected a non-empty list of texts", p, ln, "negatives")
            for i, text in enumerate(group):
                if not isinstance(text, str) or not text.strip():
                    raise DataError(f"{prefix}entry {i} is empty or not a string", p, ln, "negatives")
            clean["negatives"] = list(group)
            ids = record.get("negative_ids")
            if ids is not None:
                if not isinstance(ids, list) or len(ids) != len(group):
                    raise DataError(f"{prefix}expected a list of {len(group)} ids, one per negative", p, ln,
                                    "negative_ids")
                clean["negative_ids"] = [str(i) for i in ids]
        out.append(clean)
    return out


def read_triplets(path: str | os.PathLike, require_negative: bool = False) -> list[dict[str, Any]]:
    """Read and validate a triplet file (or every record file in a directory, in name order)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in RECORD_SUFFIXES)
        if not files:
            raise DataError(f"no {'/'.join(RECORD_SUFFIXES)} files in directory", path)
        return [t for f in files for t in read_triplets(f, require_negative)]
    rows = read_records(path)
    if path.suffix.lower() == ".csv" and rows:
        header = set(rows[0][1])
        missing = [c for c in ("query", "positive") if c not in header]
        if missing:
            raise DataError(
                f"CSV header must name the columns query,positive[,negative]; missing {missing} "
                f"(found {sorted(header)})", path, 1)
    return validate_triplets(rows, path, require_negative)


def read_documents(path: str | os.PathLike) -> list[str]:
    """Raw documents: one per line of a text file, or a JSONL/JSON/CSV/Parquet with a ``text`` field."""
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file", path)
    if path.suffix.lower() in RECORD_SUFFIXES:
        docs = []
        for line, record in read_records(path):
            p, ln, prefix = _where(path, line, record)
            text = record.get("text")
            if not isinstance(text, str):
                raise DataError(f"{prefix}missing or non-string field", p, ln, "text")
            title = record.get("title")
            full = document_text(title if isinstance(title, str) else None, text)
            if not full:
                raise DataError(f"{prefix}empty text", p, ln, "text")
            docs.append(full)
        return docs
    with open(path, encoding="utf-8") as f:
        docs = [line.strip() for line in f if line.strip()]
    if not docs:
        raise DataError("no documents (every line is blank)", path)
    return docs


def read_json_dataset(paths: list[str], lines: bool, num_cpus: float):
    """A Ray Dataset of JSON records: JSONL through Ray Data's reader; a ``.json`` list file through
    ``read_binary_files`` + ``json.loads`` (Ray's JSON reader tries pyarrow first, which reads only JSONL,
    and warns about falling back for every list file)."""
    import ray.data

    if lines:
        return ray.data.read_json(paths, lines=True, num_cpus=num_cpus)
    return ray.data.read_binary_files(paths, num_cpus=num_cpus).map_batches(
        _json_list_files_to_table, batch_size=1, batch_format="pyarrow", num_cpus=num_cpus)


def _json_list_files_to_table(batch):
    import pyarrow as pa

    records: list[dict[str, Any]] = []
    for data in batch.column("bytes").to_pylist():
        parsed = json.loads(data)
        records.extend(parsed if isinstance(parsed, list) else [parsed])
    return pa.Table.from_pylist(records)


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
    return path


def write_records(records: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write records as .json (a list, the seed's format), .jsonl or .parquet, atomically."""
    path = Path(path)
    suffix = _suffix(path)
    if suffix == ".json":
        return write_json(records, path)
    if suffix not in (".jsonl", ".parquet"):
        raise DataError("writing CSV is not supported; use .json, .jsonl or .parquet", path)
    with atomic_file(path) as tmp:
        if suffix == ".jsonl":
            with open(tmp, "w", encoding="utf-8") as f:
                for record in records:
                    f.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(records), tmp)
    return path
