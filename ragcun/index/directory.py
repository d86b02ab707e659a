"""The index directory: the on-disk format shared by ``GaussianRetriever.save`` and the Ray Data build.

An index directory holds (no pickle anywhere):

- ``index.faiss``: the FAISS index (``faiss.write_index``), row i = document i;
- ``documents.parquet``: ``id``, ``text`` and ``metadata`` (a JSON object as text) per document;
- ``model.pt``: the encoder as a ragcun checkpoint (loaded with ``torch.load(weights_only=True)``);
- ``bm25/`` (optional): the BM25 index (:mod:`ragcun.index.bm25`);
- ``manifest.json``: format, model, dimension, distance, index type, counts, the index's SHA-256 and how it
  was built.

It is assembled in a temporary sibling and renamed into place (:mod:`ragcun.fs`), so a failure leaves no
half-written index and a folder ragcun did not write is never replaced.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from ragcun.errors import DataError
from ragcun.fs import check_output_directory, replace_directory, staging_directory

MANIFEST_FORMAT = "ragcun-index"
INDEX_KIND = "index"
MANIFEST_VERSION = 1


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class IndexDirectoryWriter:
    """Writes an index directory into a temporary sibling; :meth:`commit` renames it into place.

    Use as a context manager: leaving the block without :meth:`commit` (an error) removes everything."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = check_index_output(directory)
        self.tmp = staging_directory(self.directory)
        self._writer = None
        self.num_documents = 0

    def __enter__(self) -> IndexDirectoryWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._writer is not None:
            self._writer.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def add_documents(self, ids: list[str], texts: list[str], metadata: list[str]) -> None:
        """Append documents (metadata as JSON text), in the order of the index's rows."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({"id": pa.array(ids, pa.string()), "text": pa.array(texts, pa.string()),
                          "metadata": pa.array(metadata, pa.string())})
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.tmp / "documents.parquet", table.schema)
        self._writer.write_table(table)
        self.num_documents += len(ids)

    @property
    def model_file(self) -> Path:
        return self.tmp / "model.pt"

    def commit(self, index: Any, manifest: dict[str, Any]) -> Path:
        """Write the index and the manifest, then move the directory into place (replacing an old one)."""
        from ragcun.index.faiss_index import save_index, to_cpu

        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self.num_documents == 0:
            raise ValueError("an index directory needs at least one document")
        if index.ntotal != self.num_documents:
            raise ValueError(f"index holds {index.ntotal} vectors for {self.num_documents} documents")
        save_index(to_cpu(index), self.tmp / "index.faiss")
        manifest = {"format": MANIFEST_FORMAT, "format_version": MANIFEST_VERSION, **manifest,
                    "num_documents": self.num_documents, "index_sha256": file_sha256(self.tmp / "index.faiss")}
        (self.tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        return replace_directory(self.tmp, self.directory, INDEX_KIND, is_index_directory)


def is_index_directory(directory: Path) -> bool:
    """An index directory written before output markers existed: its manifest names the format."""
    try:
        return json.loads((directory / "manifest.json").read_text()).get("format") == MANIFEST_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def check_index_output(directory: str | os.PathLike) -> Path:
    """Refuse, before any work, an output path that holds something other than a ragcun index."""
    return check_output_directory(directory, INDEX_KIND, is_index_directory)


def build_manifest(model: Any, *, distance: str, index_type: str, num_vectors: int, int8_range: float,
                   rescore_multiplier: int, bm25: bool, model_path: str | None, include_model: bool = True,
                   **extra: Any) -> dict[str, Any]:
    """What an index directory's manifest says about its model and index (``GaussianRetriever.save`` and the
    Ray Data build alike); :meth:`IndexDirectoryWriter.commit` adds the format, counts and checksum."""
    from ragcun.index.faiss_index import factory_string

    key = index_type.lower()
    loading = {"int8": {"int8_range": int8_range}, "binary": {"rescore_multiplier": rescore_multiplier}}.get(key, {})
    return {
        "model": {"checkpoint": "model.pt" if include_model else None, "model_path": model_path,
                  "base_model": model.config.base_model, "output_dim": model.output_dim},
        "dim": model.output_dim,
        "distance": distance,
        "index_type": index_type,
        "faiss_factory": factory_string(index_type, model.output_dim, num_vectors),
        **loading,  # what loading the index needs besides the FAISS file
        "bm25": bm25,
        **extra,
    }


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """The manifest of an index directory, after checking that the index file matches its checksum."""
    directory = Path(directory)
    path = directory / "manifest.json"
    if not path.is_file():
        raise DataError("not a ragcun index directory (no manifest.json)", directory)
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"malformed JSON ({exc.msg})", path, exc.lineno) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise DataError("manifest.json is not a ragcun index manifest", path)
    index_path = directory / "index.faiss"
    if not index_path.is_file():
        raise DataError("no index.faiss", directory)
    if file_sha256(index_path) != manifest.get("index_sha256"):
        raise DataError("index.faiss does not match the checksum in manifest.json", index_path)
    return manifest


def read_documents_table(directory: str | os.PathLike) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    import pyarrow.parquet as pq

    table = pq.read_table(Path(directory) / "documents.parquet").to_pydict()
    ids = [str(i) for i in table["id"]]
    metadata = [json.loads(m) if m else {} for m in table.get("metadata", [None] * len(ids))]
    return ids, list(table["text"]), metadata
