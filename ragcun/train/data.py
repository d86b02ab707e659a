"""Ray Data input pipeline: stream triplet files, tokenise in the pipeline, feed each worker its shard.

Files are read by Ray Data (``read_json`` / ``read_parquet``), never loaded whole into the driver. The
map step tokenises query/positive/negative to fixed-width int arrays (so ``iter_torch_batches`` can
collate them), and each training batch is then trimmed to its longest row, so short batches cost less.
String ids become stable 63-bit hashes for the loss's false-negative mask.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ragcun.data.io import RECORD_SUFFIXES, read_json_dataset
from ragcun.errors import DataError

ROLES = ("query", "positive", "negative")


def stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little") >> 1


def triplet_files(path: str | Path) -> list[str]:
    """The record files of a path (a file, or a directory of them), absolute."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in RECORD_SUFFIXES and p.suffix != ".csv")
        if not files:
            raise DataError("no .json/.jsonl/.parquet files in directory", path)
        return [str(f.resolve()) for f in files]
    if not path.is_file():
        raise DataError("no such file", path)
    if path.suffix.lower() not in (".json", ".jsonl", ".parquet"):
        raise DataError(f"training data must be .json, .jsonl or .parquet, got '{path.suffix}'", path)
    return [str(path.resolve())]


def read_triplet_dataset(path: str | Path, num_cpus: float = 0.25):
    """A Ray Dataset of the triplet file(s) at ``path``; validated lazily by :class:`Tokenize`.

    Read tasks ask for a fraction of a CPU: with whole-CPU reads, 2 training workers on a 2-CPU machine
    starve the pipeline and the run deadlocks."""
    import ray.data

    files = triplet_files(path)
    suffixes = {Path(f).suffix.lower() for f in files}
    if len(suffixes) > 1:
        raise DataError(f"mixed file types {sorted(suffixes)} in one directory", path)
    suffix = suffixes.pop()
    if suffix == ".parquet":
        dataset = ray.data.read_parquet(files, num_cpus=num_cpus)
    else:
        dataset = read_json_dataset(files, lines=suffix == ".jsonl", num_cpus=num_cpus)
    # The training log reports progress (step, triplets/s), so Ray Data's own bars would only repeat it.
    dataset.context.enable_progress_bars = False
    return dataset


