"""Hard-negative mining with a dense retriever, in the manner of sentence-transformers'
``util.mine_hard_negatives`` (ragcun defaults: range_max 30, relative_margin 0.05, random sampling).

For each (query, positive) the whole corpus is ranked by cosine similarity with the base model (a FAISS
inner-product search over L2-normalised embeddings). Candidates are skipped when they are

* a positive of that query (by id, or by identical text), or
* scored above ``(1 − relative_margin) × score(query, positive)``: such near-duplicates of the positive
  are likely unjudged positives (false negatives), the usual failure of mined negatives;

the first ``range_max`` remaining candidates form the pool, from which ``num_negatives`` are drawn at random
(``sampling="random"``) or the best ones taken (``"top"``). A query with an empty pool keeps a random
negative and is counted in the returned statistics.
"""

from __future__ import annotations

import logging
import random
from typing import Any, Literal

import numpy as np

logger = logging.getLogger(__name__)


def mine_hard_negatives(
    triplets: list[dict[str, Any]],
    corpus_ids: list[str],
    corpus_texts: list[str],
    model: Any,
    num_negatives: int = 1,
    range_max: int = 30,
    relative_margin: float = 0.05,
    sampling: Literal["random", "top"] = "random",
    batch_size: int = 32,
    seed: int = 42,
    corpus_embeddings: np.ndarray | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Return new triplets and statistics about the mining. With ``num_negatives`` 1, one triplet per input
    triplet; with K > 1, one record per input triplet whose ``negatives`` / ``negative_ids`` hold a group of
    exactly K (topped up with random documents where the pool has fewer), ``negative`` being the first, so
    that training puts all K in the same batch (FlagEmbedding's ``train_group_size``)."""
    if not 0 <= relative_margin < 1:
        raise ValueError(f"relative_margin must be in [0, 1), got {relative_margin}")
    rng = random.Random(seed)
    doc_position = {d: i for i, d in enumerate(corpus_ids)}
    positions_of_text: dict[str, list[int]] = {}
    for i, t in enumerate(corpus_texts):
        positions_of_text.setdefault(t, []).append(i)

    def position(doc_id: str | None, text: str) -> int | None:
        if doc_id is not None and doc_id in doc_position:
            return doc_position[doc_id]
        return positions_of_text[text][0] if text in positions_of_text else None

    # Every positive of a query, and every exact copy of one, is never mined as its negative.
    positives_of: dict[str, set[int]] = {}
    for t in triplets:
        skip = positives_of.setdefault(t.get("query_id") or t["query"], set())
        pos = position(t.get("positive_id"), t["positive"])
        if pos is not None:
            skip.add(pos)
        skip.update(positions_of_text.get(t["positive"], []))

    if corpus_embeddings is None:
        corpus_embeddings = model.encode(corpus_texts, "document", batch_size=batch_size, show_progress_bar=True)
    unique_queries = list(dict.fromkeys(t["query"] for t in triplets))
    query_row = {q: i for i, q in enumerate(unique_queries)}
    query_embeddings = model.encode(unique_queries, "query", batch_size=batch_size, show_progress_bar=True)
    # Deep enough to fill the pool after skipping the positives and the near-duplicates at the top.
    max_positives = max((len(p) for p in positives_of.values()), default=1)
    depth = min(len(corpus_ids), 2 * range_max + max_positives + 20)
    from ragcun.index.faiss_index import (
        exact_search,  # FAISS: imported where it is used (ragcun.data needs no FAISS)
    )

    scores, ids = exact_search(corpus_embeddings, query_embeddings, depth, distance="cosine")
    q_norm = query_embeddings / np.linalg.norm(query_embeddings, axis=1, keepdims=True).clip(1e-12)
    d_norm = corpus_embeddings / np.linalg.norm(corpus_embeddings, axis=1, keepdims=True).clip(1e-12)

    out: list[dict[str, Any]] = []
    fallbacks = 0
    pool_sizes = []
    for t in triplets:
        row = query_row[t["query"]]
        skip = positives_of.get(t.get("query_id") or t["query"], set())
        pos = position(t.get("positive_id"), t["positive"])
        pos_vec = d_norm[pos] if pos is not None else None
        if pos_vec is None:
            pos_vec = model.encode([t["positive"]], "document")[0]
            pos_vec = pos_vec / max(np.linalg.norm(pos_vec), 1e-12)
        pos_score = float(q_norm[row] @ pos_vec)
        ceiling = (1.0 - relative_margin) * pos_score
        pool = [int(d) for d, s in zip(ids[row], scores[row]) if d >= 0 and int(d) not in skip and s <= ceiling]
        pool = pool[:range_max]
        pool_sizes.append(len(pool))
        if not pool:
            fallbacks += 1
            candidates = [i for i in range(len(corpus_ids)) if i not in skip]
            chosen = [rng.choice(candidates)] if candidates else []
        elif sampling == "top":
            chosen = pool[:num_negatives]
        else:
            chosen = rng.sample(pool, min(num_negatives, len(pool)))
        if num_negatives > 1:
            missing = num_negatives - len(chosen)
            if missing > 0:  # a group has exactly K: top up with random documents that are not positives
                candidates = [i for i in range(len(corpus_ids)) if i not in skip and i not in chosen]
                chosen += rng.sample(candidates, min(missing, len(candidates)))
            if chosen:
                out.append({**t, "negative": corpus_texts[chosen[0]], "negative_id": corpus_ids[chosen[0]],
                            "negatives": [corpus_texts[n] for n in chosen],
                            "negative_ids": [corpus_ids[n] for n in chosen]})
            continue
        for neg in chosen:
            out.append({**t, "negative": corpus_texts[neg], "negative_id": corpus_ids[neg]})
    stats = {
        "triplets_in": len(triplets),
        "triplets_out": len(out),
        "queries": len(unique_queries),
        "mean_pool_size": float(np.mean(pool_sizes)) if pool_sizes else 0.0,
        "random_fallbacks": fallbacks,
        "relative_margin": relative_margin,
        "range_max": range_max,
        "sampling": sampling,
    }
    logger.info("mined negatives: %s", stats)
    return out, stats
