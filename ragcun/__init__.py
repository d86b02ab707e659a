"""ragcun: retrieval embeddings that form an isotropic Gaussian (LeJEPA's SIGReg), trained on Ray."""

from ragcun.quiet import silence_expected_messages

# Before anything imports faiss, whose loader logs at import time; every submodule import runs this first.
silence_expected_messages()

from ragcun.config import (  # noqa: E402
    DEFAULT_BASE_MODEL,
    LossConfig,
    ModelConfig,
    PrepareConfig,
    RayConfig,
    TrainConfig,
)
from ragcun.model import GaussianEmbeddingGemma, GaussianEmbeddingModel, load_model  # noqa: E402
from ragcun.retriever import GaussianRetriever  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_BASE_MODEL",
    "GaussianEmbeddingGemma",
    "GaussianEmbeddingModel",
    "GaussianRetriever",
    "LossConfig",
    "ModelConfig",
    "PrepareConfig",
    "RayConfig",
    "TrainConfig",
    "load_model",
]