class Tokenize:
    """``map_batches`` callable: text columns → padded token arrays (+ hashed ids)."""

    def __init__(self, inputs: Any, source: str = ""):
        from ragcun.model import _tokenizer_from_files

        self.source = source or None  # the training file(s), named in errors
        self.tokenizer = _tokenizer_from_files(inputs.tokenizer_files)  # right padding: trim_padding cuts columns
        self.query_length = inputs.max_query_length
        self.doc_length = inputs.max_doc_length
        self.prompts = inputs.prompts

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for required in ("query", "positive"):
            if required not in batch:
                raise DataError(f"training data has no '{required}' column", self.source, field=required)
        n = len(batch["query"])
        out: dict[str, np.ndarray] = {}
        grouped = "negatives" in batch
        for role in ROLES:
            if role not in batch or (role == "negative" and grouped):
                continue
            id_col = f"{role}_id"
            ids = batch[id_col] if id_col in batch else [None] * n
            kind = "query" if role == "query" else "document"
            out[f"{role}_input_ids"], out[f"{role}_attention_mask"], out[id_col] = self._encode(
                batch[role], ids, kind, role)
        if grouped:
            out.update(self._negative_group(batch["negatives"], batch.get("negative_ids")))
        if "positive_ids" in batch:
            out["query_positive_ids"] = positive_sets(batch["positive_ids"], out["positive_id"])
        assert len(out["query_input_ids"]) == n
        return out

    def _encode(self, texts: Any, ids: Any, kind: str, field: str,
                per_record: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Token ids, attention mask and hashed ids of ``texts`` (``per_record`` texts per training record)."""
        texts = [str(t) if t is not None else "" for t in texts]
        empty = [i for i, t in enumerate(texts) if not t.strip()]
        if empty:
            raise DataError(f"empty text in a training record (batch row {empty[0] // per_record})", self.source,
                            field=field)
        tokens = self.tokenizer([self.prompts[kind] + t for t in texts], padding="max_length", truncation=True,
                                max_length=self.query_length if kind == "query" else self.doc_length,
                                return_tensors="np")
        # A missing id (null) falls back to the text: one shared hash would mask unrelated rows.
        hashed = np.array([stable_hash(str(i) if _present(i) else t) for i, t in zip(ids, texts)], dtype=np.int64)
        return tokens["input_ids"].astype(np.int64), tokens["attention_mask"].astype(np.int64), hashed

    def _negative_group(self, groups: Any, group_ids: Any) -> dict[str, np.ndarray]:
        """(B, K, L) token arrays and (B, K) hashed ids of each row's K hard negatives; K must be the same in
        every row (prepare_data writes exactly K)."""
        groups = [list(g) if g is not None else [] for g in groups]
        size = len(groups[0])
        for row, group in enumerate(groups):
            if len(group) != size or size == 0:
                raise DataError(f"every record needs the same number of negatives (batch row 0 has {size}, row "
                                f"{row} has {len(group)})", self.source, field="negatives")
        group_ids = group_ids if group_ids is not None else [None] * len(groups)
        ids = [i for row_ids in group_ids for i in (list(row_ids) if row_ids is not None else [None] * size)]
        input_ids, mask, hashed = self._encode([t for g in groups for t in g], ids, "document", "negatives", size)
        shape = (len(groups), size, -1)
        return {"negative_input_ids": input_ids.reshape(shape), "negative_attention_mask": mask.reshape(shape),
                "negative_id": hashed.reshape(len(groups), size)}


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value)) and str(value) != ""


MAX_POSITIVES = 32  # positives per query carried into a batch (SciFact train: at most 5)


def positive_sets(column: Any, own: np.ndarray) -> np.ndarray:
    """(B, MAX_POSITIVES) hashed ids of each row's query's positives, padded with -1 (never a hash); a row
    without a list keeps just its own positive."""
    out = np.full((len(own), MAX_POSITIVES), -1, dtype=np.int64)
    for row, ids in enumerate(column):
        hashed = [stable_hash(str(i)) for i in (list(ids) if ids is not None else []) if _present(i)]
        hashed = hashed[:MAX_POSITIVES] or [int(own[row])]
        out[row, : len(hashed)] = hashed
    return out


PIPELINE_CPUS = 0.5  # one read task and the tokenising actor, 0.25 CPU each


def tokenized_dataset(raw: Any, inputs: Any, source: str, num_cpus: float = PIPELINE_CPUS / 2):
    """Tokenise ``raw`` (the triplets as read by Ray Data; errors name ``source``, their file(s)) with
    ``inputs`` (a :class:`ragcun.model.TextInputs`: tokenizer, prompts, lengths)."""
    import ray.data

    dataset = raw.map_batches(
        Tokenize, fn_constructor_args=(inputs, source),
        batch_size=256, num_cpus=num_cpus, compute=ray.data.ActorPoolStrategy(size=1), batch_format="numpy")
    dataset.context.enable_progress_bars = False
    return dataset


def trim_padding(input_ids, attention_mask):
    """Cut the columns that are padding in every row of the batch (right padding)."""
    width = int(attention_mask.sum(dim=1).max())
    return input_ids[:, :width], attention_mask[:, :width]


LENGTH_GROUP_WINDOW = 50  # batches sorted together (Hugging Face Trainer's group_by_length sorts 50 as well)


def length_key(batch: dict[str, Any]) -> Any:
    """Per row: the tokens of its longest document, then of its query (to break ties)."""
    documents = batch["positive_attention_mask"].sum(-1)
    if "negative_attention_mask" in batch:
        negatives = batch["negative_attention_mask"].sum(-1)
        documents = documents.maximum(negatives if negatives.dim() == 1 else negatives.amax(-1))
    queries = batch["query_attention_mask"].sum(-1)
    return documents * (batch["query_attention_mask"].shape[-1] + 1) + queries


def length_grouped_batches(windows: Iterable[dict[str, Any]], batch_size: int, seed: int) -> Iterator[dict[str, Any]]:
    """Batches of ``batch_size`` rows cut from each window (a dict of tensors) sorted by :func:`length_key`,
    yielded in an order shuffled per window: each batch holds rows of similar lengths, so it pads less once
    trimmed to its longest row.

    The shuffle depends only on ``seed`` and the window's position. DDP ranks, whose shards hold the same
    number of rows, therefore train at each step on batches from the same place in their sorted windows, of
    similar lengths, rather than one rank waiting on another's longer batch."""
    import torch

    for index, window in enumerate(windows):
        chunks = torch.split(torch.argsort(length_key(window), stable=True), batch_size)
        generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
        for k in torch.randperm(len(chunks), generator=generator).tolist():
            yield {name: column[chunks[k].to(column.device)] for name, column in window.items()}


def training_batches(fetch: Callable[..., Iterable[dict[str, Any]]], batch_size: int, group_by_length: bool,
                     seed: int) -> Iterable[dict[str, Any]]:
    """An epoch's training batches of ``batch_size`` rows, where ``fetch(batch_size=rows)`` streams the shard
    (tokenised tensors) in chunks of ``rows``: the chunks themselves, or with ``group_by_length`` windows of
    :data:`LENGTH_GROUP_WINDOW` batches through :func:`length_grouped_batches`. Either way an epoch has
    ceil(shard rows / batch_size) batches."""
    if not group_by_length:
        return fetch(batch_size=batch_size)
    return length_grouped_batches(fetch(batch_size=batch_size * LENGTH_GROUP_WINDOW), batch_size, seed)
