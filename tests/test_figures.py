"""Figures from small synthetic tidy tables with planted values; the grounding statistic;
the cross-layer CKA job on tiny activation stores."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from convergent.activations import ActivationStoreWriter
from convergent.figures import FIGURE_NAMES
from convergent.findings.layers import grounded_layers, grounding_fraction, grounding_table
from convergent.figures import layers as layer_figs
from convergent.figures import measures as measure_figs
from convergent.figures import weights as weight_figs
from convergent.figures.experiment import Tables, draw_figure, experiment_figures
from convergent.figures.style import Palette, is_unavailable, level_colour
from convergent.jobs import cka_layers_job, cross_layer_cka
from convergent.measures.classic import pwcca, rsa_sqeuclid
from convergent.measures.cka import linear_cka

WIDTHS = (8, 16)
FROZEN = (0, 1)
SEEDS = (0, 1, 2)
LAYERS = ("fc1", "fc2", "fc3")
CONTROL_PAIRS = {"cross": list(itertools.combinations(SEEDS, 2)), "floor": list(itertools.combinations(SEEDS, 2)),
                 "ceiling": [(0, 0)]}


def planted(measure: str, control: str, width: int, layer: int, x: float = 0.0) -> float:
    """A known value: rises with width, falls with depth; floor lower, ceiling 1."""
    if control == "ceiling":
        return 1.0
    base = 0.5 + 0.1 * np.log2(width / 8) - 0.05 * layer - 0.2 * x
    return base - (0.3 if control == "floor" else 0.0)


def synthetic_measures(frozen=FROZEN, widths=WIDTHS, empty_minimal_at_f0: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for w, f, (control, pairs) in itertools.product(widths, frozen, CONTROL_PAIRS.items()):
        for (a, b), (i, layer) in itertools.product(pairs, enumerate(LAYERS, start=1)):
            def row(measure, value, parameter=None, pv=np.nan, note=None):
                rows.append({"dataset": "toy", "arch": "mlp", "width": w, "frozen_k": f, "frozen_from": "trained",
                             "control": control, "seed_a": a, "seed_b": b, "layer": layer, "layer_index": i,
                             "measure": measure, "view": "flatten", "parameter": parameter, "parameter_value": pv,
                             "value": value, "note": note})

            def noisy(x=0.0):
                return planted("m", control, w, i, x) + 0.01 * rng.standard_normal()

            row("hungarian_mean_corr", noisy())
            row("cka_linear", noisy())
            # classic measures: CCA undefined on the widest layer (fc1), PWCCA everywhere
            wide = "unavailable: CCA of 40 + 40 alive dimensions on n = 50 samples: d1 + d2 > n - 1 ...; " \
                   "needs more samples than units, or cca_ridge > 0"
            row("cca_mean", np.nan if layer == "fc1" else noisy(), note=wide if layer == "fc1" else None)
            row("pwcca", np.nan, note=wide)
            for kept in (0.5, 0.99):
                row("svcca", noisy(), "variance_kept", kept)
            for name in ("procrustes_angle", "linreg_r2_a_from_b", "rsa_sqeuclid_pearson"):
                row(name, noisy())
            for q in (0.0, 0.5, 1.0):
                row("matched_corr_sorted", noisy(q), "rank_fraction", q)
            for eps in (0.25, 0.5):
                row("subspace_similarity", noisy(), "eps", eps)
            empty = empty_minimal_at_f0 and f == 0 and control == "cross" and layer != "fc1"
            row("minimal_match_size_mean", np.nan if empty else 2.0 + w / 8 + i, "eps", 0.25,
                "unavailable: the maximum match is empty" if empty else None)
            for side in ("a", "b"):
                row(f"alignment_top_c_{side}", noisy(), "k", 4)
                for k in (1, 2, 4, 8):
                    row(f"alignment_curve_{side}", min(1.0, 0.2 * np.log2(2 * k)) - 0.01 * i, "k", k)
    return pd.DataFrame(rows)


def synthetic_runs() -> pd.DataFrame:
    return pd.DataFrame([{"dataset": "toy", "arch": "mlp", "width": w, "frozen_k": f, "seed": s, "test_acc": 0.9}
                         for w, f, s in itertools.product(WIDTHS, FROZEN, SEEDS)])


def synthetic_lmc() -> tuple[pd.DataFrame, pd.DataFrame]:
    bars, curves = [], []
    for w, f, (a, b), variant, split in itertools.product(WIDTHS, FROZEN, CONTROL_PAIRS["cross"],
                                                          ("naive", "bn_reset", "permuted_weight"), ("train", "test")):
        ok = variant != "bn_reset"   # an MLP has no BatchNorm: not applicable, values NaN
        barrier = (0.5 / np.log2(w) if variant == "naive" else 0.05) if ok else np.nan
        coords = {"dataset": "toy", "arch": "mlp", "width": w, "frozen_k": f, "seed_a": a, "seed_b": b,
                  "variant": variant, "split": split}
        bars.append({**coords, "applicable": ok, "error_barrier": barrier, "loss_barrier": 2 * barrier})
        for alpha in (0.0, 0.5, 1.0):
            err = (0.05 + (barrier if alpha == 0.5 else 0.0)) if ok else np.nan
            curves.append({**coords, "alpha": alpha, "loss": 2 * err, "acc": 1 - err, "error": err, "applicable": ok})
    return pd.DataFrame(bars), pd.DataFrame(curves)


def synthetic_rotation() -> pd.DataFrame:
    rows = []
    for w, linear, (i, layer), t in itertools.product(WIDTHS, (False, True), enumerate(LAYERS), (0.0, 0.5, 1.0)):
        rows.append({"dataset": "toy", "arch": "mlp", "width": w, "frozen_k": 0, "seed": 0, "strength": t,
                     "linear": linear, "layer": layer, "layer_index": i,
                     "retrained_test_acc": 0.9 if linear else 0.9 - 0.2 * t})
    return pd.DataFrame(rows)


def synthetic_cka_layers() -> pd.DataFrame:
    rows = []
    for w, f in itertools.product(WIDTHS, FROZEN):
        for (i, la), (j, lb) in itertools.product(enumerate(LAYERS, 1), repeat=2):
            # planted: diagonal highest except fc2 of A, which is closest to fc1 of B
            value = 0.9 if i == j else 0.5
            if (la, lb) == ("fc2", "fc1"):
                value = 0.95
            rows.append({"dataset": "toy", "arch": "mlp", "width": w, "frozen_k": f, "seed_a": 0, "seed_b": 1,
                         "layer_a": la, "layer_index_a": i, "layer_b": lb, "layer_index_b": j, "view": "flatten",
                         "n_samples": 100, "cka_linear": value})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def tables() -> Tables:
    bars, curves = synthetic_lmc()
    return Tables(measures=synthetic_measures(), runs=synthetic_runs(), lmc=bars, lmc_curves=curves,
                  rotation=synthetic_rotation(), cka_layers=synthetic_cka_layers())


@pytest.fixture(scope="module")
def palette(tables) -> Palette:
    return tables.palette()


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def labelled(ax) -> list[str]:
    """Labels of the cross-seed series on ``ax`` (floor/ceiling lines are unlabelled)."""
    return [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")]


def hidden(ax, control: str) -> int:
    return sum(line.get_label().startswith(f"_{control} ") for line in ax.get_lines())


def visible_axes(fig) -> list:
    return [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]


# ------------------------------------------------------------------------------------ colours


def test_palette_colours_are_fixed_per_level(palette):
    assert palette.widths == WIDTHS and palette.frozen_ks == FROZEN and palette.layers == LAYERS
    assert palette.colour("width", 8) != palette.colour("width", 16)
    # a level keeps its colour whatever subset of levels a figure happens to draw
    assert palette.colour("width", 16) == level_colour(16, WIDTHS, "width")
    assert level_colour(99, WIDTHS, "width") == "0.5"


# ------------------------------------------------------------------------ measures figures


def test_matched_vs_layer_one_line_per_width_with_floor_and_ceiling(tables, palette):
    fig = measure_figs.matched_vs_layer(tables.measures, palette)
    axes = visible_axes(fig)
    assert len(axes) == 2 + len(measure_figs.CLASSIC_PANELS)
    titles = [ax.get_title() for ax in axes]
    for ax in axes:
        if ax.get_title().startswith("pwcca"):   # undefined everywhere: the panel says why
            assert is_unavailable(ax) and "more samples than units" in " ".join(t.get_text() for t in ax.texts)
            continue
        assert labelled(ax) == ["width 8", "width 16"], ax.get_title()
        assert hidden(ax, "floor") == 2 and hidden(ax, "ceiling") == 2
        assert ax.get_xlabel() and ax.get_ylabel()
    cca = axes[[t.startswith("cca_mean") for t in titles].index(True)]
    assert "undefined at fc1" in " ".join(t.get_text() for t in cca.texts)
    assert len(cca.get_lines()[0].get_xdata()) == 2          # fc2, fc3 only
    assert any("variance_kept = 0.99" in t for t in titles)  # one parameter value per panel, named
    # the planted ordering survives the summary: the wider net is more similar at every layer
    cka = axes[1]
    w8, w16 = (line for line in cka.get_lines() if line.get_label() in ("width 8", "width 16"))
    assert (w16.get_ydata() > w8.get_ydata()).all()
    np.testing.assert_allclose(w8.get_ydata(), [0.45, 0.40, 0.35], atol=0.02)


def test_frozen_vs_layer_grid_and_single_frozen_k(tables, palette):
    fig = measure_figs.frozen_vs_layer(tables.measures, palette)
    axes = visible_axes(fig)
    assert len(axes) == 2 * len(WIDTHS)
    assert all(labelled(ax) == ["frozen_k 0", "frozen_k 1"] for ax in axes)
    only0 = tables.measures[tables.measures["frozen_k"] == 0]
    fig = measure_figs.frozen_vs_layer(only0, Palette.from_tables(only0))
    assert len(visible_axes(fig)) == 1 and is_unavailable(visible_axes(fig)[0])


def test_vs_width_one_line_per_layer_and_single_width(tables, palette):
    axes = visible_axes(measure_figs.vs_width(tables.measures, palette))
    drawn = [ax for ax in axes if not is_unavailable(ax)]
    assert len(drawn) == len(axes) - 1                        # pwcca: undefined everywhere
    assert [labelled(ax) for ax in drawn[:2]] == [[f"layer {layer}" for layer in LAYERS]] * 2
    cca = next(ax for ax in drawn if ax.get_title().startswith("cca_mean"))
    assert labelled(cca) == ["layer fc2", "layer fc3"]
    one = synthetic_measures(widths=(8,))
    axes = visible_axes(measure_figs.vs_width(one, Palette.from_tables(one)))
    assert all(is_unavailable(ax) and not ax.get_lines() for ax in axes)


def test_sorted_corr_panel_per_layer(tables, palette):
    axes = visible_axes(measure_figs.sorted_corr(tables.measures, palette))
    assert len(axes) == len(LAYERS)
    for ax in axes:
        assert labelled(ax) == ["width 8", "width 16"]
        line = next(line for line in ax.get_lines() if line.get_label() == "width 8")
        np.testing.assert_allclose(line.get_xdata(), [0.0, 0.5, 1.0])
        assert np.all(np.diff(line.get_ydata()) < 0)   # planted: best-matched units first


def test_subspace_panel_per_eps(tables, palette):
    axes = visible_axes(measure_figs.subspace_vs_layer(tables.measures, palette))
    assert [ax.get_title().split(" (")[0] for ax in axes] == ["ε = 0.25", "ε = 0.5"]
    assert all(len(labelled(ax)) == len(WIDTHS) for ax in axes)


def test_minimal_match_histogram_counts_cells_and_reports_empty_ones(tables, palette):
    axes = visible_axes(measure_figs.minimal_match_hist(tables.measures, palette))
    assert len(axes) == len(FROZEN)   # one ε × two frozen_k
    f0, f1 = axes
    # frozen_k=0: only fc1 has a match; each width is one stacked series of 3 pairs
    assert len(f0.containers) == len(WIDTHS)
    assert sum(p.get_height() for c in f0.containers for p in c) == 3 * len(WIDTHS)
    assert "12 of 18 cells have an empty maximum match" in f0.get_title()   # 3 pairs × 2 layers × 2 widths
    assert sum(p.get_height() for c in f1.containers for p in c) == 9 * len(WIDTHS)
    all_empty = tables.measures.assign(value=np.where(
        tables.measures["measure"] == "minimal_match_size_mean", np.nan, tables.measures["value"]))
    axes = visible_axes(measure_figs.minimal_match_hist(all_empty, palette))
    assert all(is_unavailable(ax) for ax in axes)


def test_alignment_counts_each_network_once(tables, palette):
    net = measure_figs.network_alignment(tables.measures)
    cells = len(WIDTHS) * len(FROZEN) * len(LAYERS) * 4   # ks
    assert len(net) == cells * len(SEEDS) * 2               # trained (cross) and untrained (floor) networks
    axes = visible_axes(measure_figs.alignment_curves(tables.measures, palette))
    assert len(axes) == len(LAYERS)
    assert all(labelled(ax) == ["width 8", "width 16"] and hidden(ax, "floor") == 2 for ax in axes)


# ---------------------------------------------------------------------- other figures


def test_cka_heatmaps_and_grounding_in_titles(tables, palette):
    fig = layer_figs.cka_layers(tables.cka_layers, palette)
    axes = [ax for ax in visible_axes(fig) if ax.images]
    assert len(axes) == len(WIDTHS) * len(FROZEN)
    assert all("grounding 2/3" in ax.get_title() for ax in axes)
    assert all(ax.images[0].get_array().shape == (3, 3) for ax in axes)


def test_lmc_figure_series(tables, palette):
    fig = weight_figs.lmc_vs_width(tables.lmc, tables.lmc_curves, tables.measures, palette)
    err, loss, basis, curve = visible_axes(fig)
    assert labelled(err) == ["naive", "permuted_weight"] == labelled(loss) == labelled(curve)
    assert labelled(basis) == ["basis correlation (mean over layers)"]
    naive = next(line for line in err.get_lines() if line.get_label() == "naive")
    np.testing.assert_allclose(naive.get_ydata(), [0.5 / 3, 0.5 / 4])   # planted barrier, exact mean
    legend = fig.legends[0].get_texts()
    assert any("not applicable" in t.get_text() and "bn_reset" in t.get_text() for t in legend)
    fig = weight_figs.lmc_vs_width(None, None, tables.measures, palette)
    assert all(is_unavailable(ax) for ax in visible_axes(fig)[:2] + visible_axes(fig)[3:])


def test_lmc_path_panel_draws_cross_seed_pairs_only(tables, palette):
    """A group's curve file also holds its data-order pair (same init, naive variant only): planted
    here with an error of 0.9 everywhere, it must not move the cross-seed mean path."""
    cross = tables.lmc_curves.assign(control="cross")
    order = cross[cross["variant"] == "naive"].assign(control="data_order", error=0.9)
    mixed = pd.concat([cross, order], ignore_index=True)
    paths = []
    for curves in (cross, mixed):
        curve = visible_axes(weight_figs.lmc_vs_width(tables.lmc, curves, tables.measures, palette))[3]
        paths.append(next(line for line in curve.get_lines() if line.get_label() == "naive").get_ydata())
    np.testing.assert_array_equal(paths[0], paths[1])
    assert max(paths[1]) < 0.9


def test_rotation_relu_vs_linear(tables, palette):
    axes = visible_axes(weight_figs.rotation(tables.rotation, palette))
    assert len(axes) == len(LAYERS)
    for ax in axes:
        assert sorted(labelled(ax)) == sorted(f"width {w}, {k}" for w in WIDTHS for k in ("ReLU", "linear control"))
    assert is_unavailable(visible_axes(weight_figs.rotation(None, palette))[0])


# ------------------------------------------------------------------------ files on disk


def test_experiment_figures_write_every_kind_as_png_and_svg(tables, tmp_path):
    outputs = {kind: tmp_path / f"toy_mlp_{kind}.png" for kind in FIGURE_NAMES}
    written = experiment_figures(tables, "toy", "mlp", outputs)
    assert len(written) == 2 * len(FIGURE_NAMES)
    for png in outputs.values():
        image = mpimg.imread(png)
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300
        root = ET.parse(png.with_suffix(".svg")).getroot()
        assert root.tag.endswith("svg")


def test_absent_tables_still_give_every_file(tmp_path):
    """A sweep without weight-space or cross-layer tables, one width, one frozen_k: same files."""
    one = synthetic_measures(frozen=(0,), widths=(8,))
    outputs = {kind: tmp_path / f"toy_mlp_{kind}.png" for kind in FIGURE_NAMES}
    experiment_figures(Tables(measures=one), "toy", "mlp", outputs)
    assert all(p.exists() and p.with_suffix(".svg").exists() for p in outputs.values())
    fig = draw_figure("cka_layers", Tables(measures=one), "toy", "mlp")
    assert is_unavailable(visible_axes(fig)[0]) and fig.get_suptitle().startswith("toy / mlp")


# --------------------------------------------------------------------------- grounding


def test_grounding_on_a_planted_matrix():
    m = np.array([[0.9, 0.5, 0.1],
                  [0.6, 0.5, 0.4],     # layer 2 of A is closest to layer 1 of B: not grounded
                  [0.1, 0.3, 0.8]])
    np.testing.assert_array_equal(grounded_layers(m), [True, False, True])
    assert grounding_fraction(m) == pytest.approx(2 / 3)
    assert grounding_fraction(np.ones((2, 2))) == 1.0   # ties (identical frozen layers) count
    with pytest.raises(ValueError):
        grounding_fraction(np.ones((2, 3)))


def test_grounding_table_per_pair():
    table = grounding_table(synthetic_cka_layers())
    assert len(table) == len(WIDTHS) * len(FROZEN)
    assert (table["n_layers"] == 3).all() and (table["n_grounded"] == 2).all()
    np.testing.assert_allclose(table["grounding_fraction"], 2 / 3)


# ------------------------------------------------------------------------ cka_layers job


def _store(path, layers: dict[str, np.ndarray], targets: np.ndarray) -> None:
    with ActivationStoreWriter(path, n_samples=len(targets), chunk_rows=16) as w:
        for name, x in layers.items():
            w.create(name, x.shape[1:])
            w.append(name, x.astype(np.float32))
        w.create("targets", (), dtype="int64")
        w.append("targets", targets)


@pytest.fixture
def two_stores(tmp_path):
    rng = np.random.default_rng(1)
    n = 40
    dense = rng.standard_normal((n, 5))
    conv = rng.standard_normal((n, 2, 3, 3))
    q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    y = rng.integers(0, 3, n)
    a = {"l1": dense, "l2": conv}
    # B's first layer is A's rotated and scaled (CKA exactly 1); its second is unrelated noise
    b = {"l1": 3.0 * dense @ q, "l2": rng.standard_normal((n, 2, 3, 3))}
    _store(tmp_path / "a.zarr", a, y)
    _store(tmp_path / "b.zarr", b, y)
    return tmp_path / "a.zarr", tmp_path / "b.zarr", a, b


def test_cross_layer_cka_matches_linear_cka_in_both_forms(two_stores):
    from convergent.activations import ActivationStore

    pa, pb, a, b = two_stores
    sa, sb = ActivationStore(pa), ActivationStore(pb)
    feature = cross_layer_cka(sa, sb, ["l1", "l2"])
    gram = cross_layer_cka(sa, sb, ["l1", "l2"], max_features=1)   # every layer through n×n Grams
    np.testing.assert_allclose(feature["cka_linear"], gram["cka_linear"], atol=1e-10)
    flat = {k: v.reshape(len(v), -1).astype(np.float32).astype(np.float64) for k, v in a.items()}
    flat_b = {k: v.reshape(len(v), -1).astype(np.float32).astype(np.float64) for k, v in b.items()}
    for row in feature.itertuples():
        assert row.cka_linear == pytest.approx(linear_cka(flat[row.layer_a], flat_b[row.layer_b]), abs=1e-10)
    assert feature.set_index(["layer_a", "layer_b"]).loc[("l1", "l1"), "cka_linear"] == pytest.approx(1.0, abs=1e-6)
    # the classic measures: the d×d and the n×n (dual) forms agree where both exist, and each
    # agrees with the measure on the arrays; CCA and matching say why they are missing in the dual form
    # (arccos near 1 turns rounding of 1e-16 into ~1e-8: the angle of identical layers is compared apart)
    np.testing.assert_allclose(feature["procrustes_angle"], gram["procrustes_angle"], atol=1e-6)
    shared = ["procrustes_distance", "linreg_r2_a_from_b", "linreg_r2_b_from_a",
              "rsa_sqeuclid_pearson", "rsa_sqeuclid_cosine", "cka_rbf_0.2", "cka_rbf_0.4", "cka_rbf_0.8"]
    np.testing.assert_allclose(feature[shared], gram[shared], atol=1e-9)
    assert gram["cca_mean"].isna().all() and gram["note"].str.contains("max_features=1").all()
    one = feature.set_index(["layer_a", "layer_b"]).loc[("l1", "l1")]
    assert one["cca_mean"] == pytest.approx(1.0, abs=1e-6) and one["procrustes_distance"] == pytest.approx(0, abs=1e-6)
    assert one["linreg_r2_a_from_b"] == pytest.approx(1.0, abs=1e-6)
    row = feature.set_index(["layer_a", "layer_b"]).loc[("l1", "l2")]
    assert row["pwcca"] == pytest.approx(pwcca(flat["l1"], flat_b["l2"]), abs=1e-10)
    assert row["rsa_sqeuclid_pearson"] == pytest.approx(rsa_sqeuclid(flat["l1"], flat_b["l2"]), abs=1e-10)
    half = cross_layer_cka(sa, sb, ["l1"], max_samples=20)
    assert (half["n_samples"] == 20).all()
    # a configured subset of layers keeps each layer's depth in the architecture
    deep = cross_layer_cka(sa, sb, ["l2"], layer_index={"l2": 2})
    assert deep[["layer_index_a", "layer_index_b"]].values.tolist() == [[2, 2]]


def test_cka_layers_job_writes_tidy_table(two_stores, tmp_path):
    pa, pb, _, _ = two_stores
    coords = {"dataset": "toy", "arch": "mlp", "width": 5, "frozen_k": 0, "seed_a": 0, "seed_b": 1}
    out = tmp_path / "layers" / "s0-s1.csv"
    cka_layers_job(store_a=str(pa), store_b=str(pb), layers=["l1", "l2"], coordinates=coords, params={},
                   out_csv=str(out))
    table = pd.read_csv(out)
    assert list(table.columns[:6]) == list(coords)
    assert len(table) == 4 and {"layer_a", "layer_b", "cka_linear", "n_samples", "view"} <= set(table.columns)
    assert grounding_table(table)["grounding_fraction"].iloc[0] == pytest.approx(1.0)


def test_identification_table_planted():
    """Per measure: a similarity identifying every layer, a distance (smaller = closer) identifying
    every layer, a symmetrised asymmetric measure whose halves each point elsewhere, and a measure
    undefined on one layer."""
    from convergent.findings.layers import identification_table

    rows = []
    L = 4
    for i, j in itertools.product(range(1, L + 1), repeat=2):
        rows.append({"dataset": "toy", "arch": "cnn", "width": 8, "frozen_k": 0, "seed_a": 0, "seed_b": 1,
                     "layer_a": f"l{i}", "layer_index_a": i, "layer_b": f"l{j}", "layer_index_b": j,
                     "cka_linear": 0.9 if i == j else 0.3,
                     "procrustes_angle": 0.1 if i == j else 1.0,          # distance: the diagonal is closest
                     # R²(A_i ← B_j) is highest for j = 4 and R²(B_j ← A_i) for i = 4, but their sum peaks
                     # on the diagonal: S + Sᵀ identifies every layer while each half identifies one
                     "linreg_r2_a_from_b": (0.6 if i == j else 0.1) + (0.55 if j == L else 0),
                     "linreg_r2_b_from_a": (0.6 if i == j else 0.1) + (0.55 if i == L else 0),
                     "cca_mean": np.nan if L in (i, j) else (0.8 if i == j else 0.2),
                     "note": "cca: d1 + d2 > n - 1" if L in (i, j) else ""})
    t = identification_table(pd.DataFrame(rows)).set_index("measure")
    assert t.loc["cka_linear", "fraction"] == 1.0 and t.loc["cka_linear", "n_identifications"] == 2 * L
    assert t.loc["cka_linear", "paper_fraction"] == pytest.approx(0.993)
    assert t.loc["procrustes_angle", "fraction"] == 1.0
    assert t.loc["linreg_r2", "fraction"] == 1.0 and t.loc["linreg_r2", "kind"] == "symmetrised"
    # A from B: every row of A picks B's last layer (only l4 right); columns pick the diagonal
    assert t.loc["linreg_r2_a_from_b", "n_identified"] == 1 + L
    assert t.loc["cca_mean", "n_comparable"] == L - 1 and t.loc["cca_mean", "fraction"] == 1.0
    assert "not comparable" in t.loc["cca_mean", "note"] and "l4" in t.loc["cca_mean", "note"]
    assert np.isnan(t.loc["pwcca", "fraction"]) and t.loc["pwcca", "note"].startswith("unavailable: no column")


def test_data_order_ceiling_lines_and_like_for_like_basis_curve(tables, palette):
    """Data-order pairs (same init, other minibatch order) draw their own ceiling line; the basis
    correlation over width averages only layers present at every width."""
    m = tables.measures
    m = m.assign(order_seed_a=m["seed_a"], order_seed_b=m["seed_b"])   # as the measures table has them
    order = m[m["control"] == "ceiling"].copy()
    order["control"], order["order_seed_b"] = "data_order", 1
    order["value"] = 0.8
    m = pd.concat([m, order, order.assign(order_seed_b=2, value=0.7)], ignore_index=True)
    fig = measure_figs.matched_vs_layer(m, palette)
    for i, ax in enumerate(visible_axes(fig)):
        assert hidden(ax, "data_order") == 2, ax.get_title()
        if i < 2:   # matched correlation and CKA: the planted table has their self-pair ceilings
            assert hidden(ax, "ceiling") == 2, ax.get_title()
    assert any("data-order ceiling" in t.get_text() for t in fig.legends[0].get_texts())
    fig = weight_figs.lmc_vs_width(tables.lmc, tables.lmc_curves, m, palette)
    basis = visible_axes(fig)[2]
    line = next(ln for ln in basis.get_lines() if ln.get_label().startswith("_data_order "))
    np.testing.assert_allclose(line.get_ydata(), [0.75, 0.75])   # two order seeds, each pair counted once
    # fc3 missing at width 16: the cross curve is the mean of fc1 and fc2 at both widths
    cut = m[~((m["layer"] == "fc3") & (m["width"] == 16))]
    frame = weight_figs.basis_correlation(cut)
    expect = (cut[(cut["measure"] == "hungarian_mean_corr") & (cut["layer"] != "fc3")]
              .groupby(["width", "frozen_k", "control", "seed_a", "seed_b"])["value"].mean())
    got = frame.groupby(["width", "frozen_k", "control", "seed_a", "seed_b"])["value"].mean()
    got = got[got.index.get_level_values("control") != "data_order"]
    pd.testing.assert_series_equal(got.sort_index(), expect[expect.index.get_level_values("control")
                                                             != "data_order"].sort_index())


def test_width_and_depth_figures_draw_the_chance_level(tables, palette):
    """With measures.csv's chance column, the cross series get a chance line at its mean, in the
    series' colour; without it nothing is drawn (old tables)."""
    m = tables.measures.copy()
    cross = m["control"] == "cross"
    m.loc[cross, "chance"] = 0.01 * m.loc[cross, "width"]     # planted: chance rising with width
    for fig_fn in (measure_figs.vs_width, measure_figs.matched_vs_layer):
        axes = visible_axes(fig_fn(m, palette))
        cka = next(ax for ax in axes if ax.get_title().startswith("cka_linear"))
        lines = [line for line in cka.get_lines() if line.get_label().startswith("_chance ")]
        assert len(lines) == len(LAYERS if fig_fn is measure_figs.vs_width else WIDTHS)
        if fig_fn is measure_figs.vs_width:
            np.testing.assert_allclose(lines[0].get_ydata(), [0.01 * w for w in WIDTHS])
        legend = [t.get_text() for t in cka.figure.legends[0].get_texts()]
        assert any(t.startswith("chance level") for t in legend)
    axes = visible_axes(measure_figs.vs_width(tables.measures, palette))
    assert not any(line.get_label().startswith("_chance ") for ax in axes for line in ax.get_lines())
