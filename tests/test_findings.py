"""The replication summary on synthetic tidy tables whose answer is planted.

Three worlds: one where every finding holds, one where none does, one where the sweep
cannot test any; plus the edge cases (one seed pair, missing tables, unavailable values).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from convergent import findings as F
from convergent.findings.layers import CCA_FAMILY
from convergent.findings import NOT_SUPPORTED, NOT_TESTABLE, SUPPORTED, Estimate, Tables

RANKS = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]
ALPHAS = [0.0, 1e-3, 1e-1]
EPS = [0.25, 0.5]


def _jitter(seed_a: int, seed_b: int) -> float:
    """A small, pair-specific offset so intervals are not degenerate (planted effects are ≫ it)."""
    return 0.004 * (seed_a + 2 * seed_b) - 0.01


def make_world(holds: bool, *, seeds=(0, 1, 2), widths=(8, 16, 32), n_layers=3, frozen=(0, 1),
               arch="cnn", controls=("cross", "floor", "ceiling", "data_order")) -> Tables:
    """Synthetic summary tables in which every finding holds (``holds``) or none does."""
    pairs = list(itertools.combinations(seeds, 2))
    rows: list[dict] = []

    def add(control, sa, sb, w, k, li, measure, value, parameter="", pv=np.nan, ob=None):
        rows.append({"dataset": "toy", "arch": arch, "width": w, "frozen_k": k, "frozen_from": "trained",
                     "control": control, "seed_a": sa, "seed_b": sb, "order_seed_a": sa,
                     "order_seed_b": sb if ob is None else ob, "layer": f"l{li}", "layer_index": li,
                     "measure": measure, "view": "positions", "parameter": parameter, "parameter_value": pv,
                     "value": value, "chance": 0.0, "calibrated": value, "note": ""})

    for w, k, li in itertools.product(widths, frozen, range(1, n_layers + 1)):
        dw = np.log2(w / widths[0])
        for control in controls:
            cell_pairs = [(seeds[0], seeds[0])] if control == "ceiling" else pairs
            if control == "data_order":   # the reference's init, each other seed's minibatch order
                for o in seeds[1:]:
                    j = _jitter(seeds[0], o)
                    add(control, seeds[0], seeds[0], w, k, li, "hungarian_mean_corr_cv", 0.9 + j, ob=o)
                    add(control, seeds[0], seeds[0], w, k, li, "sparse_r2_heldout", 0.9 + j, "alpha", 1e-3, ob=o)
                continue
            for sa, sb in cell_pairs:
                j = _jitter(sa, sb)
                if control == "ceiling":
                    add(control, sa, sb, w, k, li, "hungarian_mean_corr_cv", 1.0)
                    add(control, sa, sb, w, k, li, "sparse_r2_heldout", 0.99, "alpha", 1e-3)
                    continue
                if control == "floor":
                    add(control, sa, sb, w, k, li, "hungarian_mean_corr_cv", 0.1 + j)
                    add(control, sa, sb, w, k, li, "alignment_top_c_a", (0.1 if holds else 0.9) + j, "k", 10)
                    add(control, sa, sb, w, k, li, "alignment_top_c_b", (0.1 if holds else 0.9) + j, "k", 10)
                    continue
                frozen_layer = li <= k
                for r in RANKS:
                    v = 0.97 - 0.9 * max(r - 0.1, 0.0) if holds else 0.6
                    add(control, sa, sb, w, k, li, "matched_corr_sorted", v + j, "rank_fraction", r)
                for a in ALPHAS:
                    add(control, sa, sb, w, k, li, "sparse_val_r2", (0.8 if holds else 0.3) - a + j, "alpha", a)
                add(control, sa, sb, w, k, li, "sparse_r2_heldout", (0.8 if holds else 0.3) + j, "alpha", 1e-3)
                if frozen_layer:
                    basis = 1.0
                elif holds:
                    basis = 0.5 + (0.2 if k > 0 else 0.0)
                else:   # freezing lowers it; it rises with width, towards the ceiling
                    basis = 0.77 + 0.1 * dw - (0.1 if k > 0 else 0.0)
                add(control, sa, sb, w, k, li, "hungarian_mean_corr_cv", basis + j)
                add(control, sa, sb, w, k, li, "cka_linear", (0.5 + 0.1 * dw if holds else 0.9 - 0.1 * dw) + j)
                for e in EPS:
                    v = 0.45 - 0.1 * li if holds else 0.6 + 0.1 * li
                    add(control, sa, sb, w, k, li, "subspace_similarity", v + j, "eps", e)
                for side in "ab":
                    v = 0.3 + 0.1 * li if holds else 0.8 - 0.1 * li
                    add(control, sa, sb, w, k, li, f"alignment_top_c_{side}", v + j, "k", 10)
    measures = pd.DataFrame(rows)

    lmc = pd.DataFrame([
        {"dataset": "toy", "arch": arch, "width": w, "frozen_k": k, "seed_a": sa, "seed_b": sb, "variant": v,
         "split": split, "applicable": True,
         "error_barrier": (0.5 - 0.1 * np.log2(w / widths[0]) if holds else 0.2 - 0.05 * np.log2(w / widths[0]))
         + _jitter(sa, sb)}
        for w, k, (sa, sb), v, split in itertools.product(widths, frozen, pairs, ["naive", "permuted_weight"],
                                                         ["train", "test"])])

    rot_rows = []
    for w, li, linear, t in itertools.product(widths, range(1, n_layers + 1), [False, True], [0.0, 0.5, 1.0]):
        drop = (0.0 if linear else 0.3) if holds else (0.2 if linear else 0.0)
        rot_rows.append({"dataset": "toy", "arch": arch, "width": w, "frozen_k": 0, "seed": seeds[0],
                         "strength": t, "linear": linear, "layer": f"l{li}", "layer_index": li - 1,
                         "retrained_test_acc": 0.95 - drop * t + 0.002 * li})
    rotation = pd.DataFrame(rot_rows)

    layer_rows = []
    for w, k, (sa, sb) in itertools.product(widths, frozen, pairs):
        for la, lb in itertools.product(range(1, n_layers + 1), repeat=2):
            if holds:
                v = 0.95 if la == lb else 0.5
            else:   # each layer of A is most similar to the last layer of B, and vice versa
                v = 0.95 if n_layers in (la, lb) else 0.5
            # the CCA family the other way round: it identifies layers where CKA does not
            cca = (0.9 if n_layers in (la, lb) else 0.4) if holds else (0.9 if la == lb else 0.4)
            layer_rows.append({"dataset": "toy", "arch": arch, "width": w, "frozen_k": k, "seed_a": sa,
                               "seed_b": sb, "layer_a": f"l{la}", "layer_b": f"l{lb}", "layer_index_a": la,
                               "layer_index_b": lb, "cka_linear": v,
                               **{m: cca - 0.01 * i for i, m in enumerate(CCA_FAMILY)}})
    cka_layers = pd.DataFrame(layer_rows)

    runs = pd.DataFrame([{"dataset": "toy", "arch": arch, "width": w, "frozen_k": k, "seed": s, "test_acc": 0.9}
                         for w, k, s in itertools.product(widths, frozen, seeds)])
    return Tables(runs=runs, measures=measures, lmc=lmc, rotation=rotation, cka_layers=cka_layers)


def verdicts(table: pd.DataFrame) -> dict[str, str]:
    return dict(zip(table["finding"], table["verdict"]))


ALL_IDS = [f.id for f in F.FINDINGS]


def test_every_finding_supported_where_planted():
    table = F.findings_table(make_world(True))
    assert list(table.columns) == F.COLUMNS
    assert verdicts(table) == {fid: SUPPORTED for fid in ALL_IDS}, table[["finding", "reason"]].to_string()
    assert (table["ci_low"] <= table["value"]).all() and (table["value"] <= table["ci_high"]).all()
    assert (table["n"] >= 3).all()


def test_no_finding_supported_where_planted_against():
    table = F.findings_table(make_world(False))
    assert verdicts(table) == {fid: NOT_SUPPORTED for fid in ALL_IDS}, table[["finding", "reason"]].to_string()
    # the planted opposites are clear: each is contradicted, not merely inconclusive
    reasons = dict(zip(table["finding"], table["reason"]))
    for fid in ("kornblith_width", "kornblith_cca", "wang_depth", "imani_depth", "imani_emerges", "brown_a",
                "brown_c"):
        assert reasons[fid].startswith("contradicted"), (fid, reasons[fid])
    assert "basis-correlation slope: contradicted" in reasons["brown_d"]
    assert "top decile: contradicted" in reasons["li_reliable"]


def test_not_testable_world_says_what_is_needed():
    world = make_world(True, widths=(16,), n_layers=1, frozen=(0,), arch="mlp", controls=("cross",))
    m = world.measures
    m = m[(m["measure"] != "sparse_r2_heldout")
          & ~((m["measure"] == "matched_corr_sorted") & (m["parameter_value"] != 0.5))]
    tables = Tables(runs=world.runs, measures=m)   # no lmc, rotation or cka_layers table
    table = F.findings_table(tables)
    assert verdicts(table) == {fid: NOT_TESTABLE for fid in ALL_IDS}
    reasons = dict(zip(table["finding"], table["reason"]))
    expected = {
        "li_reliable": "two rank fractions", "li_subspace": "sparse_r2_heldout",
        "kornblith_grounding": "cka_layers.csv", "kornblith_cca": "cka_layers.csv", "kornblith_width": "≥ 2 widths",
        "wang_depth": "≥ 2 layers",
        "wang_small": "needs a conv arch", "imani_depth": "≥ 2 layers", "imani_emerges": "floor control",
        "brown_a": "rotation.csv", "brown_b": "data-order control", "brown_c": "frozen_k > 0",
        "brown_d": "lmc.csv",
    }
    for fid, needle in expected.items():
        assert needle in reasons[fid], (fid, reasons[fid])
    assert table["value"].isna().all() and (table["n"] == 0).all()


def test_two_seeds_are_inconclusive_and_say_so():
    """Issue 21: one seed pair (2 seeds) cannot support an interval over seeds. The planted effect is
    there, but the verdict is inconclusive, names the seed count, and gives no interval."""
    table = F.findings_table(make_world(True, seeds=(0, 1)))
    seed_based = table[table["resampled"].str.startswith("seeds")]
    assert len(seed_based) >= 10
    assert (seed_based["seeds"] == 2).all() and (seed_based["verdict"] == NOT_SUPPORTED).all()
    assert seed_based["reason"].str.contains("inconclusive: 2 seeds cannot support an interval").all()
    assert seed_based["ci_low"].isna().all() and seed_based["ci_high"].isna().all()
    assert np.isfinite(seed_based["value"]).all()
    md = F.to_markdown(table, make_world(True, seeds=(0, 1)))
    assert "[no interval]" in md and "2 seeds cannot support" in md
    # the rotation test resamples its networks (one per width): 3 of them, an interval
    brown_a = table.set_index("finding").loc["brown_a"]
    assert brown_a["n"] == 3 and brown_a["verdict"] == SUPPORTED


def test_missing_tables():
    table = F.findings_table(Tables())
    assert len(table) == len(F.FINDINGS)
    assert (table["verdict"] == NOT_TESTABLE).all()
    assert (table["dataset"] == "").all()
    assert table["reason"].str.contains(r"needs results/summary/\w+\.csv").all()


def test_load_tables_treats_absent_files_as_missing(tmp_path):
    world = make_world(True)
    world.measures.to_csv(tmp_path / "measures.csv", index=False)
    (tmp_path / "lmc.csv").write_text("")        # an empty file is as good as none
    tables = F.load_summary_dir(tmp_path)
    assert tables.measures is not None and tables.lmc is None and tables.rotation is None
    table = F.findings_table(tables)
    v = verdicts(table)
    assert v["kornblith_width"] == SUPPORTED and v["brown_d"] == NOT_TESTABLE and v["brown_a"] == NOT_TESTABLE
    with pytest.raises(ValueError, match="unknown tables"):
        F.load_tables({"pairs": tmp_path / "x.csv"})


def test_unavailable_values_are_not_testable_with_the_note():
    world = make_world(True)
    m = world.measures.copy()
    sel = m["measure"] == "matched_corr_sorted"
    m.loc[sel, "value"] = np.nan
    m.loc[sel, "note"] = "unavailable: every unit is dead"
    row = F.findings_table(Tables(measures=m)).set_index("finding").loc["li_reliable"]
    assert row["verdict"] == NOT_TESTABLE and "every unit is dead" in row["reason"]


def test_cells_are_evaluated_separately():
    a, b = make_world(True), make_world(False, arch="wrn")
    both = Tables(**{name: pd.concat([getattr(a, name), getattr(b, name)], ignore_index=True)
                     for name in F.TABLE_NAMES})
    table = F.findings_table(both)
    assert len(table) == 2 * len(F.FINDINGS)
    by_cell = table.groupby("arch")["verdict"].agg(set)
    assert by_cell["cnn"] == {SUPPORTED} and by_cell["wrn"] == {NOT_SUPPORTED}


@pytest.mark.parametrize(("ci", "above", "below"), [
    ((0.1, 0.2), SUPPORTED, NOT_SUPPORTED),
    ((-0.2, -0.1), NOT_SUPPORTED, SUPPORTED),
    ((-0.1, 0.1), NOT_SUPPORTED, NOT_SUPPORTED),
    ((0.0, 0.0), NOT_SUPPORTED, NOT_SUPPORTED),   # touching the threshold is not beyond it
])
def test_verdict_rules(ci, above, below):
    est = Estimate(sum(ci) / 2, ci[0], ci[1], 5)
    assert F.verdict_above(est, 0.0)[0] == above
    assert F.verdict_below(est, 0.0)[0] == below
    if ci == (-0.1, 0.1):
        assert F.verdict_above(est, 0.0)[1].startswith("inconclusive")


def test_li_rule_needs_both_ends():
    high, low, mid = Estimate(0.95, 0.92, 0.97, 3), Estimate(0.2, 0.1, 0.3, 3), Estimate(0.7, 0.6, 0.8, 3)
    assert F.verdict_reliable_and_unreliable(high, low)[0] == SUPPORTED
    assert F.verdict_reliable_and_unreliable(mid, low)[0] == NOT_SUPPORTED
    assert F.verdict_reliable_and_unreliable(high, mid)[0] == NOT_SUPPORTED


def test_markdown_and_html_render_every_row():
    tables = make_world(True)
    table = F.findings_table(tables)
    md = F.to_markdown(table, tables)
    assert md.startswith("# Replication summary")
    for fid in ALL_IDS:
        assert f"| {fid} |" in md and f"### {fid}:" in md
    assert md.count("| **supported** |") == len(ALL_IDS)
    assert "Claims not operationalised here" in md
    html = F.to_html(table, tables)
    assert html.count("<tr>") == len(ALL_IDS) + 1 and "Replication summary" in html


def test_summary_tables_follow_the_workflow_targets():
    targets = ["results/summary/runs.csv", "results/summary/measures.csv", "results/figures/x.png",
               "results/summary/cka_layers.csv", "results/summary/findings.md"]
    assert F.summary_tables(targets) == {"runs": "results/summary/runs.csv",
                                         "measures": "results/summary/measures.csv",
                                         "cka_layers": "results/summary/cka_layers.csv"}


def _identification_world(cca_nan_layers: int, cca_right: bool, n_layers: int = 5, widths=(8, 16, 32)) -> Tables:
    """CKA identifies every layer; the CCA family identifies them (``cca_right``) or points every
    layer at the last one; CCA is NaN (unavailable: more units than samples) for every pair that
    involves one of the first ``cca_nan_layers`` layers, as for wide early conv layers."""
    rows = []
    for w, (sa, sb) in itertools.product(widths, [(0, 1), (0, 2), (1, 2)]):
        for la, lb in itertools.product(range(1, n_layers + 1), repeat=2):
            cca = (0.9 if la == lb else 0.4) if cca_right else (0.9 if n_layers in (la, lb) else 0.4)
            if min(la, lb) <= cca_nan_layers:
                cca = np.nan
            rows.append({"dataset": "toy", "arch": "cnn", "width": w, "frozen_k": 0, "seed_a": sa, "seed_b": sb,
                         "layer_a": f"l{la}", "layer_b": f"l{lb}", "layer_index_a": la, "layer_index_b": lb,
                         "cka_linear": (0.95 if la == lb else 0.5) + 0.001 * w,
                         **{m: cca for m in CCA_FAMILY}})
    return Tables(cka_layers=pd.DataFrame(rows))


def _cca_row(tables: Tables) -> pd.Series:
    finding = next(f for f in F.FINDINGS if f.id == "kornblith_cca")
    return pd.Series(F.evaluate(finding, tables, "toy", "cnn"))


def test_kornblith_cca_true_false_and_the_unavailability_confound():
    true = _cca_row(_identification_world(0, cca_right=False))
    assert true["verdict"] == SUPPORTED and true["value"] == pytest.approx(1 - 2 / 10)  # CCA gets the last layer
    false = _cca_row(_identification_world(0, cca_right=True))
    assert false["verdict"] == NOT_SUPPORTED and false["value"] == pytest.approx(0.0)
    # confound: CCA undefined on the first two layers (d > n there) and right on the rest. Counting
    # the NaN layers as CCA failures would give CKA 1.0 against CCA 0.6: "supported". Among the
    # layers all measures can compare the two tie, and the verdict says so.
    confound = _cca_row(_identification_world(2, cca_right=True))
    assert confound["verdict"] == NOT_SUPPORTED and confound["value"] == pytest.approx(0.0)
    assert "inconclusive" in confound["reason"]
    assert confound["detail"].startswith("54 of 90 identifications defined")   # 3 pairs × 3 widths × 10
    nowhere = _cca_row(_identification_world(4, cca_right=True))   # one comparable layer: trivial
    assert nowhere["verdict"] == NOT_TESTABLE and "fewer than 2 layers" in nowhere["reason"]


# --------------------------------------------------------------------------- li_subspace on real measures

def _measured(X: np.ndarray, Y: np.ndarray, control: str, seed_a: int, seed_b: int, order_b: int | None = None,
              width: int = 16, layer: int = 1) -> pd.DataFrame:
    """The measures rows of one planted pair, computed by the package from the two arrays."""
    from convergent.measures import compute_measures
    from convergent.moments import moments_from_arrays

    m = moments_from_arrays(X, Y, alignment=False)
    rows = compute_measures(m, {"enabled": ["matching", "sparse"], "lasso_alphas": [1e-4, 1e-3, 1e-2]})
    coords = {"dataset": "toy", "arch": "mlp", "width": width, "frozen_k": 0, "frozen_from": "trained",
              "control": control, "seed_a": seed_a, "seed_b": seed_b, "order_seed_a": seed_a,
              "order_seed_b": seed_b if order_b is None else order_b, "layer": f"l{layer}", "layer_index": layer}
    return rows.assign(**coords)


def _planted_subspace(kind: str, data_order: bool = True, n: int = 1200, d: int = 12) -> Tables:
    """Three seed pairs where B is a ``kind`` copy of A (plus a little noise), and data-order
    pairs where B is A plus the same little noise (SGD noise: the same basis, nearly)."""
    frames = []
    for pair, (sa, sb) in enumerate([(0, 1), (0, 2), (1, 2)]):
        rng = np.random.default_rng(100 + pair)
        A = rng.standard_normal((n, d)) * np.linspace(1.0, 2.0, d)
        noise = 0.1 * rng.standard_normal((n, d))
        if kind == "rotated":      # a shared subspace, no shared basis
            Q = np.linalg.qr(rng.standard_normal((d, d)))[0]
            B = A @ Q + noise
        elif kind == "permuted":   # a shared basis
            B = A[:, rng.permutation(d)] * rng.uniform(0.5, 2.0, d) + noise
        else:                      # 20 % of B's variance shared with A
            Q = np.linalg.qr(rng.standard_normal((d, d)))[0]
            Z = A / A.std(0)
            B = np.sqrt(0.2) * Z @ Q + np.sqrt(0.8) * rng.standard_normal((n, d))
        frames.append(_measured(A, B, "cross", sa, sb))
        if data_order:
            frames.append(_measured(A, A + noise, "data_order", 0, 0, order_b=pair + 1))
        else:
            frames.append(_measured(A, A, "ceiling", 0, 0))
    return Tables(measures=pd.concat(frames, ignore_index=True))


@pytest.mark.parametrize(("kind", "expected"), [("rotated", SUPPORTED), ("permuted", NOT_SUPPORTED),
                                                ("shared20", NOT_SUPPORTED)])
def test_li_subspace_on_planted_activations(kind, expected):
    tables = _planted_subspace(kind)
    row = F.evaluate(next(f for f in F.FINDINGS if f.id == "li_subspace"), tables, "toy", "mlp")
    assert row["verdict"] == expected, row["reason"]
    assert "data-order ceiling" in row["reason"]
    if kind == "permuted":     # the map is good, but one-to-one matching does as well
        assert "fraction of the data-order ceiling: the 95 % interval" in row["reason"]
        assert "R² minus one-to-one r̄²: contradicted" in row["reason"]
    if kind == "shared20":     # one-to-one matching is poor, but so is the map: no shared subspace
        assert "fraction of the data-order ceiling: contradicted" in row["reason"]
        assert "R² minus one-to-one r̄²: contradicted" not in row["reason"]


def test_li_subspace_without_data_order_uses_the_self_ceiling_and_says_so():
    row = F.evaluate(next(f for f in F.FINDINGS if f.id == "li_subspace"), _planted_subspace("rotated", False),
                     "toy", "mlp")
    assert row["verdict"] == SUPPORTED and "self-pair ceiling" in row["reason"]


# --------------------------------------------------------------------------- confounds

def _finding(fid: str, tables: Tables) -> dict:
    return F.evaluate(next(f for f in F.FINDINGS if f.id == fid), tables, "toy", "cnn")


WIDE_NOTE = "unavailable: view 'flatten' has 8192 features > moments.max_features 4096"


def _pair_slope(frame: pd.DataFrame) -> pd.Series:
    """A small per-seed-pair slope of mixed sign (mean ≈ 0): a flat trend whose interval contains 0."""
    return pd.Series([{1: 0.01, 2: -0.01}.get(int(b), 0.0) + (0.002 if a == 1 else 0.0)
                      for a, b in zip(frame["seed_a"], frame["seed_b"])], index=frame.index)


def _layers_vanish_at_widest(tables: Tables, measures: list[str], levels: dict[int, float]) -> Tables:
    """Each of ``measures`` set to a per-layer level that does not depend on width, and layers
    l1, l2 unavailable (NaN, with the reason) at the widest width: the mix of layers changes with width."""
    m = tables.measures.copy()
    widest = m["width"].max()
    for measure in measures:
        sel = (m["measure"] == measure) & (m["control"] == "cross")
        m.loc[sel, "value"] = (m.loc[sel, "layer_index"].map(levels)
                               + _pair_slope(m[sel]) * np.log2(m.loc[sel, "width"] / 8))
        m.loc[sel, "calibrated"] = m.loc[sel, "value"]
        gone = sel & (m["width"] == widest) & m["layer"].isin(["l1", "l2"])
        m.loc[gone, ["value", "calibrated"]] = np.nan
        m.loc[gone, "note"] = WIDE_NOTE
    lmc = tables.lmc
    return Tables(runs=tables.runs, measures=m, lmc=lmc, rotation=tables.rotation, cka_layers=tables.cka_layers)


def test_width_trend_uses_only_layers_present_at_every_width():
    """Issue 13: CKA independent of width, deep layers lower, the shallow ones missing at the widest
    width. Averaging whatever layers exist would read a fall with width ("contradicted")."""
    tables = _layers_vanish_at_widest(make_world(True), ["cka_linear", "hungarian_mean_corr_cv"],
                                      {1: 0.9, 2: 0.7, 3: 0.5})
    naive = tables.measures[(tables.measures["measure"] == "cka_linear") & (tables.measures["frozen_k"] == 0)
                            & (tables.measures["control"] == "cross")]
    by_width = naive.groupby("width")["value"].mean()
    assert by_width.iloc[-1] < by_width.iloc[0] - 0.1        # the confound: a fall made by the layer mix
    row = _finding("kornblith_width", tables)
    assert row["verdict"] == NOT_SUPPORTED and row["reason"].startswith("inconclusive"), row["reason"]
    assert abs(row["value"]) < 0.005
    assert "layer l1, l2 left out" in row["detail"] and "max_features" in row["detail"]
    brown_d = _finding("brown_d", tables)   # the basis slope is like for like too: 0, below 0.05
    assert brown_d["verdict"] == SUPPORTED and "left out" in brown_d["detail"], brown_d["reason"]


def test_width_trend_with_no_layer_at_every_width_names_the_measure_and_the_cause():
    tables = _layers_vanish_at_widest(make_world(True), ["cka_linear"], {1: 0.9, 2: 0.7, 3: 0.5})
    m = tables.measures
    sel = (m["measure"] == "cka_linear") & (m["width"] == m["width"].max())
    m.loc[sel, ["value", "calibrated"]], m.loc[sel, "note"] = np.nan, WIDE_NOTE
    row = _finding("kornblith_width", Tables(measures=m))   # the widest width is left out, and said so
    assert row["verdict"] != NOT_TESTABLE and "width 32 left out (cka_linear unavailable there" in row["detail"]
    sel = (m["measure"] == "cka_linear") & (m["width"] == 16)
    m.loc[sel, ["value", "calibrated"]], m.loc[sel, "note"] = np.nan, WIDE_NOTE
    row = _finding("kornblith_width", Tables(measures=m))
    assert row["verdict"] == NOT_TESTABLE
    assert row["reason"].startswith("cka_linear: needs ≥ 2 widths with values; unavailable at width 16, 32")
    assert "max_features" in row["reason"], row["reason"]
    assert "enable" not in row["reason"]          # not "enable the family": the family ran


@pytest.mark.parametrize(("fid", "measures", "verdict_if_mixed"), [
    ("wang_depth", ["subspace_similarity"], "supported"),
    ("imani_depth", ["alignment_top_c_a", "alignment_top_c_b"], "contradicted"),
])
def test_depth_trend_uses_only_widths_present_at_every_layer(fid, measures, verdict_if_mixed):
    """Per width the value does not depend on depth, but wide networks score lower and only they
    have the deepest layer: a mean over widths would read a trend over depth."""
    m = make_world(True).measures.copy()
    for measure in measures:
        sel = (m["measure"] == measure) & (m["control"] == "cross")
        m.loc[sel, "value"] = (0.9 - 0.2 * np.log2(m.loc[sel, "width"] / 8)
                               + _pair_slope(m[sel]) * m.loc[sel, "layer_index"])
        m.loc[sel, "calibrated"] = m.loc[sel, "value"]
        gone = sel & (m["layer_index"] == 3) & (m["width"] < m["width"].max())
        m.loc[gone, ["value", "calibrated"]], m.loc[gone, "note"] = np.nan, "unavailable: every unit is dead"
    row = _finding(fid, Tables(measures=m))
    assert row["verdict"] == NOT_SUPPORTED and row["reason"].startswith("inconclusive"), row["reason"]
    assert "width 16, 8 left out" in row["detail"] or "width 8, 16 left out" in row["detail"], row["detail"]


def test_brown_b_floor_above_the_data_order_ceiling_is_not_testable():
    """If SGD noise alone leaves less basis correlation than untrained networks share, a gap below
    that ceiling says nothing about convergence."""
    m = make_world(True).measures.copy()
    sel = (m["measure"] == "hungarian_mean_corr_cv") & (m["control"] == "floor")
    m.loc[sel, "value"] += 0.85
    row = _finding("brown_b", Tables(measures=m))
    assert row["verdict"] == NOT_TESTABLE and "does not lie above the floor" in row["reason"], row["reason"]


def test_brown_b_needs_the_data_order_ceiling_not_the_self_pair():
    """The self pair's held-out basis correlation is 1 by construction: against it, any cross-seed
    value below 0.9 would pass. Without data-order pairs the rule refuses instead."""
    m = make_world(True).measures
    row = _finding("brown_b", Tables(measures=m[m["control"] != "data_order"]))
    assert row["verdict"] == NOT_TESTABLE and "controls.data_order" in row["reason"]
    # with the ceiling: the decision is the gap, and it can go either way
    m = m.copy()
    sel = (m["measure"] == "hungarian_mean_corr_cv") & (m["control"] == "data_order")
    m.loc[sel, "value"] = 0.55      # SGD noise alone already leaves ~the cross-seed correlation (0.5)
    row = _finding("brown_b", Tables(measures=m))
    assert row["verdict"] == NOT_SUPPORTED and row["reason"].startswith("data-order ceiling"), row["reason"]
    assert "gap by width" in row["detail"]


def test_brown_c_does_not_count_the_frozen_layers():
    """Frozen layers are identical (correlation 1) by construction; counting them would always
    'raise' basis correlation. Layers above them as correlated as without freezing: not supported."""
    m = make_world(True).measures.copy()
    sel = (m["measure"] == "hungarian_mean_corr_cv") & (m["control"] == "cross")
    above = sel & (m["layer_index"] > m["frozen_k"])
    m.loc[above, ["value", "calibrated"]] = 0.5 + 0.001 * m.loc[above, "seed_b"]
    row = _finding("brown_c", Tables(measures=m))
    assert row["verdict"] == NOT_SUPPORTED, row["reason"]


def test_wang_small_reads_only_intermediate_layers():
    """First and last layers with tiny matches would pull a mean over all layers below 0.5."""
    m = make_world(True).measures.copy()
    sel = (m["measure"] == "subspace_similarity") & (m["control"] == "cross")
    m.loc[sel, "value"] = np.where(m.loc[sel, "layer_index"] == 2, 0.8, 0.05)
    assert m.loc[sel, "value"].mean() < F.WANG_SMALL_MATCH_MAX
    row = _finding("wang_small", Tables(measures=m))
    assert row["verdict"] == NOT_SUPPORTED and "l2" in row["detail"], row["reason"]


def test_brown_a_compares_only_layers_with_both_networks():
    """A ReLU layer without its linear control must not enter the difference."""
    world = make_world(False)
    r = world.rotation.copy()
    # the ReLU network of layer l3 loses a lot, but its linear control is missing
    r.loc[(r["layer"] == "l3") & ~r["linear"], "retrained_test_acc"] = 0.95 - 0.9 * r["strength"]
    r = r[~((r["layer"] == "l3") & r["linear"])]
    row = _finding("brown_a", Tables(rotation=r))
    assert row["verdict"] == NOT_SUPPORTED and row["n"] == 3, row["reason"]   # 3 rotated networks (widths)


def test_imani_emerges_compares_the_same_layers():
    """Untrained pairs only at shallow layers (low alignment) and trained pairs only at deep layers
    (high alignment) would make alignment 'emerge' between different layers."""
    m = make_world(False).measures.copy()
    floor = m["measure"].str.startswith("alignment_top_c") & (m["control"] == "floor")
    m = m[~(floor & (m["layer_index"] > 1))]
    m.loc[floor & (m["layer_index"] == 1), "value"] = 0.05
    cross = m["measure"].str.startswith("alignment_top_c") & (m["control"] == "cross")
    m = m[~(cross & (m["layer_index"] == 1))]
    row = _finding("imani_emerges", Tables(measures=m))
    assert row["verdict"] == NOT_TESTABLE and "same seeds" in row["reason"], row["reason"]


def test_li_reliable_is_not_fooled_by_averaging_widths():
    """All units reliable at one width and all unreliable at another: each decile's mean lands in
    between, so neither end is reached."""
    m = make_world(True).measures.copy()
    sel = (m["measure"] == "matched_corr_sorted") & (m["control"] == "cross")
    m.loc[sel, "value"] = np.where(m.loc[sel, "width"] == 8, 0.95, 0.2)
    row = _finding("li_reliable", Tables(measures=m))
    assert row["verdict"] == NOT_SUPPORTED, row["reason"]


def test_kornblith_grounding_with_one_seed_pair_is_inconclusive():
    """The default layer table has one seed pair per cell: widths are not independent seeds, so no
    interval, and the reason says why (it used to resample seed pair × width)."""
    world = make_world(True)
    c = world.cka_layers
    row = _finding("kornblith_grounding", Tables(cka_layers=c[(c["seed_a"] == 0) & (c["seed_b"] == 1)]))
    assert row["verdict"] == NOT_SUPPORTED and row["seeds"] == 2, row["reason"]
    assert row["reason"].startswith("inconclusive: 2 seeds cannot support an interval")
    assert row["value"] == pytest.approx(1.0)
    assert _finding("kornblith_grounding", world)["verdict"] == SUPPORTED   # all 3 pairs: an interval


def test_every_verdict_paragraph_says_what_would_turn_it():
    for holds in (True, False):
        tables = make_world(holds)
        md = F.to_markdown(F.findings_table(tables), tables)
        for f in F.FINDINGS:
            assert f.flip, f.id
            section = md.split(f"### {f.id}:")[1].split("###")[0]
            assert f"*What would turn it*: not supported with {f.flip}" in section
            assert "95 % interval" in section    # the number that decided it


def test_summary_row_shows_the_reference_it_was_measured_against():
    tables = make_world(True)
    table = F.findings_table(tables)
    row = table.set_index("finding").loc["brown_b"]
    assert row["reference"].startswith("data-order ceiling 0.9")
    line = next(ln for ln in F.to_markdown(table, tables).splitlines() if ln.startswith("| brown_b |"))
    assert "(data-order ceiling 0.9" in line and "cross-seed 0.5" in line
    assert "of the data-order ceiling's" in table.set_index("finding").loc["li_subspace", "reference"]


# --------------------------------------------------------------------------- chance levels (issue 25)

def _chance_only(tables: Tables, measure: str, raw_trend) -> Tables:
    """``measure``'s cross rows made chance-only: calibrated values are small noise of mixed sign
    around 0 at every level, while the raw values (= chance + that noise) follow ``raw_trend(rows)``,
    the direction the paper predicts: raw similarity moving by chance alone."""
    m = tables.measures.copy()
    sel = (m["measure"] == measure) & (m["control"] == "cross")
    noise = 0.01 * np.sin(m.loc[sel, "seed_a"] * 3.1 + m.loc[sel, "seed_b"] * 1.7 + m.loc[sel, "layer_index"]
                          + m.loc[sel, "width"])
    m.loc[sel, "chance"] = raw_trend(m[sel])
    m.loc[sel, "calibrated"] = noise
    m.loc[sel, "value"] = m.loc[sel, "chance"] + noise * (1 - m.loc[sel, "chance"])
    return Tables(runs=tables.runs, measures=m, lmc=tables.lmc, rotation=tables.rotation, cka_layers=tables.cka_layers)


CHANCE_CONFOUNDS = {
    # finding: (measure, raw trend in the direction the paper predicts)
    "kornblith_width": ("cka_linear", lambda r: 0.05 + 0.1 * np.log2(r["width"] / 8)),
    "wang_depth": ("subspace_similarity", lambda r: 0.6 - 0.1 * r["layer_index"]),
    "imani_depth": ("alignment_top_c_a", lambda r: 0.1 + 0.1 * r["layer_index"]),
    "brown_c": ("hungarian_mean_corr_cv", lambda r: 0.1 + 0.2 * (r["frozen_k"] > 0)),
}


@pytest.mark.parametrize("fid", sorted(CHANCE_CONFOUNDS))
def test_a_trend_of_chance_alone_does_not_pass(fid):
    measure, trend = CHANCE_CONFOUNDS[fid]
    tables = make_world(True)
    for m in [measure] + (["alignment_top_c_b"] if fid == "imani_depth" else []):
        tables = _chance_only(tables, m, trend)
    rows = tables.measures[(tables.measures["measure"] == measure) & (tables.measures["control"] == "cross")]
    level = {"kornblith_width": "width", "brown_c": "frozen_k"}.get(fid, "layer_index")
    raw = rows.groupby(level)["value"].mean()
    assert abs(raw.iloc[-1] - raw.iloc[0]) > 0.15          # the confound: raw values move a lot by chance
    row = _finding(fid, tables)
    assert row["verdict"] == NOT_SUPPORTED, row["reason"]
    assert "calibrated" in row["reason"] and abs(row["value"]) < 0.02, row["reason"]


def test_brown_d_reads_the_basis_slope_on_calibrated_values():
    """Raw basis correlation rising with width by chance alone would fail brown_d's second condition;
    calibrated, it is flat, and the verdict follows the barrier."""
    tables = _chance_only(make_world(True), "hungarian_mean_corr_cv", lambda r: 0.1 + 0.15 * np.log2(r["width"] / 8))
    row = _finding("brown_d", tables)
    assert row["verdict"] == SUPPORTED and "calibrated hungarian_mean_corr_cv" in row["reason"], row["reason"]


def test_without_chance_levels_level_findings_fall_back_and_say_so():
    world = make_world(True)
    m = world.measures.drop(columns=["calibrated", "chance"])
    old = Tables(runs=world.runs, measures=m, lmc=world.lmc)
    for fid in ("kornblith_width", "wang_depth", "imani_depth"):
        row = _finding(fid, old)
        assert row["verdict"] == NOT_TESTABLE and "needs column 'calibrated'" in row["reason"], (fid, row["reason"])
    # kornblith_width: debiased CKA's chance level does not move with width
    debiased = m[m["measure"] == "cka_linear"].assign(measure="cka_linear_debiased")
    row = _finding("kornblith_width", Tables(measures=pd.concat([m, debiased], ignore_index=True)))
    assert row["verdict"] == SUPPORTED and "cka_linear_debiased" in row["reason"], row["reason"]
    # the held-out basis correlation's chance level is 0: brown_c and brown_d read it raw, and say so
    for fid in ("brown_c", "brown_d"):
        row = _finding(fid, old)
        assert row["verdict"] == SUPPORTED and "no chance levels" in row["reason"], (fid, row["reason"])


# --------------------------------------------------------------------------- examples and seeds needed

def _with_block_noise(tables: Tables, measure: str, size: float, blocks: int = 8) -> Tables:
    """jk_0 … jk_{B−1} for ``measure``: leave-one-block-out replicates whose block effects are shared by
    every pair (the same images) and differ by width, as if a few images drove the width trend."""
    m = tables.measures.copy()
    rng = np.random.default_rng(5)
    effect = {w: size * rng.standard_normal(blocks) for w in sorted(m["width"].unique())}
    for b in range(blocks):
        m[f"jk_{b}"] = np.nan
    sel = m["measure"] == measure
    for w, e in effect.items():
        rows = sel & (m["width"] == w)
        for b in range(blocks):   # leaving block b out removes its effect from the mean
            m.loc[rows, f"jk_{b}"] = m.loc[rows, "value"] - (e[b] - e.mean()) / (blocks - 1)
    return Tables(runs=tables.runs, measures=m)


def test_the_interval_resamples_examples_where_measures_has_replicates():
    world = make_world(True)
    quiet = _finding("kornblith_width", world)
    assert quiet["verdict"] == SUPPORTED and "examples not resampled" in quiet["detail"]
    noisy = _finding("kornblith_width", _with_block_noise(world, "cka_linear", 0.6))
    assert noisy["value"] == pytest.approx(quiet["value"])
    assert "examples resampled over 8 blocks" in noisy["detail"]
    assert noisy["ci_high"] - noisy["ci_low"] > 3 * (quiet["ci_high"] - quiet["ci_low"])
    assert noisy["verdict"] == NOT_SUPPORTED and "inconclusive" in noisy["reason"], noisy["reason"]
    assert noisy["seeds_needed"] > quiet["seeds_needed"]


def test_seeds_needed_in_the_table_and_the_markdown():
    tables = make_world(True)
    table = F.findings_table(tables)
    decided = table[table["verdict"] == SUPPORTED]
    assert (decided["seeds"] == 3).all()
    assert (decided["seeds_needed"] <= 3).all()     # decisive with the 3 seeds at hand
    md = F.to_markdown(table, tables)
    assert "| Seeds (needed) |" in md and "Seeds a decisive verdict needs at this spread" in md
    # an effect within the noise needs more seeds than the sweep has
    m = tables.measures.copy()
    sel = (m["measure"] == "cka_linear") & (m["control"] == "cross")
    slope = 0.004 + 0.01 * np.sin(3 * m.loc[sel, "seed_a"] + m.loc[sel, "seed_b"])
    m.loc[sel, "value"] = 0.5 + slope * np.log2(m.loc[sel, "width"] / 8)
    m.loc[sel, "calibrated"] = m.loc[sel, "value"]
    row = _finding("kornblith_width", Tables(measures=m))
    assert row["verdict"] == NOT_SUPPORTED and row["seeds_needed"] > 3, (row["reason"], row["seeds_needed"])
