"""Figures drawn from the tidy measures table (``results/summary/measures.csv``) of one experiment.

Every function takes that experiment's rows and the sweep's :class:`Palette` and returns a
matplotlib Figure; cross-seed lines carry a label (one per series), floor and ceiling lines
are drawn in the same colour but unlabelled (their styles are explained once in the legend).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from convergent.figures.style import (
    CONTROL_STYLE, Palette, control_handles, draw_controls, figure_legend, has_chance, layer_ticks, panels,
    series_handles, unavailable, width_ticks,
)

#: the two headline similarities: basis (Li et al., Brown et al.) and representation (Kornblith et al.)
MATCHED_PANELS: tuple[tuple[str, str], ...] = (
    ("hungarian_mean_corr", "one-to-one matched correlation\n(mean Pearson r over units, −1 to 1)"),
    ("cka_linear", "linear CKA (similarity, 0 to 1)"),
)
#: the classic measures shown next to them in the per-layer and per-width figures
CLASSIC_PANELS: tuple[tuple[str, str], ...] = (
    ("cca_mean", "mean CCA ρ̄ (similarity, 0 to 1)"),
    ("svcca", "SVCCA ρ̄ (similarity, 0 to 1)"),
    ("pwcca", "PWCCA (similarity, 0 to 1)"),
    ("procrustes_angle", "Procrustes angle\n(distance, 0 to π/2 rad)"),
    ("linreg_r2_a_from_b", "linear regression R², A from B\n(in-sample, 0 to 1)"),
    ("rsa_sqeuclid_pearson", "RSA, squared-Euclidean RDMs,\nPearson (−1 to 1)"),
)
LAYER_AXIS = "layer (input → output)"
WIDTH_AXIS = "width (units or channels, log₂ scale)"


def rows_of(measures: pd.DataFrame, measure: str, **equal: object) -> pd.DataFrame:
    """Rows of ``measure`` whose columns equal the given values."""
    mask = measures["measure"] == measure
    for column, value in equal.items():
        mask &= measures[column] == value
    return measures[mask]


def defined_rows(ax, rows: pd.DataFrame, name: str) -> pd.DataFrame:
    """The finite rows of one measure, at its largest parameter value if it has several (named in
    the title; SVCCA's default variance_kept 0.99 is the largest one usually configured). A measure undefined everywhere turns the panel into a "not defined" panel with the
    reason from the table's note (e.g. CCA needs more samples than units); one undefined in some
    layers says so at the bottom of the panel. Returns the rows to draw (empty: nothing)."""
    if "parameter" in rows and rows["parameter"].fillna("").ne("").any():
        first = sorted(rows["parameter_value"].dropna().unique())[-1]
        rows = rows[rows["parameter_value"] == first]
        ax.set_title(f"{ax.get_title()}, {rows['parameter'].iloc[0]} = {first:g}")
    bad = rows[~np.isfinite(rows["value"].astype(float))]
    good = rows[np.isfinite(rows["value"].astype(float))]
    reason = ""
    if not bad.empty:
        notes = bad["note"].dropna().astype(str) if "note" in bad else pd.Series(dtype=str)
        reason = notes.iloc[0].removeprefix("unavailable: ") if len(notes) else "value missing"
    if good.empty:
        unavailable(ax, reason or f"no {name} rows", prefix="not defined:")
        return good
    if not bad.empty:
        layers = sorted(set(bad["layer"].astype(str))) if "layer" in bad else []
        import textwrap

        text = textwrap.fill("undefined at " + ", ".join(layers[:6]) + ": " + reason[:120], width=48)
        ax.text(0.02, 0.02, text, fontsize=5.5, color="0.3", transform=ax.transAxes, va="bottom")
    return good


def baseline_frozen(frame: pd.DataFrame) -> int:
    """frozen_k of the plain sweep: 0 when present, else the smallest value (0 if none)."""
    if frame.empty or "frozen_k" not in frame:
        return 0
    ks = sorted(int(k) for k in frame["frozen_k"].unique())
    return 0 if 0 in ks else ks[0]


def _controls_present(*frames: pd.DataFrame) -> list[str]:
    present = set().union(*(set(f["control"].unique()) for f in frames if not f.empty and "control" in f))
    if any(has_chance(f[f["control"] == "cross"] if "control" in f else f) for f in frames if not f.empty):
        present.add("chance")
    return [c for c in CONTROL_STYLE if c in present]


def _finish(fig: Figure, axes: Sequence, controls: Sequence[str], title: str | None = None) -> Figure:
    figure_legend(fig, [*series_handles(axes), *control_handles(controls)], title)
    return fig


def _lines_vs_layer(ax, rows: pd.DataFrame, palette: Palette, axis: str, levels: Sequence[int]) -> int:
    """One line per level of ``axis`` (width or frozen_k) against layer; returns series drawn."""
    drawn = 0
    for level in levels:
        sub = rows[rows[axis] == level]
        drawn += draw_controls(ax, sub, "layer_index", palette.colour(axis, level), f"{axis} {level}")
    if not rows.empty:
        layer_ticks(ax, rows)
    ax.set_xlabel(LAYER_AXIS)
    return drawn


def matched_vs_layer(measures: pd.DataFrame, palette: Palette) -> Figure:
    """Matched correlation and linear CKA against layer, then the classic measures
    (:data:`CLASSIC_PANELS`), one line per width (frozen_k = 0)."""
    base = baseline_frozen(measures)
    shown = MATCHED_PANELS + CLASSIC_PANELS
    p = panels(len(shown), ncols=2)
    used = []
    for ax, (name, ylabel) in zip(p.axes, shown):
        ax.set_title(f"{name} (frozen_k = {base})")
        rows = rows_of(measures, name, frozen_k=base)
        if rows.empty:
            unavailable(ax, f"the measures table has no {name} rows")
            continue
        rows = defined_rows(ax, rows, name)
        if rows.empty:
            continue
        _lines_vs_layer(ax, rows, palette, "width", palette.widths)
        ax.set_ylabel(ylabel)
        used.append(rows)
    return _finish(p.fig, p.axes, _controls_present(*used))


def frozen_vs_layer(measures: pd.DataFrame, palette: Palette) -> Figure:
    """The same two measures against layer, one line per frozen_k, one column per width."""
    present = sorted(int(k) for k in measures["frozen_k"].unique()) if not measures.empty else []
    if len(present) < 2:
        p = panels(1)
        p.axes[0].set_title("effect of freezing the first k layers")
        unavailable(p.axes[0], f"needs at least two frozen_k values; this sweep has {present or 'none'}")
        return p.fig
    widths = list(palette.widths) or sorted(int(w) for w in measures["width"].unique())
    p = panels(len(MATCHED_PANELS) * len(widths), nrows=len(MATCHED_PANELS), ncols=len(widths), sharey="row")
    used = []
    for r, (name, ylabel) in enumerate(MATCHED_PANELS):
        for c, width in enumerate(widths):
            ax = p.axes[r * len(widths) + c]
            ax.set_title(f"{name}, width {width}")
            rows = rows_of(measures, name, width=width)
            if rows.empty:
                unavailable(ax, f"no {name} rows at width {width}")
                continue
            _lines_vs_layer(ax, rows, palette, "frozen_k", palette.frozen_ks or present)
            if c == 0:
                ax.set_ylabel(ylabel)
            used.append(rows)
    return _finish(p.fig, p.axes, _controls_present(*used))


def vs_width(measures: pd.DataFrame, palette: Palette) -> Figure:
    """Matched correlation, CKA and the classic measures against width, one line per layer (frozen_k = 0)."""
    base = baseline_frozen(measures)
    widths = sorted(int(w) for w in measures["width"].unique()) if not measures.empty else []
    shown = MATCHED_PANELS + CLASSIC_PANELS
    p = panels(len(shown), ncols=2)
    used = []
    for ax, (name, ylabel) in zip(p.axes, shown):
        ax.set_title(f"{name} (frozen_k = {base})")
        rows = rows_of(measures, name, frozen_k=base)
        if len(widths) < 2 or rows.empty:
            unavailable(ax, f"needs at least two widths with {name} rows; this sweep has {widths or 'none'}")
            continue
        rows = defined_rows(ax, rows, name)
        if rows.empty:
            continue
        for layer in palette.layers:
            draw_controls(ax, rows[rows["layer"] == layer], "width", palette.colour("layer", layer),
                          f"layer {layer}")
        width_ticks(ax, widths)
        ax.set_xlabel(WIDTH_AXIS)
        ax.set_ylabel(ylabel)
        used.append(rows)
    return _finish(p.fig, p.axes, _controls_present(*used))


def _layer_panels(rows: pd.DataFrame, what: str, empty_title: str):
    """One panel per layer of ``rows``, in depth order: ``(panels, [(ax, layer, layer's rows)])``.

    Without rows, a single panel titled ``empty_title`` says the table has no ``what`` rows,
    and the list is empty.
    """
    layers = rows[["layer_index", "layer"]].drop_duplicates().sort_values("layer_index")
    p = panels(len(layers) or 1, sharey=True)
    if layers.empty:
        p.axes[0].set_title(empty_title)
        unavailable(p.axes[0], f"the measures table has no {what} rows")
    return p, [(ax, str(layer), rows[rows["layer_index"] == idx])
               for ax, (idx, layer) in zip(p.axes, layers.itertuples(index=False))]


def sorted_corr(measures: pd.DataFrame, palette: Palette) -> Figure:
    """Li et al.'s reliable vs unreliable units: matched correlations sorted from best to worst
    (``matched_corr_sorted`` against rank fraction), a panel per layer, a line per width."""
    base = baseline_frozen(measures)
    rows = rows_of(measures, "matched_corr_sorted", frozen_k=base)
    p, per_layer = _layer_panels(rows, "matched_corr_sorted", "sorted matched correlation")
    if not per_layer:
        return p.fig
    for ax, layer, sub in per_layer:
        ax.set_title(f"layer {layer} (frozen_k = {base})")
        for width in palette.widths:
            draw_controls(ax, sub[sub["width"] == width], "parameter_value", palette.colour("width", width),
                          f"width {width}")
        ax.set_xlabel("unit rank / number of units\n(0 = best-matched unit, 1 = worst)")
        ax.set_xlim(0, 1)
    p.set_ylabel("one-to-one matched correlation r")
    return _finish(p.fig, p.axes, _controls_present(rows))


def subspace_vs_layer(measures: pd.DataFrame, palette: Palette) -> Figure:
    """Wang et al.'s maximum-match similarity against layer, a panel per ε, a line per width."""
    base = baseline_frozen(measures)
    rows = rows_of(measures, "subspace_similarity", frozen_k=base)
    eps = sorted(float(e) for e in rows["parameter_value"].unique()) if not rows.empty else []
    p = panels(len(eps) or 1, sharey=True)
    if not eps:
        p.axes[0].set_title("subspace-match similarity")
        unavailable(p.axes[0], "the measures table has no subspace_similarity rows")
        return p.fig
    for ax, e in zip(p.axes, eps):
        ax.set_title(f"ε = {e:g} (frozen_k = {base})")
        _lines_vs_layer(ax, rows[np.isclose(rows["parameter_value"], e)], palette, "width", palette.widths)
        ax.set_ylim(-0.03, 1.03)
    p.set_ylabel("maximum-match similarity, 0 to 1\n(matched / all neurons of A and B)")
    return _finish(p.fig, p.axes, _controls_present(rows))


def minimal_match_sizes(measures: pd.DataFrame) -> tuple[pd.DataFrame, str, str]:
    """Rows to histogram, what one value is and what one count is.

    Per-neuron ``minimal_match_size`` rows are used when the table has them; otherwise the
    per-(pair, layer) ``minimal_match_size_mean`` (the table's summary of the processed neurons).
    """
    per_neuron = measures[measures["measure"] == "minimal_match_size"]
    if not per_neuron.empty:
        return per_neuron, "minimal-match size of a neuron\n(neurons of A and B, |X|+|Y|)", "neurons"
    return (measures[measures["measure"] == "minimal_match_size_mean"],
            "mean minimal-match size per (pair, layer)\n(neurons of A and B, |X|+|Y|)", "(pair, layer) cells")


def minimal_match_hist(measures: pd.DataFrame, palette: Palette) -> Figure:
    """Histogram of Wang et al.'s minimal-match sizes over cross-seed pairs and layers, stacked
    by width; a panel per (ε, frozen_k). Cells whose maximum match is empty have no minimal
    match at all: their number is written in the panel."""
    rows, xlabel, counted = minimal_match_sizes(measures)
    rows = rows[rows["control"] == "cross"] if not rows.empty else rows
    eps = sorted(float(e) for e in rows["parameter_value"].unique()) if not rows.empty else []
    ks = sorted(int(k) for k in rows["frozen_k"].unique()) if not rows.empty else []
    p = panels(max(len(eps) * len(ks), 1), nrows=max(len(eps), 1), ncols=max(len(ks), 1))
    if not eps:
        p.axes[0].set_title("minimal-match sizes")
        unavailable(p.axes[0], "the measures table has no minimal-match rows for cross-seed pairs")
        return p.fig
    handles: dict[int, Patch] = {}
    for r, e in enumerate(eps):
        for c, k in enumerate(ks):
            ax = p.axes[r * len(ks) + c]
            ax.set_title(f"ε = {e:g}, frozen_k = {k}, cross seeds")
            cell = rows[np.isclose(rows["parameter_value"], e) & (rows["frozen_k"] == k)]
            finite = cell[np.isfinite(cell["value"])]
            empty = len(cell) - len(finite)
            if finite.empty:
                unavailable(ax, f"the maximum match is empty in all {len(cell)} (pair, layer) cells",
                            prefix="no minimal matches (a result, not missing data):")
                continue
            widths = [w for w in palette.widths if (finite["width"] == w).any()]
            values = [finite.loc[finite["width"] == w, "value"].to_numpy(float) for w in widths]
            colours = [palette.colour("width", w) for w in widths]
            ax.hist(values, bins=_bins(finite["value"].to_numpy(float)), stacked=True, color=colours,
                    label=[f"width {w}" for w in widths], edgecolor="white", linewidth=0.5)
            for w, col in zip(widths, colours):
                handles.setdefault(w, Patch(color=col, label=f"width {w}"))
            if empty:   # in the title, where it cannot hide a bar
                ax.set_title(f"{ax.get_title()}\n{empty} of {len(cell)} cells have an empty maximum match")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"count of {counted}")
    figure_legend(p.fig, [handles[w] for w in sorted(handles)])
    return p.fig


def _bins(values: np.ndarray) -> np.ndarray:
    """Unit-wide bins centred on integers for integer sizes, else numpy's automatic edges."""
    lo, hi = float(values.min()), float(values.max())
    if np.allclose(values, np.round(values)) and hi - lo <= 80:
        return np.arange(np.floor(lo) - 0.5, np.ceil(hi) + 1.5)
    if hi == lo:
        return np.array([lo - 0.5, hi + 0.5])
    return np.histogram_bin_edges(values, bins="auto")


def network_alignment(measures: pd.DataFrame) -> pd.DataFrame:
    """Per-network alignment curves: ``alignment_curve_a`` / ``_b`` rows of every pair, re-keyed by
    the network's seed and de-duplicated, so a network in several pairs counts once.

    Cross pairs hold trained networks, floor pairs untrained ones; ceiling and data-order pairs
    (whose networks share a seed but not an order) are dropped. Columns: width, frozen_k, control,
    seed, layer, layer_index, k, value.
    """
    parts = []
    for side in ("a", "b"):
        sub = measures[(measures["measure"] == f"alignment_curve_{side}")
                       & measures["control"].isin(["cross", "floor"])]
        parts.append(sub.assign(seed=sub[f"seed_{side}"], k=sub["parameter_value"]))
    cols = ["width", "frozen_k", "control", "seed", "layer", "layer_index", "k", "value"]
    if not parts or all(p.empty for p in parts):
        return pd.DataFrame(columns=cols)
    net = pd.concat(parts, ignore_index=True)[cols]
    return net.drop_duplicates(["width", "frozen_k", "control", "seed", "layer", "k"]).reset_index(drop=True)


def alignment_curves(measures: pd.DataFrame, palette: Palette) -> Figure:
    """Imani et al.'s A(k) against k, a panel per layer, a line per width (mean over networks,
    trained solid, untrained dotted); the grey line marks k = number of classes."""
    base = baseline_frozen(measures)
    net = network_alignment(measures)
    net = net[net["frozen_k"] == base]
    p, per_layer = _layer_panels(net, "alignment_curve", "target alignment")
    if not per_layer:
        return p.fig
    top_c = measures[measures["measure"] == "alignment_top_c_a"]["parameter_value"].dropna().unique()
    for ax, layer, sub in per_layer:
        ax.set_title(f"layer {layer} (frozen_k = {base})")
        for width in palette.widths:
            draw_controls(ax, sub[sub["width"] == width], "k", palette.colour("width", width), f"width {width}",
                          controls=("cross", "floor"))
        for c in top_c:
            ax.axvline(float(c), color="0.55", lw=1, ls="-.", zorder=0)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("k: top singular directions of [Φ, 1]\n(log₂; grey: k = number of classes)")
        ax.set_ylim(0, 1.02)
    p.set_ylabel("alignment A(k): fraction of ‖Y‖²\ncaptured by the top k directions")
    legend = [*series_handles(p.axes)]
    legend += [Line2D([], [], color="black", ls=CONTROL_STYLE["cross"], label="trained networks (mean, 95% CI)"),
               Line2D([], [], color="black", ls=CONTROL_STYLE["floor"], label="untrained networks")]
    figure_legend(p.fig, legend)
    return p.fig
