"""Training: the per-worker loop (``train_func``), the Ray Data pipeline and the TorchTrainer driver."""

from ragcun.train.schedule import get_lr, lr_multiplier

__all__ = ["get_lr", "lr_multiplier"]
