"""Data: readers and validators, synthetic pairs, hard-negative mining, splits, evaluation sets."""

from ragcun.data.io import read_documents, read_records, read_triplets, write_records
from ragcun.data.mining import mine_hard_negatives
from ragcun.data.pairs import generate_pairs
from ragcun.data.retrieval_sets import RetrievalSet, load_beir, read_test_eval, write_test_eval
from ragcun.data.splits import split_by_query

__all__ = [
    "RetrievalSet",
    "generate_pairs",
    "load_beir",
    "mine_hard_negatives",
    "read_documents",
    "read_records",
    "read_test_eval",
    "read_triplets",
    "split_by_query",
    "write_records",
    "write_test_eval",
]
