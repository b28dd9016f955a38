"""Sweep figures: each headline measure against layer, width and frozen_k.

Lines are means over seed pairs with a 95 % bootstrap band; the floor (untrained
pair) and ceiling (a network with itself) are drawn dashed where the table has them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from convergent.stats import summarise  # noqa: E402

#: measures shown when present, in this order; others with a scalar value follow
HEADLINE = ["cka_linear", "hungarian_mean_corr", "cka_debiased", "semi_mean_corr",
            "subspace_similarity", "alignment_top_c"]
CONTROL_STYLE = {"cross": "-", "floor": ":", "ceiling": "--"}
MAX_PANELS = 4


def headline_measures(measures: pd.DataFrame) -> list[str]:
    """Scalar measures (no parameter) to plot, headline ones first."""
    scalar = measures[measures["parameter"].isna() | (measures["parameter"].astype(str) == "")]
    present = [m for m in HEADLINE if m in set(scalar["measure"])]
    others = sorted(set(scalar["measure"]) - set(present) - {m for m in scalar["measure"] if m.startswith("dead_")})
    return (present + others)[:MAX_PANELS]


def _scalar_rows(measures: pd.DataFrame, dataset: str, arch: str) -> pd.DataFrame:
    rows = measures[(measures["dataset"] == dataset) & (measures["arch"] == arch)]
    return rows[rows["parameter"].isna() | (rows["parameter"].astype(str) == "")]


def _plot_series(ax, x, summary: pd.DataFrame, label: str, color, style: str) -> None:
    ax.plot(x, summary["mean"], style, color=color, marker="o", ms=3, label=label)
    if style == "-":
        ax.fill_between(x, summary["ci_low"], summary["ci_high"], color=color, alpha=0.2, lw=0)


def plot_measure_vs(rows: pd.DataFrame, measure: str, x: str, series: str, ax) -> int:
    """Draw one panel: ``measure`` against column ``x``, one coloured line per ``series`` value.

    Returns the number of cross-seed series drawn.
    """
    data = rows[rows["measure"] == measure]
    levels = sorted(data[series].unique())
    cmap = plt.get_cmap("viridis", max(len(levels), 2))
    drawn = 0
    for i, level in enumerate(levels):
        for control, style in CONTROL_STYLE.items():
            sub = data[(data[series] == level) & (data["control"] == control)]
            if sub.empty:
                continue
            summary = summarise(sub, [x])
            label = f"{series}={level}" if control == "cross" else None
            _plot_series(ax, summary[x].to_numpy(), summary, label, cmap(i), style)
            drawn += control == "cross"
    ax.set_title(measure)
    ax.set_xlabel(x)
    ax.grid(alpha=0.3)
    return drawn


def figure_for(measures: pd.DataFrame, dataset: str, arch: str, kind: str, path: str | os.PathLike) -> Path:
    """One PNG (and SVG beside it) with a panel per headline measure."""
    rows = _scalar_rows(measures, dataset, arch)
    names = headline_measures(rows)
    if not names:
        raise ValueError(f"no scalar measures for {dataset}/{arch} to plot")
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        if kind == "vs_layer":
            sub = rows[rows["frozen_k"] == rows["frozen_k"].min()]
            plot_measure_vs(sub, name, "layer_index", "width", ax)
        elif kind == "vs_width":
            sub = rows[rows["frozen_k"] == rows["frozen_k"].min()]
            plot_measure_vs(sub, name, "width", "layer_index", ax)
            ax.set_xscale("log", base=2)
        elif kind == "vs_frozen":
            sub = rows[rows["width"] == rows["width"].max()]
            plot_measure_vs(sub, name, "frozen_k", "layer_index", ax)
        else:
            raise ValueError(f"unknown figure kind {kind!r}")
        ax.set_ylabel("value (similarity)")
    axes[0][0].legend(fontsize=7, loc="best")
    fig.suptitle(f"{dataset} / {arch}: {kind.replace('_', ' ')} "
                 "(mean over seed pairs, 95% bootstrap band; dotted floor = untrained, dashed ceiling = self)",
                 fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    fig.savefig(path.with_suffix(".svg"))
    plt.close(fig)
    return path


def sweep_figures(measures: pd.DataFrame, runs: pd.DataFrame, paths: Sequence[str]) -> list[Path]:
    """Draw every ``{dataset}_{arch}_{kind}.png`` in ``paths`` from the tidy measures table."""
    out = []
    for path in paths:
        stem = Path(path).stem
        dataset, arch, kind = stem.split("_", 2)
        out.append(figure_for(measures, dataset, arch, kind, path))
    return out


__all__ = ["sweep_figures", "figure_for", "plot_measure_vs", "headline_measures"]
