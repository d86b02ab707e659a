"""Every benchmark script under bench/ still starts: its imports resolve and its flags parse (``--help``).
The benchmarks themselves are long and are run by hand; this catches a module they import being moved."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import REPO

SCRIPTS = sorted((REPO / "bench").glob("*.py"))


def test_there_are_benchmarks():
    assert len(SCRIPTS) >= 8


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bench_script_starts(script):
    result = subprocess.run([sys.executable, str(script), "--help"], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage" in result.stdout.lower()


SHELL_SCRIPTS = sorted((REPO / "bench").glob("*.sh"))


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_bench_shell_script_parses(script):
    """The shell benchmarks run for hours; a syntax error should not wait until then."""
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
