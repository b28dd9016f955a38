"""Kornblith et al.'s layer × layer CKA heatmap between two seeds, with the grounding test."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from convergent.figures.grounding import grounded_layers, layer_matrix
from convergent.figures.style import Palette, panels, unavailable

HEATMAP_CMAP = "magma"
MAX_ANNOTATED = 8   # print the value in each cell up to this many layers


def cka_layers(cka: pd.DataFrame | None, palette: Palette,
               missing: str = "no cross-layer CKA table (the sweep needs at least two seeds)") -> Figure:
    """One heatmap per (frozen_k, width): rows are layers of seed A, columns layers of seed B,
    colour is linear CKA on a shared 0–1 scale; the panel title gives the grounding fraction
    (layers of A whose most similar layer of B is the same layer; boxed cells on the diagonal)."""
    if cka is None or cka.empty:
        p = panels(1)
        p.axes[0].set_title("layer × layer CKA")
        unavailable(p.axes[0], missing if cka is None else "the cross-layer CKA table has no rows")
        return p.fig
    ks = sorted(int(k) for k in cka["frozen_k"].unique())
    widths = [w for w in palette.widths if (cka["width"] == w).any()] or sorted(int(w) for w in cka["width"].unique())
    p = panels(len(ks) * len(widths), nrows=len(ks), ncols=len(widths), size=(3.2, 3.0))
    image = None
    for r, k in enumerate(ks):
        for c, width in enumerate(widths):
            ax = p.axes[r * len(widths) + c]
            cell = cka[(cka["frozen_k"] == k) & (cka["width"] == width)]
            ax.set_title(f"width {width}, frozen_k = {k}")
            if cell.empty:
                unavailable(ax, f"no cross-layer CKA at width {width}, frozen_k {k}")
                continue
            # one pair per cell by construction; take the first if a table ever holds more
            seeds = cell[["seed_a", "seed_b"]].drop_duplicates().sort_values(["seed_a", "seed_b"]).iloc[0]
            pair = cell[(cell["seed_a"] == seeds["seed_a"]) & (cell["seed_b"] == seeds["seed_b"])]
            matrix = layer_matrix(pair)
            image = _heatmap(ax, matrix)
            g = grounded_layers(matrix.to_numpy())
            ax.set_title(f"width {width}, frozen_k = {k}\nseed {seeds['seed_a']} vs {seeds['seed_b']}: "
                         f"grounding {int(g.sum())}/{g.size}")
            ax.set_xlabel(f"layer of seed {seeds['seed_b']}")
            ax.set_ylabel(f"layer of seed {seeds['seed_a']}")
    if image is not None:
        p.fig.colorbar(image, ax=p.axes, label="linear CKA (similarity, 0 to 1)", shrink=0.8)
    return p.fig


def _heatmap(ax, matrix: pd.DataFrame):
    """Draw one CKA matrix; box the diagonal cells that pass the grounding test."""
    values = matrix.to_numpy(dtype=float)
    image = ax.imshow(values, cmap=HEATMAP_CMAP, vmin=0.0, vmax=1.0, origin="upper")
    ax.set_xticks(range(values.shape[1]), [str(c) for c in matrix.columns], rotation=45, ha="right")
    ax.set_yticks(range(values.shape[0]), [str(i) for i in matrix.index])
    ax.grid(False)
    if max(values.shape) <= MAX_ANNOTATED:
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if v > 0.6 else "white")
    for i, ok in enumerate(grounded_layers(values)):
        if ok:
            ax.add_patch(_box(i))
    return image


def _box(i: int):
    from matplotlib.patches import Rectangle

    return Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#1f9e89", lw=1.6)
