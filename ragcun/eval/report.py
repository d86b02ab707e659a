"""The evaluation report: ``metrics.json``, ``report.md`` and ``report.html`` with PNG plots.

Plots (matplotlib, Agg backend, so no display is needed):

- ``training_curves.png``: per trained checkpoint, the loss parts (whatever the loss returned: total, contrastive,
  sigreg, variance)
  and the learning rate per optimizer step (``training.log``), and validation nDCG@10 per epoch
  (``metrics.json``), both written by ``jobs/train.py`` beside the checkpoint;
- ``eigen_spectrum.png``: the covariance eigenvalues of each model's corpus embeddings, normalised to sum 1,
  largest first, on a log scale: an isotropic cloud is flat at 1/D;
- ``projections.png``: histograms of the corpus embeddings projected on random unit directions, against
  the N(0, 1) density that SIGReg targets (so both shape and scale show);
- ``frontier.png`` (two or more embedding models): nDCG@10 against the Epps–Pulley statistic, log scale;
- the isotropy measures of :mod:`ragcun.eval.isotropy` side by side in the tables.
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ragcun.eval.compare import HEADLINE_METRICS, VariantResult, results_table
from ragcun.fs import check_output_directory, replace_directory, staging_directory
from ragcun.losses.gaussian import DIAGNOSTICS

logger = logging.getLogger(__name__)

NUM_PROJECTIONS = 3
# Per-step fields of training.log that are not loss parts; every other number is one (whatever the loss returned).
NOT_LOSS_PARTS = {"step", "epoch", "lr", "grad_norm", "triplets_per_s", *DIAGNOSTICS}


def read_training_history(training_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(per-step log, per-epoch metrics) written by jobs/train.py; empty lists where absent."""
    steps: list[dict[str, Any]] = []
    log = training_dir / "training.log"
    if log.exists():
        for line in log.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    steps.append(json.loads(line))
                except json.JSONDecodeError:
                    logger.warning("%s: skipping a line that is not JSON", log)
    epochs: list[dict[str, Any]] = []
    metrics = training_dir / "metrics.json"
    if metrics.exists():
        epochs = json.loads(metrics.read_text(encoding="utf-8"))
    return steps, epochs


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_training_curves(results: list[VariantResult], path: Path) -> bool:
    histories = {r.name: read_training_history(r.training_dir) for r in results if r.training_dir}
    histories = {k: v for k, v in histories.items() if v[0] or v[1]}
    if not histories:
        return False
    plt = _plt()
    from matplotlib.lines import Line2D

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    parts = list(dict.fromkeys(k for steps, _ in histories.values() for s in steps for k, v in s.items()
                               if k not in NOT_LOSS_PARTS and isinstance(v, (int, float))))
    styles = {part: ("-", "--", ":", "-.")[i % 4] for i, part in enumerate(parts)}
    for i, (name, (steps, epochs)) in enumerate(histories.items()):
        colour = f"C{i % 10}"  # one colour per run, one line style per loss part
        if steps:
            x = [s["step"] for s in steps]
            for part, style in styles.items():
                if any(part in s for s in steps):
                    axes[0].plot(x, [s.get(part, math.nan) for s in steps], style, color=colour, lw=1)
            axes[1].plot(x, [s.get("lr", math.nan) for s in steps], color=colour, label=name)
        if epochs:
            axes[2].plot([e["epoch"] for e in epochs], [e.get("val_ndcg@10", math.nan) for e in epochs], "o-",
                         color=colour, label=name)
    handles = [Line2D([], [], color=f"C{i % 10}", label=name) for i, name in enumerate(histories)]
    handles += [Line2D([], [], color="grey", ls=style, label=part) for part, style in styles.items()]
    axes[0].legend(handles=handles, fontsize=7)
    axes[0].set(title="training loss parts (per step)", xlabel="optimizer step", yscale="symlog")
    axes[1].set(title="learning rate", xlabel="optimizer step")
    axes[2].set(title="validation nDCG@10", xlabel="epoch")
    for ax in axes:
        ax.grid(alpha=0.3)
    for ax in axes[1:]:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_eigen_spectrum(results: list[VariantResult], path: Path) -> None:
    from ragcun.eval.isotropy import covariance_eigenvalues

    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in results:
        eig = covariance_eigenvalues(r.corpus_embeddings)
        ax.plot(np.arange(1, len(eig) + 1), eig / max(eig.sum(), 1e-30), label=r.name)
        dim = len(eig)
    ax.axhline(1.0 / dim, color="grey", ls=":", label=f"isotropic (1/{dim})")
    # A rank-deficient cloud has eigenvalues at round-off level (1e-18); they would hide the rest.
    ax.set_ylim(bottom=1e-7)
    ax.set(yscale="log", xlabel="eigenvalue rank", ylabel="share of total variance",
           title="covariance eigen-spectrum of the corpus embeddings")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_projections(results: list[VariantResult], path: Path, seed: int = 0) -> None:
    plt = _plt()
    rng = np.random.default_rng(seed)
    columns = min(3, len(results))
    rows = math.ceil(len(results) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(results):]:
        ax.axis("off")
    grid = np.linspace(-4, 4, 200)
    normal = np.exp(-grid**2 / 2) / math.sqrt(2 * math.pi)
    for ax, r in zip(axes.flat, results):
        directions = rng.standard_normal((r.corpus_embeddings.shape[1], NUM_PROJECTIONS))
        directions /= np.linalg.norm(directions, axis=0, keepdims=True)
        projected = r.corpus_embeddings @ directions
        for j in range(NUM_PROJECTIONS):
            ax.hist(projected[:, j], bins=60, range=(-4, 4), density=True, histtype="step",
                    label=f"direction {j + 1} (std {projected[:, j].std():.2f})")
        ax.plot(grid, normal, "k--", label="N(0, 1)")
        ax.set(title=r.name, xlabel="projection")
        ax.legend(fontsize=7)
    fig.suptitle("random 1-D projections of the corpus embeddings vs N(0, 1)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_frontier_points(points: list[tuple[str, float, float, tuple[float, float] | None]], path: Path,
                         ylabel: str = "nDCG@10", title: str = "retrieval quality against Gaussianity") -> None:
    """nDCG@10 against the Epps–Pulley statistic (log scale; ≈ 1 for N(0, I)): what Gaussianity costs or buys.
    ``points``: (label, Epps–Pulley, nDCG@10, optional (low, high) range of the nDCG@10 over seeds)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (label, epps_pulley, ndcg, spread) in enumerate(points):
        yerr = None if spread is None else [[max(0.0, ndcg - spread[0])], [max(0.0, spread[1] - ndcg)]]
        ax.errorbar(epps_pulley, ndcg, yerr=yerr, fmt="o", capsize=3, color=f"C{i % 10}", label=label)
    ax.axvline(1.0, color="grey", ls=":", label="N(0, I)")
    ax.set(xscale="log", xlabel="Epps–Pulley statistic of the corpus embeddings (log; ≈ 1 for N(0, I))",
           ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_frontier(results: list[VariantResult], path: Path) -> bool:
    """The report's frontier: one point per embedding model (needs two)."""
    points = [(r.name, r.isotropy["epps_pulley"], r.metrics["ndcg@10"], None)
              for r in results if r.isotropy and r.mode == "dense"]
    if len(points) < 2:
        return False
    plot_frontier_points(points, path)
    return True


