"""Weight-space interpolation of a fine-tuned model with the model it started from (WiSE-FT).

Fine-tuning on one collection can cost quality on others. Wortsman et al. ("Robust fine-tuning of zero-shot
models", CVPR 2022) keep most of the in-domain gain and recover the out-of-domain quality by averaging the
weights, parameter by parameter:

    θ_α = (1 − α) · θ_start + α · θ_finetuned,   α ∈ [0, 1],

which works because both ends lie in one basin of the loss (the fine-tuned model is a short walk from its
start). With a head fitted by ``--head_init scale`` the start ranks exactly as the untrained model does by
L2, so α runs from the untrained ranking (0) to the fine-tuned one (1). The paper's default without an
out-of-domain validation set is α = 0.5. Both checkpoints must share the architecture (backbone
configuration, model configuration, every parameter's name and shape); the learnable scale is interpolated
in log space as it is stored, i.e. geometrically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ragcun.errors import CheckpointError
from ragcun.model import load_checkpoint_payload, save_payload
from ragcun.train.resolve import model_only


def interpolate_payloads(start: dict[str, Any], finetuned: dict[str, Any], alpha: float) -> dict[str, Any]:
    """``finetuned``'s checkpoint payload (without optimizer state) with every floating-point tensor replaced
    by (1 − alpha) · start + alpha · finetuned; other tensors must be equal. Raises CheckpointError naming
    where the two architectures differ."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    for key in ("backbone_config", "config"):
        if start[key] != finetuned[key]:
            differing = sorted(k for k in set(start[key]) | set(finetuned[key])
                               if start[key].get(k) != finetuned[key].get(k))
            raise CheckpointError(f"the checkpoints differ in {key} ({differing[:5]}): not one architecture")
    a, b = start["model_state_dict"], finetuned["model_state_dict"]
    if set(a) != set(b):
        raise CheckpointError(f"the checkpoints have different parameters (e.g. {sorted(set(a) ^ set(b))[:3]})")
    mixed = {}
    for name, end in b.items():
        begin = a[name]
        if begin.shape != end.shape or begin.dtype != end.dtype:
            raise CheckpointError(f"parameter {name}: {tuple(begin.shape)} {begin.dtype} in the start, "
                                  f"{tuple(end.shape)} {end.dtype} in the fine-tuned checkpoint")
        if end.is_floating_point():
            mixed[name] = torch.lerp(begin.float(), end.float(), alpha).to(end.dtype)
        elif torch.equal(begin, end):
            mixed[name] = end
        else:
            raise CheckpointError(f"buffer {name} differs between the checkpoints and cannot be interpolated")
    out = {k: v for k, v in model_only(finetuned).items() if k not in ("epoch", "step", "metrics")}
    out["model_state_dict"] = mixed
    return out


def interpolate_checkpoints(start: str | os.PathLike, finetuned: str | os.PathLike, alpha: float,
                            output: str | os.PathLike) -> Path:
    """Load both checkpoints (weights_only), interpolate them and write ``output`` atomically. An existing
    ``output`` is replaced only if it is a ragcun checkpoint itself; neither input may be the output."""
    output = Path(output)
    if output.resolve() in (Path(start).resolve(), Path(finetuned).resolve()):
        raise CheckpointError(f"{output}: the output must not be one of the input checkpoints")
    if output.exists():
        try:
            load_checkpoint_payload(output)
        except CheckpointError as exc:
            raise CheckpointError(f"{output} exists and is not a ragcun checkpoint: not overwritten") from exc
    payload = interpolate_payloads(load_checkpoint_payload(start), load_checkpoint_payload(finetuned), alpha)
    payload["interpolation"] = {"alpha": float(alpha), "start": str(start), "finetuned": str(finetuned)}
    return save_payload(payload, output)
