"""The registry of findings, and the table that evaluates each on every (dataset, arch) cell."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from convergent.findings.brown import brown_freezing, brown_lmc_width, brown_no_unique_basis, brown_privileged_basis
from convergent.findings.core import (BROWN_BASIS_RISE_MAX, BROWN_CEILING_GAP_MIN, KORNBLITH_CKA_OVER_CCA_MIN,
                                      KORNBLITH_GROUNDING_MIN, LI_BOTTOM_MAX, LI_SUBSPACE_GAP_MIN,
                                      LI_SUBSPACE_R2_FRACTION, LI_TOP_MIN, NOT_TESTABLE, TABLE_NAMES,
                                      WANG_SMALL_MATCH_MAX, Finding, NotTestable, Tables)
from convergent.findings.imani import imani_depth, imani_emerges
from convergent.findings.kornblith import kornblith_cka_over_cca, kornblith_grounding, kornblith_width
from convergent.findings.li import li_reliable_units, li_shared_subspace
from convergent.findings.wang import wang_depth, wang_small_matches

PAIRS = "seeds (seed pairs)"
NETWORKS = "seeds (networks)"

FINDINGS: tuple[Finding, ...] = (
    Finding("li_reliable", "Li et al. 2016", "some units are learned reliably, others not",
            "top − bottom decile of the sorted one-to-one matched correlation",
            f"top decile > {LI_TOP_MIN} and bottom decile < {LI_BOTTOM_MAX} (whole intervals)",
            PAIRS, li_reliable_units,
            f"a top decile at or below {LI_TOP_MIN} (no unit matched reliably) or a bottom decile at or above "
            f"{LI_BOTTOM_MAX} (every unit matched)"),
    Finding("li_subspace", "Li et al. 2016", "units span shared subspaces while the basis is not shared",
            "held-out R² of the L1 linear map A→B (α chosen on the other fold) minus held-out one-to-one r̄²",
            f"R² / ceiling R² above {LI_SUBSPACE_R2_FRACTION} (data-order ceiling; self ceiling without it) and "
            f"R² − r̄² above {LI_SUBSPACE_GAP_MIN} (whole intervals)", PAIRS, li_shared_subspace,
            f"a linear map below {LI_SUBSPACE_R2_FRACTION} of the ceiling's R² (no shared subspace: e.g. 20 % "
            f"shared variance), or one-to-one matching within {LI_SUBSPACE_GAP_MIN} of the map (a shared basis: "
            "e.g. a permuted copy)"),
    Finding("kornblith_grounding", "Kornblith et al. 2019",
            "linear CKA identifies the corresponding layer of another seed",
            "fraction of layers whose most CKA-similar layer in the other net is the same layer",
            f"interval above {KORNBLITH_GROUNDING_MIN}", PAIRS, kornblith_grounding,
            f"at most {KORNBLITH_GROUNDING_MIN:.0%} of layers identified (another layer of B more CKA-similar)"),
    Finding("kornblith_cca", "Kornblith et al. 2019",
            "linear CKA identifies corresponding layers better than the CCA family",
            "layer-identification fraction, linear CKA minus the mean of CCA ρ̄, R²_CCA, SVCCA and PWCCA, "
            "on the identifications all five define",
            f"interval above {KORNBLITH_CKA_OVER_CCA_MIN:g}", PAIRS, kornblith_cka_over_cca,
            "the CCA family identifying layers as often as linear CKA (difference interval reaching 0)"),
    Finding("kornblith_width", "Kornblith et al. 2019", "cross-seed CKA rises with width",
            "slope of calibrated linear CKA per doubling of width (layers present at every width; debiased CKA "
            "without chance levels)", "interval above 0", PAIRS, kornblith_width,
            "a CKA slope per doubling of width whose interval reaches 0 or below"),
    Finding("wang_depth", "Wang et al. 2018", "representations are less similar deeper",
            "slope of calibrated maximum-match similarity (mean over ε) per layer (widths present at every layer)",
            "interval below 0", PAIRS, wang_depth,
            "a similarity slope per layer whose interval reaches 0 or above"),
    Finding("wang_small", "Wang et al. 2018", "maximum matches are small in intermediate conv layers",
            "maximum-match similarity (mean over ε) in intermediate layers",
            f"interval below {WANG_SMALL_MATCH_MAX}", PAIRS, wang_small_matches,
            f"half or more of the neurons in a maximum match (interval reaching {WANG_SMALL_MATCH_MAX})"),
    Finding("imani_depth", "Imani et al. 2022", "alignment is higher in layers closer to the output",
            "slope of calibrated top-c target alignment per layer, per network (widths present at every layer)",
            "interval above 0", NETWORKS, imani_depth,
            "an alignment slope per layer whose interval reaches 0 or below"),
    Finding("imani_emerges", "Imani et al. 2022", "alignment emerges with training",
            "top-c target alignment, trained minus untrained, per network", "interval above 0", NETWORKS,
            imani_emerges,
            "untrained networks as aligned as trained ones (difference interval reaching 0)"),
    Finding("brown_a", "Brown et al. 2023", "(a) a ReLU network's basis is privileged, a linear one's is not",
            "retrained-accuracy drop under the strongest rotation, ReLU minus linear", "interval above 0",
            "rotated networks (reference seed × width)", brown_privileged_basis,
            "a linear control that loses as much accuracy under rotation as the ReLU network"),
    Finding("brown_b", "Brown et al. 2023", "(b) seeds do not converge to a unique basis, even when wide",
            "data-order ceiling minus cross-seed basis correlation at the widest width",
            f"interval above {BROWN_CEILING_GAP_MIN}; ceiling above the floor", "seeds (seed pairs; order seeds)",
            brown_no_unique_basis,
            f"cross-seed basis correlation within {BROWN_CEILING_GAP_MIN} of what SGD noise alone leaves "
            "(same init, other minibatch order) at the widest width: seeds would converge to one basis"),
    Finding("brown_c", "Brown et al. 2023", "(c) freezing the first layers identically raises basis correlation",
            "calibrated basis correlation above the frozen layers, frozen_k > 0 minus frozen_k = 0",
            "interval above 0", PAIRS, brown_freezing,
            "layers above the frozen ones no more correlated than in unfrozen pairs (interval reaching 0)"),
    Finding("brown_d", "Brown et al. 2023", "(d) LMC improves with width, but not because basis correlation does",
            "slope of the plain-interpolation test-error barrier per doubling of width",
            f"barrier slope below 0 and basis-correlation slope below {BROWN_BASIS_RISE_MAX} per doubling",
            PAIRS, brown_lmc_width,
            f"a barrier that does not fall with width, or a basis correlation rising by {BROWN_BASIS_RISE_MAX} "
            "or more per doubling alongside it"),
)

#: Claims of the five papers (docs/findings.md) that no statistic here tests, with the reason (listed in findings.md).
NOT_OPERATIONALISED: tuple[tuple[str, str, str], ...] = (
    ("Li et al. 2016", "codes are a mix of local and slightly distributed",
     "qualitative; the sparse-prediction non-zero counts (sparse_nonzero) show it per layer but no threshold "
     "for 'slightly distributed' is defined"),
    ("Wang et al. 2018", "simple (minimal) matches are small",
     "the minimal-match sizes are in measures.csv (minimal_match_size_*) but the paper gives no threshold"),
    ("Imani et al. 2022", "alignment emerges across architectures and optimisers",
     "needs a sweep over optimisers; across architectures: compare imani_emerges between arch cells"),
)

COLUMNS = ["finding", "paper", "claim", "dataset", "arch", "statistic", "value", "ci_low", "ci_high", "n", "seeds",
           "seeds_needed", "resampled", "verdict", "reason", "rule", "detail", "flip", "reference"]


# --------------------------------------------------------------------------- evaluation

def cells(tables: Tables) -> list[tuple[str, str]]:
    """The (dataset, arch) cells present in any table, sorted."""
    found: set[tuple[str, str]] = set()
    for name in TABLE_NAMES:
        frame = getattr(tables, name)
        if frame is not None and {"dataset", "arch"} <= set(frame.columns):
            found |= set(map(tuple, frame[["dataset", "arch"]].astype(str).drop_duplicates().to_numpy()))
    return sorted(found)


def evaluate(finding: Finding, tables: Tables, dataset: str, arch: str) -> dict:
    """One row of the findings table: the finding evaluated on one cell."""
    row = {"finding": finding.id, "paper": finding.paper, "claim": finding.claim, "dataset": dataset,
           "arch": arch, "statistic": finding.statistic, "value": np.nan, "ci_low": np.nan, "ci_high": np.nan,
           "n": 0, "seeds": 0, "seeds_needed": np.nan, "resampled": finding.unit, "rule": finding.rule,
           "detail": "", "flip": finding.flip,
           "reference": ""}
    try:
        out = finding.evaluate(tables, dataset, arch)
    except NotTestable as err:
        return {**row, "verdict": NOT_TESTABLE, "reason": str(err)}
    est = out.estimate
    # no interval (too few seeds): the columns hold the value, and the reason says inconclusive
    lo, hi = (est.ci_low, est.ci_high) if est.enough else (np.nan, np.nan)
    return {**row, "value": est.value, "ci_low": lo, "ci_high": hi, "n": est.n,
            "seeds": max((e.seeds for e, _ in out.decided_by), default=est.seeds),
            "seeds_needed": seeds_needed_of(out.decided_by), "verdict": out.verdict, "reason": out.reason,
            "detail": out.detail, "reference": out.reference}


def seeds_needed_of(decided_by: Sequence[tuple]) -> float:
    """The seeds every condition of a verdict needs to be decisive: the largest of
    :meth:`Estimate.needs` over the (estimate, threshold) pairs; NaN when any has no spread."""
    needs = [est.needs(threshold) for est, threshold in decided_by]
    if not needs or any(np.isnan(n) for n in needs):
        return float("nan")
    return float(max(needs))


#: run coordinates shared by runs.csv and the per-pair tables
RUN_KEYS = ["dataset", "arch", "width", "frozen_k"]


def exclude_at_chance(tables: Tables) -> tuple[Tables, str]:
    """``tables`` without the trained-network rows of runs flagged ``at_chance`` in runs.csv, and a
    sentence saying what was left out ("" when nothing was).

    A network at chance accuracy did not learn; its representation says nothing about what
    training converges to, so every pair it is in (cross, ceiling; LMC; cross-layer CKA) and its
    rotation rows are dropped. Floor pairs compare untrained networks and stay.
    """
    runs = tables.runs
    if runs is None or "at_chance" not in runs or not runs["at_chance"].astype(str).str.lower().eq("true").any():
        return tables, ""
    bad = runs[runs["at_chance"].astype(str).str.lower().eq("true")]
    # a run is (cell, seed, order seed): a data-order run s{r}o{o} at chance takes out its own
    # data-order pair, not every pair of the reference seed r
    keys = {(*r[:-2], r[-2], r[-1]) for r in _run_keys(bad, "").to_numpy()}

    def keep(frame: pd.DataFrame | None, trained_only: bool) -> pd.DataFrame | None:
        if frame is None or not set(RUN_KEYS) <= set(frame.columns):
            return frame
        hit = np.zeros(len(frame), dtype=bool)
        for side in [s for s in ("", "_a", "_b") if f"seed{s}" in frame]:
            hit |= np.array([tuple(r) in keys for r in _run_keys(frame, side).to_numpy()], dtype=bool)
        if trained_only and "control" in frame:
            hit &= frame["control"] != "floor"
        return frame[~hit]

    out = Tables(runs=runs, measures=keep(tables.measures, True), lmc=keep(tables.lmc, True),
                 rotation=keep(tables.rotation, True), cka_layers=keep(tables.cka_layers, True))
    names = ", ".join(f"{d}/{a} w{w} f{k} s{s}" + (f"o{o}" if o != s else "") for d, a, w, k, s, o in sorted(keys))
    return out, (f"{len(keys)} network(s) at chance test accuracy (runs.csv at_chance: {names}) are left out "
                 "of every finding: their cross and ceiling pairs, LMC pairs, cross-layer CKA and rotation rows.")


def _run_keys(frame: pd.DataFrame, side: str) -> pd.DataFrame:
    """The run of each row as strings: :data:`RUN_KEYS`, ``seed{side}`` and ``order_seed{side}``
    (the seed where the table has no order seed: an ordinary run's order is its seed)."""
    seed = frame[f"seed{side}"]
    order = frame[f"order_seed{side}"] if f"order_seed{side}" in frame else seed
    out = frame[RUN_KEYS].astype(str).assign(seed=seed.astype(str), order_seed=order.astype(str))
    return out


def findings_table(tables: Tables, findings: Sequence[Finding] = FINDINGS) -> pd.DataFrame:
    """Every finding on every (dataset, arch) cell; one row each, columns :data:`COLUMNS`.

    With no table at all there is no cell; each finding then gets one row with empty
    dataset and arch, not testable. Networks at chance accuracy are left out
    (:func:`exclude_at_chance`).
    """
    tables, _ = exclude_at_chance(tables)
    cell_list = cells(tables) or [("", "")]
    rows = [evaluate(f, tables, d, a) for f in findings for d, a in cell_list]
    return pd.DataFrame(rows, columns=COLUMNS)


