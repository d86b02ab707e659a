"""Synthetic (query, positive) pairs from raw documents by the Inverse Cloze Task.

Reference: K. Lee, M.-W. Chang, K. Toutanova, "Latent Retrieval for Weakly Supervised Open Domain
Question Answering", ACL 2019 (ICT). A random sentence of the document becomes the pseudo-query and the
*rest* of the document, with that sentence removed, is the positive. The seed instead used the first
sentence as the query and left it inside the positive, so a model could match the pair by string overlap
alone; removing the span makes the pair semantic rather than lexical.

Only documents with at least two sentences qualify (a one-sentence document has nothing left to retrieve),
and a sentence ends only before a capital letter or a digit: lower-case or unpunctuated collections yield few
ICT pairs.

Independent random cropping (``method="crop"``; Izacard et al., "Unsupervised Dense Information Retrieval
with Contrastive Learning" (Contriever), TMLR 2022): the query and the positive are two independent random
spans of the same document, each 10–50% of its words (at least ``MIN_QUERY_WORDS``); no sentence boundaries
are needed, so every document of ≥ 8 words yields pairs. ``pairs_per_document`` draws that many pairs from a
document; all of them share the document's query id, so training treats the crops of one document as
positives of each other (never as negatives).

``num_pairs`` above the number of pairs the documents allow is an error.
"""

from __future__ import annotations

import random
import re

from ragcun.errors import DataError

# A sentence ends at . ! or ? (closing quotes or brackets may follow) before whitespace, whatever the next
# word's case: lowercase collections (CACM, MEDLINE) have sentences too. Not an end: an abbreviation
# ("e.g.", "et al.", "Fig.", "vs."), an initial ("J. Smith", "U.S."), or a decimal point (no space follows).
_END_CANDIDATE = re.compile(r"[.!?][\"')\]]*\s+")
_ABBREVIATIONS = frozenset(
    "e.g i.e et al etc vs cf fig figs eq eqs ref refs no nos vol approx dr mr mrs ms prof st jr sr inc ltd co "
    "jan feb mar apr jun jul aug sep sept oct nov dec ca resp viz".split())
MIN_QUERY_WORDS = 4


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (see ``_END_CANDIDATE``); a text without sentence punctuation is one sentence."""
    text = text.strip()
    sentences, start = [], 0
    for match in _END_CANDIDATE.finditer(text):
        if text[match.start()] == ".":
            before = text[start:match.start()].split()
            word = before[-1].lower().rstrip(".") if before else ""
            if word in _ABBREVIATIONS or len(word.strip("\"'([")) == 1:
                continue  # "et al." / "Fig." / an initial
        sentences.append(text[start:match.end()].strip())
        start = match.end()
    sentences.append(text[start:].strip())
    return [s for s in sentences if s]


def ict_pair(document: str, rng: random.Random) -> tuple[str, str] | None:
    """(query sentence, document without it), or None when the document has too few sentences."""
    sentences = split_sentences(document)
    candidates = [i for i, s in enumerate(sentences) if len(s.split()) >= MIN_QUERY_WORDS]
    if len(sentences) < 2 or not candidates:
        return None
    i = rng.choice(candidates)
    rest = " ".join(s for j, s in enumerate(sentences) if j != i)
    return sentences[i], rest


CROP_RATIO = (0.1, 0.5)


def crop_pair(document: str, rng: random.Random) -> tuple[str, str] | None:
    """Two independent random word spans of the document, or None when it is too short."""
    words = document.split()
    if len(words) < 2 * MIN_QUERY_WORDS:
        return None

    def crop() -> str:
        length = max(MIN_QUERY_WORDS, round(rng.uniform(*CROP_RATIO) * len(words)))
        start = rng.randrange(len(words) - length + 1)
        return " ".join(words[start : start + length])

    return crop(), crop()


PAIR_METHODS = {"ict": ict_pair, "crop": crop_pair}


def generate_pairs(
    documents: list[str], num_pairs: int | None = None, add_negatives: bool = True, seed: int = 42, source: str = "",
    method: str = "ict", pairs_per_document: int = 1,
) -> list[dict[str, str]]:
    """Triplets ``{query, positive[, negative], query_id, positive_id[, negative_id]}`` by ICT or cropping.

    Document ids are ``doc{index}`` in the input order (``doc{index}#{k}`` for the k-th of several pairs of a
    document, whose query id is ``q{index}`` for all of them); a negative is a random *other* document.
    """
    if method not in PAIR_METHODS:
        raise DataError(f"--pair_method must be one of {', '.join(PAIR_METHODS)}, got {method!r}", source or None)
    if pairs_per_document < 1:
        raise DataError(f"--pairs_per_document must be >= 1, got {pairs_per_document}", source or None)
    make_pair = PAIR_METHODS[method]
    rng = random.Random(seed)
    order = list(range(len(documents)))
    rng.shuffle(order)
    pairs: list[dict[str, str]] = []
    possible = 0
    for idx in order:
        for k in range(pairs_per_document):
            pair = make_pair(documents[idx], rng)
            if pair is None:
                break
            possible += 1
            if num_pairs is None or len(pairs) < num_pairs:
                query, positive = pair
                positive_id = f"doc{idx}" if pairs_per_document == 1 else f"doc{idx}#{k}"
                pairs.append({"query": query, "positive": positive, "query_id": f"q{idx}", "positive_id": positive_id})
    need = "two or more sentences" if method == "ict" else f"{2 * MIN_QUERY_WORDS} or more words"
    if num_pairs is not None and num_pairs > possible:
        raise DataError(
            f"--num_pairs {num_pairs} is more than possible: {possible} pairs from {len(documents)} documents "
            f"(documents need {need}; {pairs_per_document} pair(s) per document)", source or None)
    if not pairs:
        raise DataError(f"no document has {need}; cannot make query/positive pairs", source or None)
    if add_negatives:
        if len(documents) < 2:
            raise DataError("random negatives need at least two documents", source or None)
        for pair in pairs:
            own = int(pair["positive_id"][3:].split("#")[0])
            other = rng.randrange(len(documents) - 1)
            other += other >= own
            pair["negative"], pair["negative_id"] = documents[other], f"doc{other}"
    return pairs
