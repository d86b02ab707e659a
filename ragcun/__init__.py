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

__version__ = "0.1.0"


def __getattr__(name: str):
    # Imported on first use: the retriever needs FAISS, which a training-only or GPU-check image may lack.
    if name == "GaussianRetriever":
        from ragcun.retriever import GaussianRetriever

        return GaussianRetriever
    raise AttributeError(f"module 'ragcun' has no attribute {name!r}")

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