def compression_table(results: list[VariantResult]) -> str:
    rows = ["| model | index | FAISS | bytes/vector | compression | nDCG@10 | relative to flat |", "|---|---|---|---|---|---|---|"]
    for r in results:
        for index_type, c in r.compression.items():
            rel = c.get("relative_ndcg@10")
            rows.append(f"| {r.name} | {index_type} | {c['faiss_factory']} | {c['bytes_per_vector']} | "
                        f"{c['compression']}× | {c['metrics']['ndcg@10']:.4f} | "
                        f"{'–' if rel is None else f'{rel:.3f}'} |")
    return "\n".join(rows) if len(rows) > 2 else ""


def _markdown(results: list[VariantResult], meta: dict[str, Any], plots: list[tuple[str, str]]) -> str:
    parts = [f"# ragcun evaluation report\n\n{meta.get('data', '')}: {meta.get('num_queries')} queries over "
             f"{meta.get('num_documents')} documents. Written {meta.get('date')}.\n",
             "## Retrieval and isotropy\n",
             "IsoScore (Rudman et al. 2022; 1 = isotropic), effective rank (Roy & Vetterli 2007; D = isotropic), "
             "mean cosine (Ethayarajh 2019; 0 = isotropic) and the Epps–Pulley statistic against N(0, 1) (SIGReg's; "
             "≈ 1 for Gaussian samples, larger is further) are computed on the corpus embeddings as each model "
             "outputs them (after whitening for a whitened model).\n",
             results_table(results) + "\n"]
    table = compression_table(results)
    if table:
        parts += ["## Compressed indexes\n", table + "\n"]
    parts.append("## Plots\n")
    for title, file in plots:
        parts.append(f"### {title}\n\n![{title}]({file})\n")
    return "\n".join(parts)


