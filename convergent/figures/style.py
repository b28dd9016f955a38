"""Shared look of every figure: one colour per sweep level, control line styles, saving.

Colours are fixed per experiment by :class:`Palette`, built once from the whole sweep, so a
width (or frozen_k, or layer) has the same colour in every figure even when a table lacks
some levels. Cross-seed pairs are solid lines with the findings' 95 % band (the Multi-Bootstrap
over seeds and example blocks, :func:`convergent.stats.summarise`; none with fewer than 3 seeds); the
floor (untrained networks of the same seeds) is dotted and the ceiling (a network with
itself, split halves) dashed, in the same colour as their series.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from convergent.logs import get_logger  # noqa: E402
from convergent.stats import summarise  # noqa: E402

#: print-readable sizes; a fixed SVG hash salt makes SVG files reproducible byte for byte
STYLE: dict[str, Any] = {
    "font.size": 9, "axes.titlesize": 9.5, "axes.labelsize": 9, "legend.fontsize": 8,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "figure.titlesize": 10.5, "lines.linewidth": 1.6,
    "axes.grid": True, "grid.alpha": 0.3, "svg.hashsalt": "convergent", "svg.fonttype": "path",
}
matplotlib.rcParams.update(STYLE)

CONTROL_STYLE = {"cross": "-", "floor": ":", "ceiling": "--", "data_order": (0, (6, 2, 1, 2)),
                 "chance": (0, (1, 1.5))}
CONTROL_LABEL = {"cross": "cross seeds (mean, 95% CI)", "floor": "floor: untrained pair",
                 "ceiling": "ceiling: network with itself",
                 "data_order": "data-order ceiling: same init,\nother minibatch order",
                 "chance": "chance level of the cross pairs\n(images permuted; measures.csv chance)"}
#: colour maps per sweep axis, and the part of each used (the light ends are unreadable in print)
CMAPS = {"width": ("viridis", 0.0, 0.85), "frozen_k": ("plasma", 0.0, 0.8), "layer": ("cividis", 0.0, 0.9)}
FALLBACK = "0.5"
PANEL_SIZE = (3.5, 2.9)
UNAVAILABLE_GID = "unavailable"


def level_colour(value: Any, levels: Sequence[Any], axis: str) -> tuple[float, float, float, float] | str:
    """The colour of ``value`` among the sorted ``levels`` of a sweep ``axis`` (width, frozen_k, layer).

    The one colour map function of the package: position in the level list → colour map, so
    a level keeps its colour wherever it is drawn. Values not among the levels are grey.
    """
    name, lo, hi = CMAPS[axis]
    levels = list(levels)
    if value not in levels:
        return FALLBACK
    pos = levels.index(value) / max(len(levels) - 1, 1)
    return plt.get_cmap(name)(lo + (hi - lo) * pos)


@dataclass(frozen=True)
class Palette:
    """Levels of each sweep axis in one experiment; :meth:`colour` gives their fixed colours."""

    widths: tuple[int, ...] = ()
    frozen_ks: tuple[int, ...] = ()
    layers: tuple[str, ...] = ()

    @classmethod
    def from_tables(cls, *frames: pd.DataFrame | None) -> "Palette":
        """Levels found in any of ``frames`` (runs, measures, ...); layers in depth order."""
        widths: set[int] = set()
        frozen: set[int] = set()
        layers: dict[str, float] = {}
        for frame in frames:
            if frame is None or frame.empty:
                continue
            if "width" in frame:
                widths |= {int(w) for w in frame["width"].dropna().unique()}
            if "frozen_k" in frame:
                frozen |= {int(k) for k in frame["frozen_k"].dropna().unique()}
            if {"layer", "layer_index"} <= set(frame.columns):
                for layer, idx in frame[["layer", "layer_index"]].drop_duplicates().itertuples(index=False):
                    layers.setdefault(str(layer), float(idx))
        return cls(tuple(sorted(widths)), tuple(sorted(frozen)), tuple(sorted(layers, key=layers.__getitem__)))

    def colour(self, axis: str, value: Any) -> Any:
        levels = {"width": self.widths, "frozen_k": self.frozen_ks, "layer": self.layers}[axis]
        value = str(value) if axis == "layer" else int(value)
        return level_colour(value, levels, axis)


@dataclass
class Panels:
    """A figure with ``n`` panels in rows of at most ``ncols``; unused grid cells are hidden."""

    fig: Figure
    axes: list[Axes] = field(default_factory=list)
    ncols: int = 1

    def set_ylabel(self, label: str) -> None:
        """Label the y axis of the first panel of every row."""
        for ax in self.axes[::self.ncols]:
            ax.set_ylabel(label)


def panels(n: int, ncols: int = 3, size: tuple[float, float] = PANEL_SIZE, nrows: int | None = None,
           **kw: Any) -> Panels:
    """Make a figure with ``n`` panels (``nrows`` × ``ncols`` if ``nrows`` is given)."""
    n = max(n, 1)
    if nrows is None:
        ncols = min(ncols, n)
        nrows = int(np.ceil(n / ncols))
    fig, grid = plt.subplots(nrows, ncols, figsize=(size[0] * ncols + 1.6, size[1] * nrows + 0.5),
                             squeeze=False, layout="constrained", **kw)
    flat = list(grid.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return Panels(fig, flat[:n], ncols)


def unavailable(ax: Axes, reason: str, prefix: str = "not available in this sweep:") -> None:
    """Turn ``ax`` into a "not available in this sweep" panel (or another ``prefix``) and log why."""
    get_logger().info("panel %r: %s %s", ax.get_title() or "(untitled)", prefix, reason)
    ax.text(0.5, 0.5, prefix + "\n" + _wrap(reason), ha="center", va="center",
            transform=ax.transAxes, fontsize=8.5, color="0.3", gid=UNAVAILABLE_GID, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def _wrap(text: str, width: int = 38) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def is_unavailable(ax: Axes) -> bool:
    """True if ``ax`` was turned into a "not available" panel."""
    return any(t.get_gid() == UNAVAILABLE_GID for t in ax.texts)


def draw_summary(ax: Axes, summary: pd.DataFrame, x: str, colour: Any, control: str, label: str) -> Line2D:
    """One series of :func:`convergent.stats.summarise` output: mean line, band for cross pairs.

    Floor and ceiling lines get a label starting with ``_`` so they stay out of the legend
    (the legend explains their line styles once) and out of series counts.
    """
    xs = summary[x].to_numpy(dtype=float)
    (line,) = ax.plot(xs, summary["mean"], ls=CONTROL_STYLE[control], color=colour, marker="o" if control == "cross"
                      else None, ms=3.5, label=label if control == "cross" else f"_{control} {label}")
    if control == "cross" and (summary["ci_high"] > summary["ci_low"]).any():
        ax.fill_between(xs, summary["ci_low"], summary["ci_high"], color=colour, alpha=0.18, lw=0)
    return line


def draw_controls(ax: Axes, rows: pd.DataFrame, x: str, colour: Any, label: str,
                  controls: Iterable[str] = ("cross", "floor", "ceiling", "data_order")) -> int:
    """Draw the cross series of ``rows`` (mean over seed pairs against ``x``) with its floor and
    ceilings (self pair; data-order pairs) where ``rows`` has them. Returns the number of cross
    series drawn (0 or 1)."""
    drawn = 0
    for control in controls:
        sub = rows[rows["control"] == control] if "control" in rows else rows
        if sub.empty:
            continue
        summary = summarise(sub, [x])
        if summary.empty:
            continue
        draw_summary(ax, summary, x, colour, control, label)
        drawn += control == "cross"
        if control == "cross" and has_chance(sub):
            # the chance level beside the value: how much of a rise is what unrelated networks get
            chance = summarise(sub.assign(value=sub["chance"]), [x])
            ax.plot(chance[x].to_numpy(float), chance["mean"], ls=CONTROL_STYLE["chance"], color=colour, lw=1.0,
                    label=f"_chance {label}")
    return drawn


def has_chance(rows: pd.DataFrame) -> bool:
    """Whether ``rows`` carry a finite chance level (measures.csv ``chance``) to draw."""
    return "chance" in rows and bool(np.isfinite(pd.to_numeric(rows["chance"], errors="coerce")).any())


def control_handles(controls: Iterable[str]) -> list[Line2D]:
    """Legend entries explaining the line style of each control present (black, not on any axes)."""
    return [Line2D([], [], color="black", ls=CONTROL_STYLE[c], label=CONTROL_LABEL[c]) for c in controls]


def figure_legend(fig: Figure, handles: Sequence[Any], title: str | None = None) -> None:
    """One legend for the whole figure, outside the panels on the right."""
    if handles:
        fig.legend(handles=list(handles), loc="outside right center", title=title, frameon=False)


def series_handles(axes: Iterable[Axes]) -> list[Line2D]:
    """The labelled (cross-pair) lines of ``axes``, one per label, in drawing order."""
    seen: dict[str, Line2D] = {}
    for ax in axes:
        for line in ax.get_lines():
            label = line.get_label()
            if not label.startswith("_") and label not in seen:
                seen[label] = line
    return list(seen.values())


def layer_ticks(ax: Axes, rows: pd.DataFrame) -> None:
    """Label a layer_index axis with the layer names."""
    pairs = rows[["layer_index", "layer"]].drop_duplicates().sort_values("layer_index")
    ax.set_xticks(pairs["layer_index"].to_numpy(dtype=float), pairs["layer"].astype(str).tolist())


def width_ticks(ax: Axes, widths: Sequence[int]) -> None:
    """Log₂ width axis with the sweep's widths as tick labels."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(widths), [str(w) for w in widths])
    ax.minorticks_off()


def save_figure(fig: Figure, png: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``png`` and the SVG beside it, reproducibly (no dates), and close the figure."""
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    svg = png.with_suffix(".svg")
    fig.savefig(png, dpi=150, metadata={"Software": None})
    fig.savefig(svg, metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return png, svg
