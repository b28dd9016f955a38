"""Kornblith et al.'s layer × layer CKA heatmap between two seeds, with the grounding test."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from convergent.figures.style import Palette, panels, unavailable
from convergent.findings.layers import grounded_layers, layer_matrix

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


def layer_identification(cka: pd.DataFrame | None, palette: Palette,
                         missing: str = "no cross-layer table (the sweep needs at least two seeds)") -> Figure:
    """Kornblith et al.'s Table 2 on this sweep: per measure, the fraction of layer identifications
    (each layer of one seed against every layer of the other, both directions) that pick the
    same layer; one bar per width, one panel per frozen_k. Black diamonds: the paper's numbers
    (CIFAR-10 CNNs), for comparison, not targets. A measure undefined in every layer says why."""
    from convergent.findings.layers import identification_table

    if cka is None or cka.empty:
        p = panels(1)
        p.axes[0].set_title("layer identification")
        unavailable(p.axes[0], missing if cka is None else "the cross-layer table has no rows")
        return p.fig
    table = identification_table(cka)
    measures = list(dict.fromkeys(table["measure"]))
    labels = dict(zip(table["measure"], table["label"]))
    ks = sorted(int(k) for k in table["frozen_k"].unique())
    widths = sorted(int(w) for w in table["width"].unique())
    p = panels(len(ks), ncols=1, size=(max(6.0, 0.55 * len(measures) * max(1, len(widths)) ** 0.5), 3.4))
    bar = 0.8 / len(widths)
    x = np.arange(len(measures))
    for ax, k in zip(p.axes, ks):
        cell = table[table["frozen_k"] == k]
        for i, w in enumerate(widths):
            g = cell[cell["width"] == w].groupby("measure")[["n_identified", "n_defined"]].sum()
            g = g.reindex(measures)
            frac = (g["n_identified"] / g["n_defined"].where(g["n_defined"] > 0)).to_numpy(dtype=float)
            pos = x - 0.4 + bar * (i + 0.5)
            ax.bar(pos, np.nan_to_num(frac), bar, color=palette.colour("width", w) if palette.widths else None,
                   label=f"width {w}")
            for xp, f in zip(pos, frac):
                if np.isfinite(f) and f == 0:      # a zero bar is invisible: say it
                    ax.text(xp, 0.01, "0", fontsize=6, ha="center", va="bottom", color="0.3")
                if not np.isfinite(f):
                    ax.text(xp, 0.02, "n/a: undefined\n(d > n?)", rotation=90, fontsize=6, ha="center",
                            va="bottom", color="0.3")
        paper = cell.drop_duplicates("measure").set_index("measure")["paper_fraction"].reindex(measures)
        ax.plot(x, paper.to_numpy(dtype=float), "D", color="black", ms=5,
                label="Kornblith et al. 2019, Table 2 (CIFAR-10)")
        ax.axhline(1.0, color="0.6", lw=0.8, ls=":")
        ax.set_ylim(0, 1.05)
        ax.set_xticks(x, [labels[m] for m in measures], rotation=50, ha="right", fontsize=7)
        ax.set_ylabel("layers identified (fraction)")
        ax.set_title(f"frozen_k = {k}: is the most similar layer of the other seed the same layer?")
        ax.legend(fontsize=7, ncols=2, loc="upper right")
    return p.fig
