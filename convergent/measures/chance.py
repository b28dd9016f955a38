"""Chance levels, calibrated values and standard errors over examples, for every measures row.

A similarity means little without its chance level: two networks with nothing in common
still get a linear CKA that grows with width (≈ √(β_x β_y)/(n − 1), see below), an SVCCA
and a matched correlation well above 0. For each (pair, layer, measure) this module adds

* ``chance``: the mean of the measure's **null distribution**, the measure recomputed when
  the images of A, of B and the labels no longer correspond (each network's images permuted
  within each fold; :mod:`convergent.moments.replicates`);
* ``calibrated``: (value − chance) / (best − chance), ``best`` the value of identical
  representations (1 for a similarity, 0 for a distance): 0 at chance, 1 at identity,
  negative below chance. Undefined (NaN, with a note) when the chance level is the best value;
* ``p_value``: the one-sided permutation p-value of "more similar than chance";
* ``se_examples``: the delete-one-block jackknife standard error over the test images, and
  the replicates themselves (``jk_0`` … ``jk_{B−1}``) so that the findings can resample the
  images jointly across pairs (the Multi-Bootstrap).

How the null is computed, per measure (column ``null_method``):

* ``closed form``: **linear CKA** is the RV coefficient of the two centred Grams, whose
  mean and variance over all n! row permutations are known exactly (Kazi-Aoual et al. 1995;
  Josse, Pagès & Husson 2008) from tr K, tr K², Σ K_ii² of each network, all in the primal
  sums (Σ K_ii² = Σ‖x_i − μ‖⁴ is a debiased-CKA term) and in the dual Grams. The p-value is
  the normal approximation of the standardised RV. **Debiased CKA**: Song et al.'s unbiased
  HSIC has mean exactly 0 under permutation, so its chance level is 0 by construction; its
  p-value comes from the null worlds.
* ``permutations``: every other measure of the families in :data:`NULL_FAMILIES`, computed
  by its own code on ``null_permutations`` null worlds (primal: cross sums of the permuted
  rows kept in the moments file; dual: exact reindexings of the n × n Grams; kernel
  ``*_subsample`` measures: the subsample of B permuted). p = (1 + #{null ≥ value}) / (P + 1),
  so its resolution is 1 / (P + 1).
* The families left out (``sparse``: one lasso path per target; ``spectral``: a clustering
  per k) cost tens of times the rest; their rows say so in ``null_method``.

Everything here is computed from the moments files alone, like the measures.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from convergent.measures._common import MeasureUnavailable
from convergent.moments import DUAL, GramMoments, Moments
from convergent.settings import REPLICATE_FAMILIES

#: measure families whose rows get a permutation null and jackknife SE by default (the rest: see
#: module doc; the config's measures.null_families / se_families, convergent.settings.MeasureSettings)
NULL_FAMILIES = REPLICATE_FAMILIES
SE_FAMILIES = REPLICATE_FAMILIES

#: distances: 0 for identical representations, larger is less similar
DISTANCES = frozenset({"procrustes_angle", "procrustes_distance", "sparse_val_mse"})
#: rows that count or describe rather than compare: no chance level (and no SE for the counts)
NOT_SIMILARITIES = frozenset({"dead_units_a", "dead_units_b", "subsample_rows", "semi_equals_hungarian",
                              "subspace_matched_a", "subspace_matched_b", "minimal_match_size_mean",
                              "minimal_match_size_median", "minimal_match_size_max", "minimal_match_neurons",
                              "alignment_k_a", "alignment_k_b", "sparse_targets", "sparse_nonzero",
                              "spectral_mixed_clusters"})
CLOSED_FORM = "closed form (RV permutation moments)"
ZERO_BY_CONSTRUCTION = "zero by construction (unbiased HSIC); p from permutations"

#: columns this module adds to a measures table, in order (plus jk_0 … jk_{B-1})
COLUMNS = ["chance", "calibrated", "p_value", "null_method", "null_permutations", "se_examples"]


# --------------------------------------------------------------------------- linear CKA: closed form

def rv_gram_terms(m: Moments | GramMoments) -> tuple[tuple[float, float, float], tuple[float, float, float], int]:
    """(tr K, tr K², Σ K_ii²) of each network's centred Gram K = XcXcᵀ, and n.

    Primal: tr K = tr(XcᵀXc), tr K² = ‖XcᵀXc‖²_F, Σ K_ii² = Σ‖x_i − μ‖⁴; dual: from the Grams."""
    if m.form == DUAL:
        out = []
        for side in "ab":
            K = m.gram(side)
            out.append((float(np.trace(K)), float(np.vdot(K, K)), float(np.sum(np.diag(K) ** 2))))
        return out[0], out[1], int(m.n)
    t = m.centred_debias_terms()
    cxx, cyy = m.cxx, m.cyy
    return ((float(np.trace(cxx)), float(np.vdot(cxx, cxx)), float(t["sum_aa"])),
            (float(np.trace(cyy)), float(np.vdot(cyy, cyy)), float(t["sum_bb"])), int(m.n))


def rv_permutation_moments(x: tuple[float, float, float], y: tuple[float, float, float], n: int
                           ) -> tuple[float, float]:
    """Mean and variance of the RV coefficient (= linear CKA) over all row permutations of one side.

    ``x``, ``y``: (tr K, tr K², Σ K_ii²) of each centred Gram. With β = (tr K)²/tr K² and
    δ = Σ K_ii²/tr K² (Kazi-Aoual et al. 1995; Josse et al. 2008, eqs. 3–4):
    E = √(β_x β_y)/(n−1);
    Var = 2(n−1−β_x)(n−1−β_y) / ((n+1)(n−1)²(n−2)) · (1 + (n−3)/(2n(n−1)) τ_x τ_y),
    τ = (n−1)/((n−3)(n−1−β)) · (n(n+1)δ − (n−1)(β+2)). Needs n ≥ 4.
    """
    if n < 4:
        raise MeasureUnavailable(f"the RV permutation moments need n >= 4 rows, got {n}")
    (tx, tx2, dx), (ty, ty2, dy) = x, y
    if not (tx2 > 0 and ty2 > 0):
        raise MeasureUnavailable("a representation is constant over the samples; no chance level")
    bx, by = tx * tx / tx2, ty * ty / ty2
    mean = float(np.sqrt(bx * by) / (n - 1))

    def tau(b: float, d: float) -> float:
        if n - 1 - b <= 0:      # rank-(n−1) Gram with equal eigenvalues: RV constant under permutation
            return 0.0
        return (n - 1) / ((n - 3) * (n - 1 - b)) * (n * (n + 1) * d - (n - 1) * (b + 2))

    var = (2 * (n - 1 - bx) * (n - 1 - by) / ((n + 1) * (n - 1) ** 2 * (n - 2))
           * (1 + (n - 3) / (2 * n * (n - 1)) * tau(bx, dx / tx2) * tau(by, dy / ty2)))
    return mean, float(max(var, 0.0))


def linear_cka_chance(m: Moments | GramMoments) -> tuple[float, float]:
    """(mean, sd) of linear CKA under row permutation, exact (closed form)."""
    x, y, n = rv_gram_terms(m)
    mean, var = rv_permutation_moments(x, y, n)
    return mean, float(np.sqrt(var))


# --------------------------------------------------------------------------- calibration

def best_value(measure: str) -> float:
    """The value of identical representations: 0 for a distance, 1 for a similarity."""
    return 0.0 if measure in DISTANCES else 1.0


def calibrate(measure: str, value: float, chance: float) -> float:
    """(value − chance) / (best − chance): 0 at chance, 1 for identical representations, < 0 below
    chance (a distance is turned around so that larger is more similar, like a similarity). NaN
    when the chance level is the best value (nothing to calibrate against) or either is NaN."""
    best = best_value(measure)
    span = best - chance
    if not (np.isfinite(value) and np.isfinite(chance)) or abs(span) < 1e-12:
        return float("nan")
    return float((value - chance) / span)


def permutation_p(measure: str, value: float, null: np.ndarray) -> float:
    """One-sided p of "more similar than chance": (1 + #{null at least as similar}) / (P + 1)."""
    null = null[np.isfinite(null)]
    if not np.isfinite(value) or null.size == 0:
        return float("nan")
    hits = np.sum(null <= value) if measure in DISTANCES else np.sum(null >= value)
    return float((1 + hits) / (null.size + 1))


def jackknife_se(replicates: np.ndarray) -> float:
    """Delete-one-block jackknife SE: √((B−1)/B Σ (θ_(b) − θ̄)²); NaN unless every replicate is finite."""
    r = np.asarray(replicates, dtype=np.float64)
    if r.size < 2 or not np.isfinite(r).all():
        return float("nan")
    return float(np.sqrt((r.size - 1) / r.size * np.sum((r - r.mean()) ** 2)))


# --------------------------------------------------------------------------- the columns

def _key(row: Mapping[str, Any]) -> tuple:
    """A row's identity within its family: (measure, parameter, parameter value; None when NaN)."""
    pv = row["parameter_value"]
    return row["measure"], row["parameter"], None if not np.isfinite(pv) else round(float(pv), 12)


def _values(rows: list[dict]) -> dict[tuple, float]:
    """{row key: value} of a family's rows."""
    return {_key(r): r["value"] for r in rows}


def replicate_values(family: Callable[[Any, dict], list[dict]], worlds: list[Any], p: dict[str, Any]
                     ) -> dict[tuple, np.ndarray]:
    """Each row's value in each replicate (null world or jackknife), NaN where a replicate lacks it."""
    per: list[dict[tuple, float]] = []
    for w in worlds:
        try:
            per.append(_values(family(w, p)))
        except MeasureUnavailable:
            per.append({})
    keys = {k for d in per for k in d}
    return {k: np.array([d.get(k, np.nan) for d in per], dtype=np.float64) for k in keys}


class Replicates:
    """The null worlds and jackknife replicates of one view's moments, built once on first use
    and shared by every family (building one costs about as much as a cheap family)."""

    def __init__(self, m: Moments | GramMoments, p: dict[str, Any]):
        self.m, self.p = m, p
        self._null: list | None = None
        self._jk: list | None = None

    @property
    def null(self) -> list:
        if self._null is None:
            sub = "kernels" in self.p["null_families"]
            self._null = [self.m.null_world(k, subsample=sub) for k in range(self.m.n_null)]
        return self._null

    def has_null(self, family: str) -> bool:
        """Whether ``family``'s rows get the null worlds: the families of ``measures.null_families``,
        and on a dual view also the kernels on all rows, whose worlds are exact reindexings of the
        Grams already in memory (the subsample's kernels stay out unless ``kernels`` is listed)."""
        return family in self.p["null_families"] or (family == "kernels" and self.m.form == DUAL)

    @property
    def jackknife(self) -> list:
        if self._jk is None:
            sub = "kernels" in self.p["se_families"]
            self._jk = [self.m.jackknife(b, subsample=sub) for b in range(self.m.n_blocks)]
        return self._jk


def uncertainty_columns(rows: list[dict], family: str, fn: Callable[[Any, dict], list[dict]],
                        reps: Replicates, p: dict[str, Any]) -> list[dict]:
    """``rows`` (one family's measures on ``reps.m``) with :data:`COLUMNS` and ``jk_*`` added."""
    m = reps.m
    n_null = m.n_null if reps.has_null(family) else 0
    n_blocks = m.n_blocks if family in p["se_families"] else 0
    why_none = m.meta.get("replicates_note", "")
    # rows that are counts get neither a chance level nor an SE: skip the costly ones in the replicates
    rp = {**p, "minimal_eps": []}
    null = replicate_values(fn, reps.null, rp) if n_null else {}
    jk = replicate_values(fn, reps.jackknife, rp) if n_blocks else {}
    out = []
    for r in rows:
        name, value, key = r["measure"], r["value"], _key(r)
        extra: dict[str, Any] = {c: np.nan for c in COLUMNS}
        extra["null_method"], extra["null_permutations"] = "", 0
        for b in range(n_blocks):
            extra[f"jk_{b}"] = jk.get(key, np.full(n_blocks, np.nan))[b]
        if name not in NOT_SIMILARITIES and np.isfinite(value):
            if n_blocks and key in jk:
                extra["se_examples"] = jackknife_se(jk[key])
            sample = null.get(key, np.zeros(0))
            if name == "cka_linear":
                try:
                    mean, sd = linear_cka_chance(m)
                    extra.update(chance=mean, null_method=CLOSED_FORM,
                                 p_value=float(norm.sf((value - mean) / sd)) if sd > 0 else float(value <= mean))
                except MeasureUnavailable as err:
                    extra["null_method"] = f"unavailable: {err}"
            elif name == "cka_linear_debiased":
                extra.update(chance=0.0, null_method=ZERO_BY_CONSTRUCTION, null_permutations=int(n_null),
                             p_value=permutation_p(name, value, sample))
            elif np.isfinite(sample).sum() >= 2:
                extra.update(chance=float(np.nanmean(sample)), null_method="permutations",
                             null_permutations=int(np.isfinite(sample).sum()),
                             p_value=permutation_p(name, value, sample))
            else:
                extra["null_method"] = _no_null_reason(family, p, n_null, why_none)
            extra["calibrated"] = calibrate(name, value, extra["chance"])
        out.append({**r, **extra})
    return out


def _no_null_reason(family: str, p: dict[str, Any], n_null: int, why_none: str) -> str:
    if why_none:
        return why_none
    if family not in p["null_families"]:
        return f"not computed: family {family!r} not in measures.null_families (cost)"
    if not n_null:
        return "not computed: moments.null_permutations is 0"
    return "not computed: undefined in the null worlds"


def block_columns(frame: pd.DataFrame) -> list[str]:
    """The ``jk_*`` columns of a measures table, in block order."""
    cols = [c for c in frame.columns if c.startswith("jk_")]
    return sorted(cols, key=lambda c: int(c[3:]))


def with_uncertainty_defaults(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with the family lists defaulted (see :data:`NULL_FAMILIES`, :data:`SE_FAMILIES`)."""
    out = dict(params)
    out.setdefault("null_families", list(NULL_FAMILIES))
    out.setdefault("se_families", list(SE_FAMILIES))
    return out
