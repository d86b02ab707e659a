"""bench/science_seeds.py: the science table over seeds (means, spreads, paired changes vs λ_iso = 0)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import REPO

SCRIPT = REPO / "bench" / "science_seeds.py"


def variant(name: str, ndcg: float, ivfpq: float | None = None) -> dict:
    v = {"name": name, "metrics": {"ndcg@10": ndcg, "recall@10": 0.8, "mrr@10": 0.6},
         "isotropy": {"isoscore": 0.2, "effective_rank": 150.0}}
    if ivfpq is not None:
        v["compression"] = {"ivfpq": {"relative_ndcg@10": ivfpq}}
    return v


def write(path, variants):
    path.write_text(json.dumps({"variants": variants}))
    return path


def test_means_spreads_and_paired_changes(tmp_path):
    seed_a = write(tmp_path / "a.json", [variant("iso0", 0.68, 0.93), variant("iso0.2", 0.66, 0.95),
                                         variant("base", 0.6451)])
    seed_b = write(tmp_path / "b.json", [variant("iso0", 0.70, 0.91), variant("iso0.2", 0.69, 0.93)])
    out = tmp_path / "seeds.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(seed_a), str(seed_b), "--output", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())["variants"]
    ndcg = result["iso0.2"]["nDCG@10"]
    assert ndcg["mean"] == pytest.approx(0.675) and ndcg["spread"] == pytest.approx(0.03)
    # paired by seed: (0.66 - 0.68, 0.69 - 0.70) = (-0.02, -0.01)
    delta = result["iso0.2"]["delta_ndcg@10_vs_reference"]
    assert delta["per_seed"] == pytest.approx([-0.02, -0.01]) and delta["mean"] == pytest.approx(-0.015)
    assert result["iso0.2"]["IVF-PQ 16x / flat"]["mean"] == pytest.approx(0.94)
    # a variant one seed lacks (the seed-independent baselines) is averaged over the seeds that have it
    assert result["base"]["nDCG@10"]["per_seed"] == [0.6451, None]
    assert result["base"]["nDCG@10"]["mean"] == pytest.approx(0.6451) and result["base"]["nDCG@10"]["spread"] is None
    assert result["base"]["SQ8 / flat"]["mean"] is None
    assert "| iso0.2 | 0.6750 |" in proc.stdout and "-0.0200 / -0.0100" in proc.stdout


def test_unknown_reference_missing_or_malformed_file_are_usage_errors(tmp_path):
    seed_a = write(tmp_path / "a.json", [variant("iso0", 0.68)])
    out = tmp_path / "seeds.json"
    bad_ref = subprocess.run([sys.executable, str(SCRIPT), str(seed_a), "--reference", "iso9", "--output", str(out)],
                             capture_output=True, text=True, timeout=60)
    assert bad_ref.returncode == 2 and "iso9" in bad_ref.stderr and "iso0" in bad_ref.stderr
    missing = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "nope.json"), "--output", str(out)],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "nope.json" in missing.stderr
    broken = tmp_path / "broken.json"
    broken.write_text('{"variants": [{"metrics": {}}')
    malformed = subprocess.run([sys.executable, str(SCRIPT), str(seed_a), str(broken), "--output", str(out)],
                               capture_output=True, text=True, timeout=60)
    assert malformed.returncode == 2 and "broken.json" in malformed.stderr
    no_metrics = write(tmp_path / "no_metrics.json", [{"name": "iso0", "isotropy": {}}])
    incomplete = subprocess.run([sys.executable, str(SCRIPT), str(no_metrics), "--output", str(out)],
                                capture_output=True, text=True, timeout=60)
    assert incomplete.returncode == 2 and "no_metrics.json" in incomplete.stderr and "metrics" in incomplete.stderr
    assert not out.exists()
