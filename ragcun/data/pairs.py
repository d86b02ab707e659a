"""Synthetic (query, positive) pairs from raw documents by the Inverse Cloze Task.

Reference: K. Lee, M.-W. Chang, K. Toutanova, "Latent Retrieval for Weakly Supervised Open Domain
Question Answering", ACL 2019 (ICT). A random sentence of the document becomes the pseudo-query and the
*rest* of the document, with that sentence removed, is the positive. The seed instead used the first
sentence as the query and left it inside the positive, so a model could match the pair by string overlap
alone; removing the span makes the pair semantic rather than lexical.

Only documents with at least two sentences qualify (a one-sentence document has nothing left to retrieve).
One pair per document; ``num_pairs`` above the number of eligible documents is an error.
"""

from __future__ import annotations

import random
import re

from ragcun.errors import DataError

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
MIN_QUERY_WORDS = 4


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def ict_pair(document: str, rng: random.Random) -> tuple[str, str] | None:
    """(query sentence, document without it), or None when the document has too few sentences."""
    sentences = split_sentences(document)
    candidates = [i for i, s in enumerate(sentences) if len(s.split()) >= MIN_QUERY_WORDS]
    if len(sentences) < 2 or not candidates:
        return None
    i = rng.choice(candidates)
    rest = " ".join(s for j, s in enumerate(sentences) if j != i)
    return sentences[i], rest


def generate_pairs(
    documents: list[str], num_pairs: int | None = None, add_negatives: bool = True, seed: int = 42, source: str = ""
) -> list[dict[str, str]]:
    """ICT triplets ``{query, positive[, negative], query_id, positive_id[, negative_id]}``.

    Document ids are ``doc{index}`` in the input order; a negative is a random *other* document.
    """
    rng = random.Random(seed)
    order = list(range(len(documents)))
    rng.shuffle(order)
    pairs: list[dict[str, str]] = []
    eligible = 0
    for idx in order:
        pair = ict_pair(documents[idx], rng)
        if pair is None:
            continue
        eligible += 1
        if num_pairs is None or len(pairs) < num_pairs:
            query, positive = pair
            pairs.append({"query": query, "positive": positive, "query_id": f"q{idx}", "positive_id": f"doc{idx}"})
    if num_pairs is not None and num_pairs > eligible:
        raise DataError(
            f"--num_pairs {num_pairs} is more than possible: {eligible} of {len(documents)} documents have "
            f"two or more sentences (one pair per document)", source or None)
    if not pairs:
        raise DataError("no document has two or more sentences; cannot make query/positive pairs", source or None)
    if add_negatives:
        if len(documents) < 2:
            raise DataError("random negatives need at least two documents", source or None)
        for pair in pairs:
            own = int(pair["positive_id"][3:])
            other = rng.randrange(len(documents) - 1)
            other += other >= own
            pair["negative"], pair["negative_id"] = documents[other], f"doc{other}"
    return pairs
