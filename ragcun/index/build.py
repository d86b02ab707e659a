"""Index directories: the on-disk format, and building one over a corpus with Ray Data batch inference.

An index directory holds (no pickle anywhere):

- ``index.faiss``: the FAISS index (``faiss.write_index``), row i = document i;
- ``documents.parquet``: ``id``, ``text`` and ``metadata`` (a JSON object as text) per document;
- ``model.pt``: the encoder as a ragcun checkpoint (loaded with ``torch.load(weights_only=True)``);
- ``manifest.json``: format, model, dimension, distance, index type, counts, the index's SHA-256 and how it
  was built.

:func:`build_index_directory` reads the corpus with Ray Data (streamed, never whole in the driver), encodes it
with an actor pool of encoders (``map_batches`` with ``concurrency``; one GPU per actor with ``use_gpu``), and
writes the documents to Parquet batch by batch as the embeddings come back. The directory is assembled in a
temporary sibling and renamed at the end, so a failure leaves no half-written index.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ragcun.config import IndexBuildConfig
from ragcun.data.io import iter_jsonl, read_json_dataset, read_records
from ragcun.embedding_cache import EmbeddingCache, TextDigest, cache_key
from ragcun.errors import DataError
from ragcun.fs import check_output_directory, replace_directory, staging_directory
from ragcun.quantization import DEFAULT_INT8_RANGE, DEFAULT_RESCORE_MULTIPLIER

logger = logging.getLogger(__name__)

MANIFEST_FORMAT = "ragcun-index"
INDEX_KIND = "index"
MANIFEST_VERSION = 1
CORPUS_SUFFIXES = (".jsonl", ".json", ".parquet", ".txt")
ID_FIELDS = ("_id", "id", "doc_id")
READ_CPUS = 0.25  # per read / normalise task: whole-CPU reads starve a 2-CPU machine
# CPUs the encoder pool leaves free by default: Ray Data's file listing takes a whole CPU and the read tasks
# need theirs; an encoder pool that reserves (almost) everything deadlocks the pipeline on 2 CPUs.
PIPELINE_HEADROOM_CPUS = 1.0


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------ the format
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
        from ragcun.index import save_index, to_cpu

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


def quantization_manifest(index_type: str, int8_range: float, rescore_multiplier: int) -> dict[str, Any]:
    """What loading an index of ``index_type`` needs besides the FAISS file (recorded in the manifest)."""
    key = index_type.lower()
    if key == "int8":
        return {"int8_range": int8_range}
    if key == "binary":
        return {"rescore_multiplier": rescore_multiplier}
    return {}


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


# ------------------------------------------------------------------------------------------ the corpus
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
    full = f"{title} {text}".strip() if title else text.strip()
    if not full:
        raise EmptyDocument(str(doc_id))
    metadata = {k: v for k, v in record.items() if k not in (*ID_FIELDS, "text", "__record__") and v is not None}
    return str(doc_id), full, metadata


def validate_corpus(files: list[Path], on_text: Callable[[str], None] | None = None, strict: bool = False) -> int:
    """Stream the corpus once in the driver: the first malformed record stops the build with its file, line
    and field, before any encoding. Returns the number of documents indexed. Ids must be unique. ``on_text``
    sees every indexed document's text in corpus order (the embedding cache's digest). Empty documents are
    skipped with one warning per file (the Ray Data read drops them too), or refused when ``strict``."""
    from ragcun.data.retrieval import warn_empty_documents

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


# ------------------------------------------------------------------------------------------ encoding
class EncodeDocuments:
    """``map_batches`` actor: one encoder per actor, loaded once from the checkpoint payload."""

    def __init__(self, payload: dict[str, Any], batch_size: int, use_gpu: bool, num_threads: int):
        import torch

        from ragcun.model import GaussianEmbeddingModel

        torch.set_num_threads(max(1, num_threads))
        self.model = GaussianEmbeddingModel.from_payload(payload)
        if use_gpu and torch.cuda.is_available():
            self.model.to("cuda")
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        vectors = self.model.encode(texts, "document", batch_size=self.batch_size, show_progress_bar=False)
        return {"id": batch["id"], "text": batch["text"], "metadata": batch["metadata"], "embedding": vectors}


def encoder_resources(config: IndexBuildConfig, cluster_cpus: float) -> tuple[float, int]:
    """(CPUs reserved per encoder actor, its torch threads). By default the pool reserves what the pipeline's
    headroom leaves, and each encoder runs as many threads as its share of all the cluster's CPUs: reading
    is light once listed, so the encoders may use the headroom's cores."""
    if config.cpus_per_encoder is not None:
        cpus = config.cpus_per_encoder
        threads = max(1, round(cpus))
    else:
        cpus = max(0.25, (cluster_cpus - PIPELINE_HEADROOM_CPUS) / config.num_encoders)
        threads = max(1, round((cluster_cpus - READ_CPUS) / config.num_encoders))
    if cpus * config.num_encoders + READ_CPUS > cluster_cpus + 1e-9 and not config.use_gpu:
        raise ValueError(f"{config.num_encoders} encoders × {cpus:g} CPUs + {READ_CPUS} for reading do not fit "
                         f"the cluster's {cluster_cpus:g} CPUs; lower --num_encoders or --cpus_per_encoder")
    return cpus, threads


