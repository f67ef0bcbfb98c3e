"""Bench plots: latency bars per case and stage, sweep heatmaps, PNGs written atomically.

matplotlib (Agg) is imported inside the functions; never torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgerestore.errors import UserError
from edgerestore.files import write_bytes_atomic
from edgerestore.measure.cases import REPORT_STAGES, CaseResult


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path) -> Path:
    """Save a matplotlib figure as PNG atomically (temp file + rename)."""
    import io

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    finally:
        pyplot().close(fig)
    return write_bytes_atomic(path, buffer.getvalue())


def plot_latency(cases: Sequence[CaseResult], path: str | Path, title: str = "") -> Path:
    """Per-stage boxplots (one panel per case) and the CDF of the total per case, as one PNG."""
    plt = pyplot()
    cases = [c for c in cases if c.samples]
    if not cases:
        raise UserError("no per-frame samples to plot (baselines are stored without them)")
    fig, axes = plt.subplots(1, len(cases) + 1, figsize=(3.6 * (len(cases) + 1), 3.8), squeeze=False)
    for ax, c in zip(axes[0], cases):
        names = [s for s in REPORT_STAGES if c.samples.get(s)]
        ax.boxplot([c.samples[s] for s in names], whis=(1, 99), showfliers=True, flierprops={"markersize": 2})
        ax.set_xticks(range(1, len(names) + 1), names, rotation=30)
        ax.set_ylabel("ms")
        ax.set_title(f"{c.size[1]}x{c.size[0]} {c.precision} {c.condition}", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    cdf = axes[0][-1]
    for c in cases:
        x = np.sort(np.asarray(c.samples["total"]))
        cdf.plot(x, np.arange(1, x.size + 1) / x.size, label=f"{c.size[1]}x{c.size[0]} {c.precision}")
    cdf.set_xlabel("total ms")
    cdf.set_ylabel("fraction of frames")
    cdf.set_title("CDF of frame latency", fontsize=9)
    cdf.grid(alpha=0.3)
    cdf.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_heatmap(
    values: np.ndarray,
    rows: Sequence[Any],
    cols: Sequence[Any],
    path: str | Path,
    *,
    row_label: str,
    col_label: str,
    title: str,
    unit: str = "ms",
) -> Path:
    """A heatmap of `values[row, col]` with every cell annotated."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(cols), 1.0 + 0.6 * len(rows)))
    im = ax.imshow(values, cmap="viridis", aspect="auto", origin="lower")
    ax.set_xticks(range(len(cols)), [str(c) for c in cols])
    ax.set_yticks(range(len(rows)), [str(r) for r in rows])
    ax.set_xlabel(col_label)
    ax.set_ylabel(row_label)
    ax.set_title(title, fontsize=9)
    finite = values[np.isfinite(values)]
    mid = float(finite.mean()) if finite.size else 0.0
    for i in range(len(rows)):
        for j in range(len(cols)):
            v = values[i, j]
            text = "—" if not np.isfinite(v) else (f"{v:.0f}" if v >= 100 else f"{v:.1f}")
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if v < mid else "black")
    fig.colorbar(im, ax=ax, label=unit)
    fig.tight_layout()
    return save_figure(fig, path)
