"""Losses of the Gaussian embedding objective, one per file (maths in each docstring)."""

from ragcun.losses.contrastive import InfoNCELoss, TripletLoss
from ragcun.losses.gaussian import GaussianEmbeddingLoss
from ragcun.losses.sigreg import SIGRegLoss, epps_pulley, random_directions
from ragcun.losses.variance import VarianceLoss

__all__ = [
    "GaussianEmbeddingLoss",
    "InfoNCELoss",
    "SIGRegLoss",
    "TripletLoss",
    "VarianceLoss",
    "epps_pulley",
    "random_directions",
]
