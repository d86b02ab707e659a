"""Keep the README and docs/ true: run their commands and Python blocks verbatim (in a scratch directory), in
the order a reader meets them (the README, then the pages in the README's documentation list).

The SciFact commands (they name data/scifact) are skipped here: they are what `make demo` runs, or the
base model's reproduction, which tests/eval/test_scifact_reproduction.py runs and checks."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

from .conftest import REPO

README = (REPO / "README.md").read_text()
# The pages in the order the README lists them; a page missing from the list fails test_every_page_is_listed.
PAGES = [REPO / page for page in re.findall(r"\]\((docs/[a-z_]+\.md)\)", README.split("## Documentation")[1])]
DOCS = "\n".join([README, *(page.read_text() for page in PAGES)])


def fenced(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOCS, flags=re.S)


def commands() -> list[str]:
    out = []
    for block in fenced("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith(("python jobs/", "python tune/")):
                out.append(line)
    return out


@pytest.fixture
def workdir(tmp_path, tiny_model, monkeypatch):
    for name in ("jobs", "tune", "examples", "data"):
        (tmp_path / name).symlink_to(REPO / name)
    (tmp_path / "data").unlink()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "scifact").symlink_to(REPO / "data" / "scifact")
    tiny_model.save_checkpoint(tmp_path / "checkpoints" / "best_model.pt")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_readme_scifact_commands_are_the_demo():
    """Commands naming data/scifact are skipped below because `make demo` (or the reproduction test) runs
    them: keep them identical."""
    from .eval.test_scifact_reproduction import README_COMMAND

    makefile = (REPO / "Makefile").read_text().replace("\\\n", " ").replace("$(PY) ", "python ")
    makefile = " ".join(makefile.replace("$(DEMO_DIR)", "runs/demo").replace("$(DEMO_EPOCHS)", "1").replace("$(DEMO_LAMBDA)", "0").split())
    scifact = [c for c in commands() if "data/scifact" in c or "runs/demo" in c]
    assert len(scifact) >= 5
    for cmd in scifact:
        assert " ".join(cmd.split()) in makefile or " ".join(cmd.split()) == README_COMMAND, cmd


@pytest.mark.parametrize("page", [REPO / "README.md", *PAGES], ids=lambda p: p.name)
def test_readme_code_fences_are_balanced(page):
    """An unbalanced fence turns the prose after it into code (and code into prose)."""
    fences = [line for line in page.read_text().splitlines() if line.lstrip().startswith("```")]
    assert len(fences) % 2 == 0, f"{len(fences)} fence lines"
    assert all(f.strip() == "```" for f in fences[1::2]), "a closing fence carries text: a fence is missing"


def test_every_page_is_listed_and_every_link_resolves():
    assert sorted(PAGES) == sorted((REPO / "docs").glob("*.md")), "a page of docs/ is not in the README's list"
    assert len(README.splitlines()) < 120, "the README is a front page; depth goes into docs/"
    for page in [REPO / "README.md", *PAGES]:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
            if not target.startswith(("http://", "https://")):
                assert (page.parent / target).exists(), f"{page.name}: broken link {target}"


def test_readme_has_the_commands_we_expect():
    cmds = commands()
    assert any("--generate_pairs" in c for c in cmds) and any("--model_path" in c for c in cmds)
    assert "make demo" in README and "make test" in README


@pytest.mark.ray
def test_readme_commands_run(workdir):
    # No RAY_ADDRESS: each command starts its own local Ray as a user's would. (RAY_ADDRESS=local would also
    # reach Ray's state API client, in the driver and in Ray Train's clean-up actor, which then cannot find the
    # dashboard: a multi-trial sweep refuses to start, see ragcun.sweep.check_state_api.)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")} | {"HF_HUB_OFFLINE": "1"}
    ran = 0
    for cmd in commands():
        if "data/scifact" in cmd or "runs/demo" in cmd:
            continue  # run by `make demo` or tests/eval/test_scifact_reproduction.py
        argv = shlex.split(cmd)
        proc = subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True,
                              timeout=600 if "sweep" in cmd else 300, env=env)
        assert proc.returncode == 0, f"{cmd}\n{proc.stderr[-2000:]}"
        ran += 1
    assert ran >= 6
    assert (workdir / "sweeps" / "readme_sweep" / "best_model.pt").is_file()  # the README's sweep ran...
    trials = (workdir / "sweeps" / "readme_sweep" / "trials.csv").read_text().splitlines()
    assert len(trials) == 1 + 3  # ...all three trials, beside the test session's own Ray cluster
    assert (workdir / "checkpoints" / "training.log").is_file()  # the README's training command ran
    assert (workdir / "results" / "eval_results.json").is_file()
    assert (workdir / "data" / "processed" / "all.json").is_file()
    assert (workdir / "runs" / "readme" / "docs_index" / "manifest.json").is_file()  # the README's index build


def test_readme_python_blocks_run(workdir):
    for block in fenced("python"):
        if "RetrieverClient" in block:
            continue  # needs a server: tests/test_serving.py runs it against one
        exec(compile(block, "README.md or docs/", "exec"), {})
    assert (workdir / "my_index" / "manifest.json").is_file()
    assert (workdir / "model_st" / "modules.json").is_file()
