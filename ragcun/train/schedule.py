"""Learning-rate schedule: linear warmup, then cosine decay to ``min_ratio × base``, per optimizer step.

    lr(s) = base · (s + 1) / warmup                                   for s < warmup
    lr(s) = base · (min_ratio + (1 − min_ratio) · ½ (1 + cos(π · p)))  p = (s − warmup) / (total − warmup)

(nanoGPT's ``get_lr``.) The seed stepped a per-step schedule once per epoch; here the scheduler is stepped
after every optimizer step, and accumulation micro-steps do not count.
"""

from __future__ import annotations

import math


def get_lr(step: int, base_lr: float, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return base_lr * min_ratio
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def lr_multiplier(warmup_steps: int, total_steps: int, min_ratio: float = 0.0):
    """The schedule as a factor of the base rate, for ``torch.optim.lr_scheduler.LambdaLR``."""
    return lambda step: get_lr(step, 1.0, warmup_steps, total_steps, min_ratio)
