"""Figures of the weight-space experiments: linear mode connectivity beside basis correlation
(Brown et al. finding d) and the rotation test (Brown et al. finding a)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from convergent.figures.measures import WIDTH_AXIS, baseline_frozen
from convergent.figures.style import (
    CONTROL_STYLE, Palette, control_handles, draw_controls, draw_summary, figure_legend, panels, series_handles,
    unavailable, width_ticks,
)
from convergent.stats import summarise

#: LMC variants in a fixed order, so each keeps its colour (tab10) in every figure
VARIANT_ORDER = ("naive", "bn_reset", "repair", "permuted_activation", "permuted_weight",
                 "permuted_activation_bn_reset", "permuted_weight_bn_reset", "permuted_activation_repair",
                 "permuted_weight_repair")
BARRIERS = (("error_barrier", "error barrier (test error, fraction 0 to 1)"),
            ("loss_barrier", "loss barrier (test cross-entropy, nats)"))
ROTATION_STYLE = {False: ("-", "o", "ReLU"), True: ("-.", "s", "linear control")}


def variant_colour(variant: str) -> tuple[float, float, float, float]:
    """Fixed colour of an LMC variant; variants outside :data:`VARIANT_ORDER` follow it."""
    import matplotlib.pyplot as plt

    # unknown variants: a deterministic index from the name (hash() is salted per process)
    idx = VARIANT_ORDER.index(variant) if variant in VARIANT_ORDER else len(VARIANT_ORDER) + sum(map(ord, variant))
    return plt.get_cmap("tab10")(idx % 10)


def _split(frame: pd.DataFrame) -> str | None:
    """The evaluation split shown: test when present."""
    if frame.empty or "split" not in frame:
        return None
    splits = set(frame["split"].unique())
    return "test" if "test" in splits else sorted(splits)[0]


def basis_correlation(measures: pd.DataFrame) -> pd.DataFrame:
    """Brown et al.'s basis correlation per pair: ``hungarian_mean_corr`` averaged over the pair's
    layers (every hidden layer counts equally), over the layers available at every width of the
    pair's frozen_k, so the curve over width compares the same layers. Columns: width, frozen_k,
    control, seed_a, seed_b, order_seed_a, order_seed_b, value (order seeds = seeds when absent)."""
    rows = measures[(measures["measure"] == "hungarian_mean_corr") & np.isfinite(measures["value"].astype(float))]
    for side in "ab":
        if f"order_seed_{side}" not in rows:
            rows = rows.assign(**{f"order_seed_{side}": rows[f"seed_{side}"]})
    keys = ["width", "frozen_k", "control", "seed_a", "seed_b", "order_seed_a", "order_seed_b"]
    if rows.empty:
        return pd.DataFrame(columns=[*keys, "value"])
    widths = rows.groupby("frozen_k")["width"].nunique()
    present = rows.groupby(["frozen_k", "layer"])["width"].nunique().reset_index(name="n_widths")
    present = present[present["n_widths"] == present["frozen_k"].map(widths)]
    rows = rows.merge(present[["frozen_k", "layer"]], on=["frozen_k", "layer"])
    return rows.groupby(keys, as_index=False)["value"].mean()


def lmc_vs_width(lmc: pd.DataFrame | None, curves: pd.DataFrame | None, measures: pd.DataFrame,
                 palette: Palette, missing: str = "the LMC table is absent (lmc.enabled is false)") -> Figure:
    """Four panels (frozen_k = 0): error and loss barrier vs width per variant, basis correlation vs
    width, and the test-error curve along the interpolation path at the widest width."""
    p = panels(4, ncols=2)
    ax_err, ax_loss, ax_basis, ax_curve = p.axes
    base = baseline_frozen(measures if lmc is None or lmc.empty else lmc)
    widths = sorted(int(w) for w in lmc["width"].unique()) if lmc is not None and not lmc.empty else []
    split = _split(lmc) if lmc is not None else None
    applicable = pd.DataFrame()
    if lmc is not None and not lmc.empty:
        ok = lmc["applicable"].astype(str).str.lower() == "true"
        is_cross = lmc["control"] == "cross" if "control" in lmc else True
        order = lmc[ok & (lmc["frozen_k"] == base) & (lmc["split"] == split) & ~is_cross]
        applicable = lmc[ok & (lmc["frozen_k"] == base) & (lmc["split"] == split) & is_cross]
        skipped = sorted(set(lmc.loc[~ok, "variant"]) - set(applicable["variant"]))
    else:
        skipped = []
    variants = sorted(applicable["variant"].unique(), key=_variant_rank) if not applicable.empty else []

    for ax, (column, ylabel) in zip((ax_err, ax_loss), BARRIERS):
        ax.set_title(f"LMC {column.replace('_', ' ')} ({split or 'test'}, frozen_k = {base})")
        if lmc is None or lmc.empty:
            unavailable(ax, missing)
            continue
        if len(widths) < 2 or applicable.empty:
            unavailable(ax, f"needs at least two widths with applicable variants; this sweep has {widths}")
            continue
        for variant in variants:
            _variant_line(ax, applicable, variant, column)
        naive = order[(order["control"] == "data_order") & (order["variant"] == "naive")] if len(order) else order
        if len(naive):   # Frankle et al.'s instability: same init, other minibatch order, plain interpolation
            summary = summarise(naive.rename(columns={column: "value"}), ["width"])
            draw_summary(ax, summary, "width", variant_colour("naive"), "data_order", "naive")
        width_ticks(ax, widths)
        ax.set_xlabel(WIDTH_AXIS)
        ax.set_ylabel(ylabel)
        ax.axhline(0, color="0.4", lw=0.8)
    ax_basis.set_title(f"basis correlation (frozen_k = {base})")
    basis = basis_correlation(measures)
    basis = basis[basis["frozen_k"] == base]
    bwidths = sorted(int(w) for w in basis["width"].unique())
    if len(bwidths) < 2:
        unavailable(ax_basis, f"needs at least two widths with hungarian_mean_corr rows; this sweep has {bwidths}")
        controls = []
    else:
        draw_controls(ax_basis, basis, "width", "black", "basis correlation (mean over layers)")
        width_ticks(ax_basis, bwidths)
        ax_basis.set_xlabel(WIDTH_AXIS)
        ax_basis.set_ylabel("one-to-one matched correlation\n(mean over layers, −1 to 1)")
        controls = [c for c in CONTROL_STYLE if (basis["control"] == c).any()]
        if lmc is not None and "control" in lmc and (lmc["control"] == "data_order").any() \
                and "data_order" not in controls:
            controls.append("data_order")

    _lmc_curve_panel(ax_curve, curves, base, missing)
    # variants in their fixed order, then the basis correlation and the control styles
    legend = sorted(series_handles(p.axes), key=lambda h: _variant_rank(h.get_label()))
    legend += control_handles(controls)
    if skipped:   # e.g. BatchNorm resets on an MLP: say so rather than leave the reader guessing
        legend.append(Line2D([], [], ls="none", label="not applicable here:\n" + ",\n".join(skipped)))
    figure_legend(p.fig, legend)
    return p.fig


def _variant_rank(variant: str) -> tuple[int, str]:
    return (VARIANT_ORDER.index(variant) if variant in VARIANT_ORDER else len(VARIANT_ORDER), variant)


def _variant_line(ax, applicable: pd.DataFrame, variant: str, column: str) -> None:
    """Mean barrier over cross-seed pairs against width for one variant, with its bootstrap band."""
    sub = applicable[applicable["variant"] == variant].rename(columns={column: "value"})
    summary = summarise(sub[np.isfinite(sub["value"])], ["width"])
    if not summary.empty:
        draw_summary(ax, summary, "width", variant_colour(variant), "cross", variant)


def _lmc_curve_panel(ax, curves: pd.DataFrame | None, base: int, missing: str) -> None:
    """Test error along θ(α) = (1−α)θ_A + αθ_B at the widest width, a line per variant, over the
    cross-seed pairs (a group's curve file also holds its data-order pair, which is not drawn here)."""
    ax.set_title("LMC path")
    if curves is not None and "control" in curves:
        curves = curves[curves["control"] == "cross"]
    if curves is None or curves.empty:
        unavailable(ax, missing if curves is None else "no LMC curve files")
        return
    ok = curves["applicable"].astype(str).str.lower() == "true"
    split = _split(curves)
    sub = curves[ok & (curves["frozen_k"] == base) & (curves["split"] == split)]
    if sub.empty:
        unavailable(ax, "no applicable LMC curve rows")
        return
    width = int(sub["width"].max())
    sub = sub[sub["width"] == width].rename(columns={"error": "value"})
    ax.set_title(f"LMC path, width {width} ({split}, frozen_k = {base})")
    for variant in sorted(sub["variant"].unique(), key=_variant_rank):
        summary = summarise(sub[sub["variant"] == variant], ["alpha"])
        draw_summary(ax, summary, "alpha", variant_colour(variant), "cross", variant)
    ax.set_xlabel("interpolation α (0 = seed A, 1 = seed B)")
    ax.set_ylabel(f"{split} error (fraction)")
    ax.set_xlim(0, 1)


def rotation(rotation: pd.DataFrame | None, palette: Palette,
             missing: str = "the rotation table is absent (rotation.enabled is false)") -> Figure:
    """Brown et al.'s rotation test: test accuracy after retraining the layers above a rotated
    layer against rotation strength, a panel per layer, ReLU (solid) vs linear control (dash-dot),
    colour per width; mean over the rotated networks with a bootstrap band when there are several."""
    if rotation is None or rotation.empty:
        p = panels(1)
        p.axes[0].set_title("rotation test")
        unavailable(p.axes[0], missing if rotation is None else "the rotation table has no rows")
        return p.fig
    order = rotation[["layer_index", "layer"]].drop_duplicates().sort_values("layer_index")
    layers = [str(name) for name in order["layer"]]
    p = panels(len(layers), sharey=True)
    for ax, layer in zip(p.axes, layers):
        ax.set_title(f"rotation at the site of {layer}")   # pre-ReLU; inside the block for resnet18/wrn blocks
        sub = rotation[rotation["layer"] == layer]
        for width in palette.widths or sorted(sub["width"].unique()):
            for linear, (ls, marker, name) in ROTATION_STYLE.items():
                rows = sub[(sub["width"] == width) & (sub["linear"].astype(str).str.lower() == str(linear).lower())]
                summary = summarise(rows.rename(columns={"retrained_test_acc": "value"}), ["strength"])
                if summary.empty:
                    continue
                colour = palette.colour("width", width)
                ax.plot(summary["strength"], summary["mean"], ls=ls, marker=marker, ms=3.5, color=colour,
                        label=f"width {width}, {name}")
                if (summary["ci_high"] > summary["ci_low"]).any():
                    ax.fill_between(summary["strength"], summary["ci_low"], summary["ci_high"], color=colour,
                                    alpha=0.15, lw=0)
        ax.set_xlabel("rotation strength t\n(R = expm(t·A), A skew-symmetric; 0 = identity)")
    p.set_ylabel("test accuracy after retraining\nthe layers above (fraction)")
    legend = [*series_handles(p.axes)]
    figure_legend(p.fig, legend)
    return p.fig


__all__ = ["lmc_vs_width", "rotation", "basis_correlation", "variant_colour"]
