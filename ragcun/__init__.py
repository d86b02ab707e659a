"""ragcun: retrieval embeddings that form an isotropic Gaussian (LeJEPA's SIGReg), trained on Ray."""

from ragcun.config import DEFAULT_BASE_MODEL, LossConfig, ModelConfig, PrepareConfig, RayConfig, TrainConfig
from ragcun.model import GaussianEmbeddingGemma, GaussianEmbeddingModel, load_model
from ragcun.retriever import GaussianRetriever

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
