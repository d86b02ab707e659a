"""bench/gpu_check.py runs end to end with tiny shapes on the CPU (the same code a GPU runs at full size),
without Ray or FAISS importable."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .conftest import REPO

BLOCK_IMPORTS = """
import builtins, os, runpy, sys
blocked = os.environ["BLOCKED_IMPORTS"].split(",")
real = builtins.__import__
def guard(name, *args, **kwargs):
    if name.split(".")[0] in blocked:
        raise ImportError(f"{name} is not on this image")
    return real(name, *args, **kwargs)
builtins.__import__ = guard
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_gpu_check(out, *args: str, blocked: str = "ray,faiss") -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "BLOCKED_IMPORTS": blocked}
    return subprocess.run([sys.executable, "-c", BLOCK_IMPORTS, str(REPO / "bench" / "gpu_check.py"), "--tiny",
                           "--output", str(out), *args], capture_output=True, text=True, timeout=600, env=env)


def test_a_failing_section_is_recorded_and_the_others_still_run(tmp_path):
    """An image without sentence-transformers: the st section fails with its traceback in the JSON, the
    sections around it still report, and the exit status says something failed."""
    out = tmp_path / "gpu_check.json"
    proc = run_gpu_check(out, "--sections", "st", "sigreg", blocked="ray,faiss,sentence_transformers")
    assert proc.returncode == 1, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert "sentence_transformers" in result["st"]["error"] and "step_s" not in result["st"]
    assert result["sigreg"]["sigreg_fwd_bwd_ms"] > 0 and "encoder" not in result


def test_gpu_check_tiny_on_the_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = run_gpu_check(out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["tiny"]
    assert result["encoder"]["triplets_per_s"] > 0 and result["encoder"]["mfu"] is None  # no peak on a CPU
    assert result["st"]["ragcun_speed_ratio"] > 0 and result["sigreg"]["sigreg_fwd_bwd_ms"] > 0
    assert result["search"]["queries_per_s"] > 0
    assert result["encoder"]["cached_triplets_per_s"] > 0
    assert result["cached"]["replays_dropout"] and result["cached"]["max_grad_diff_over_largest"] < 1e-4
    assert result["cached"]["compiled_replays_dropout"]
    assert result["resume"]["resumed_state_on_device"] and result["resume"]["step_after_resume"] == "ok"
    assert result["compiled"]["first_loss_rel_diff"] < 1e-4 and result["compiled"]["compiled_step_s"] > 0
    assert not any("error" in result[name]
                   for name in ("encoder", "st", "sigreg", "search", "cached", "resume", "compiled"))