def _markdown_table_to_html(table: str) -> str:
    lines = [line.strip().strip("|").split("|") for line in table.strip().splitlines()]
    head, body = lines[0], lines[2:]
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(c.strip())}</th>" for c in head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in row) + "</tr>" for row in body]
    return "\n".join(out + ["</table>"])


def _html(results: list[VariantResult], meta: dict[str, Any], plots: list[tuple[str, str]]) -> str:
    body = [f"<h1>ragcun evaluation report</h1><p>{html.escape(str(meta.get('data', '')))}: "
            f"{meta.get('num_queries')} queries over {meta.get('num_documents')} documents. "
            f"Written {html.escape(str(meta.get('date')))}.</p>",
            "<h2>Retrieval and isotropy</h2>", _markdown_table_to_html(results_table(results))]
    table = compression_table(results)
    if table:
        body += ["<h2>Compressed indexes</h2>", _markdown_table_to_html(table)]
    body.append("<h2>Plots</h2>")
    for title, file in plots:
        body.append(f"<h3>{html.escape(title)}</h3><img src=\"{html.escape(file)}\" alt=\"{html.escape(title)}\" "
                    "style=\"max-width:100%\">")
    style = ("body{font-family:sans-serif;max-width:1400px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}")
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>ragcun evaluation report</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")


REPORT_KIND = "report"


def _is_old_report(directory: Path) -> bool:
    """A report written before output markers existed."""
    return (directory / "report.md").is_file() and (directory / "metrics.json").is_file()


def check_report_output(out_dir: str | os.PathLike) -> Path:
    """Refuse, before any evaluation, a --report path that holds something other than a ragcun report."""
    return check_output_directory(out_dir, REPORT_KIND, _is_old_report, flag="--report")


def write_report(results: list[VariantResult], out_dir: str | os.PathLike, meta: dict[str, Any]) -> Path:
    """Write metrics.json, report.md, report.html and the PNGs into ``out_dir`` (replaced as a whole: built in
    a temporary directory beside it and renamed, so a failure leaves no half-written report)."""
    out = check_report_output(out_dir)
    tmp = staging_directory(out)
    try:
        plots = []
        if plot_training_curves(results, tmp / "training_curves.png"):
            plots.append(("Training curves", "training_curves.png"))
        clouds = [r for r in results if r.mode == "dense"]  # BM25 has no embeddings; hybrid repeats its model's
        if clouds:
            plot_eigen_spectrum(clouds, tmp / "eigen_spectrum.png")
            plots.append(("Covariance eigen-spectrum", "eigen_spectrum.png"))
            plot_projections(clouds, tmp / "projections.png")
            plots.append(("Random 1-D projections vs N(0, 1)", "projections.png"))
            if plot_frontier(clouds, tmp / "frontier.png"):
                plots.append(("nDCG@10 against Epps–Pulley", "frontier.png"))
        payload = {**meta, "headline_metrics": list(HEADLINE_METRICS), "variants": [r.to_dict() for r in results]}
        (tmp / "metrics.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        (tmp / "report.md").write_text(_markdown(results, meta, plots), encoding="utf-8")
        (tmp / "report.html").write_text(_html(results, meta, plots), encoding="utf-8")
        replace_directory(tmp, out, REPORT_KIND, _is_old_report, flag="--report")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out