def check_index_type(index_type: str, dim: int, distance: str, num_vectors: int | None = None,
                     int8_range: float = DEFAULT_INT8_RANGE, rescore_multiplier: int = DEFAULT_RESCORE_MULTIPLIER) -> None:
    """Fail before encoding when FAISS cannot build ``index_type`` at this dimension, or cannot train it on
    ``num_vectors`` vectors (IVF-PQ on a small corpus)."""
    import faiss

    from ragcun.index import NOT_FACTORY_TYPES, check_trainable, factory_string, faiss_metric
    from ragcun.quantization import check_quantization_options

    if index_type.lower() in NOT_FACTORY_TYPES:
        check_quantization_options(index_type.lower(), dim, int8_range, rescore_multiplier)
        return
    spec = factory_string(index_type, dim, num_vectors or 1_000_000)
    try:
        index = faiss.index_factory(dim, spec, faiss_metric(distance))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"--index_type {index_type!r}: FAISS cannot build {spec!r} for {dim}-d vectors ({first})") from exc
    if num_vectors is not None:
        try:
            check_trainable(index, num_vectors, index_type)
        except ValueError as exc:
            raise ValueError(f"--index_type {index_type!r} ({spec}): {exc}") from exc


def build_index_directory(config: IndexBuildConfig) -> dict[str, Any]:
    """Encode the corpus with Ray Data and write the index directory; returns the manifest.

    Ray must be initialised (``ray.init()``); the driver holds only the embeddings (N × d float32) for the
    FAISS build, the documents go straight to Parquet."""
    import ray
    import ray.data

    from ragcun.index import build_index, check_distance, factory_string

    distance = check_distance(config.distance)
    check_index_output(config.output_dir)
    files = corpus_files(config.corpus)
    started = time.perf_counter()
    digest = TextDigest() if config.cache_dir else None
    num_documents = validate_corpus(files, digest.add if digest else None, config.strict)
    from ragcun.model import load_encoder

    model = load_encoder(config.model_path, config.base_model, config.pooling, max_doc_length=config.max_doc_length)
    check_index_type(config.index_type, model.output_dim, distance, num_documents, config.int8_range,
                     config.rescore_multiplier)
    cache = EmbeddingCache(config.cache_dir) if config.cache_dir else None
    cache_entry = cache_key(model, digest, "document") if cache is not None else ""
    cached = cache.load(cache_entry, num_documents) if cache is not None else None
    corpus = read_corpus_dataset(files)
    if cached is None:
        cpus, threads = encoder_resources(config, float(ray.cluster_resources().get("CPU", 1.0)))
        logger.info("encoding %d documents from %s with %d encoder(s) (%.2f CPU%s each)", num_documents,
                    config.corpus, config.num_encoders, cpus, ", 1 GPU" if config.use_gpu else "")
        corpus = corpus.map_batches(
            EncodeDocuments, fn_constructor_args=(model.checkpoint_payload(), config.batch_size, config.use_gpu, threads),
            batch_size=config.batch_size * 4, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=config.num_encoders),
            num_cpus=cpus, num_gpus=1 if config.use_gpu else None)
    else:
        logger.info("%d document embeddings from the cache (%s); not re-encoding", num_documents, config.cache_dir)
    # Row i of the index is document i of the corpus: deterministic, and what GaussianRetriever does.
    corpus.context.execution_options.preserve_order = True
    corpus.context.enable_operator_progress_bars = False  # one bar for the build, not one per operator
    chunks: list[np.ndarray] = []
    texts: list[str] = []  # for BM25 only
    with IndexDirectoryWriter(config.output_dir) as writer:
        encode_started = time.perf_counter()
        for batch in corpus.iter_batches(batch_size=4096, batch_format="numpy"):
            batch_texts = [str(t) for t in batch["text"]]
            writer.add_documents([str(i) for i in batch["id"]], batch_texts, [str(m) for m in batch["metadata"]])
            if config.bm25:
                texts.extend(batch_texts)
            if cached is None:
                chunks.append(np.asarray(batch["embedding"], dtype=np.float32))
        encode_seconds = time.perf_counter() - encode_started
        if cached is not None:
            vectors = cached
        else:
            vectors = np.concatenate(chunks) if chunks else np.zeros((0, model.output_dim), np.float32)
        if len(vectors) != num_documents:
            raise RuntimeError(f"encoded {len(vectors)} documents, the corpus has {num_documents}")
        if cache is not None and cached is None:
            cache.save(cache_entry, vectors)
        index_started = time.perf_counter()
        index = build_index(vectors, index_type=config.index_type, distance=distance, int8_range=config.int8_range,
                            rescore_multiplier=config.rescore_multiplier)
        index_seconds = time.perf_counter() - index_started
        model.save_checkpoint(writer.model_file)
        if config.bm25:
            from ragcun.bm25 import BM25Index

            BM25Index.build(texts).save(writer.tmp)
        manifest = {
            "bm25": config.bm25,
            "model": {"checkpoint": "model.pt", "model_path": config.model_path,
                      "base_model": model.config.base_model, "output_dim": model.output_dim},
            "dim": model.output_dim,
            "distance": distance,
            "index_type": config.index_type,
            "faiss_factory": factory_string(config.index_type, model.output_dim, len(vectors)),
            **quantization_manifest(config.index_type, config.int8_range, config.rescore_multiplier),
            "corpus": str(Path(config.corpus).resolve()),
            "build": {"encode_seconds": round(encode_seconds, 2), "index_seconds": round(index_seconds, 2),
                      "total_seconds": round(time.perf_counter() - started, 2), "num_encoders": config.num_encoders,
                      "use_gpu": config.use_gpu, "embeddings_from_cache": cached is not None, "date": time.strftime("%Y-%m-%dT%H:%M:%S")},
        }
        writer.commit(index, manifest)
    return read_manifest(config.output_dir)
