"""Representation-similarity measures, all computable from a moments file.

:func:`compute_measures` runs every enabled measure family on the per-view
:class:`~convergent.moments.Moments` of one (pair, layer) and returns a tidy
table. Each measure is also a pure function usable on arrays (rows = samples)
or on Moments, with identical results.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from convergent.measures._common import FormUnavailable, MeasureUnavailable, dead_units, is_moments
from convergent.measures.alignment import alignment_curve
from convergent.measures.chance import COLUMNS as UNCERTAINTY_COLUMNS
from convergent.measures.chance import (NULL_FAMILIES, SE_FAMILIES, Replicates, block_columns,
                                        uncertainty_columns)
from convergent.measures.cka import linear_cka, minibatch_cka
from convergent.measures.classic import (cca, cca_mean, cca_r2, gram_eig, linreg_r2, linreg_r2_from_eig,
                                         procrustes_angle, procrustes_distance, procrustes_from_eigs, pwcca,
                                         rsa_sqeuclid, rsa_sqeuclid_from_grams, svcca, svcca_from_eigs)
from convergent.measures.kernels import (linear_cka_subsample, mutual_knn, mutual_knn_all_rows, rbf_cka,
                                         rbf_cka_all_rows, rbf_cka_grid)
from convergent.measures.matching import (_hungarian, _semi, correlation_matrix, cross_validated_match,
                                          hungarian_match, semi_equals_hungarian, semi_match, sorted_curve)
from convergent.measures.sparse import heldout_r2, sparse_prediction
from convergent.measures.spectral import spectral_groups
from convergent.measures.subspace import max_match, minimal_matches
from convergent.config import ConfigError
from convergent.moments import DUAL, GramMoments, Moments
from convergent.settings import MeasureSettings

__all__ = ["COLUMNS", "DEFAULT_PARAMS", "MeasureUnavailable", "alignment_curve", "cca", "cca_mean", "cca_r2",
           "compute_measures", "correlation_matrix", "linreg_r2", "procrustes_angle", "procrustes_distance",
           "pwcca", "rsa_sqeuclid", "svcca", "cross_validated_match", "dead_units", "hungarian_match", "linear_cka",
           "linear_cka_subsample", "max_match", "minibatch_cka", "minimal_matches", "mutual_knn", "rbf_cka",
           "semi_match", "sparse_prediction", "spectral_groups"]

#: Output columns of :func:`compute_measures`, in order (then ``jk_0`` … ``jk_{B-1}`` when the
#: moments carry example blocks).
COLUMNS = ["measure", "view", "parameter", "parameter_value", "value", "note", *UNCERTAINTY_COLUMNS]

#: Parameters of :func:`compute_measures`, as a plain dict; defined by
#: :class:`convergent.settings.MeasureSettings` (the pipeline's ``measures`` section)
DEFAULT_PARAMS: dict[str, Any] = MeasureSettings().as_dict()


def _params(params: MeasureSettings | Mapping[str, Any] | None) -> dict[str, Any]:
    """The complete parameters as a plain dict: a :class:`MeasureSettings`, or a mapping of its
    keys (the others keep their defaults; ``views`` replaces only the families it names)."""
    try:
        p = MeasureSettings.coerce(params).as_dict()
    except ConfigError as err:
        raise ValueError(f"unknown measures parameter: {err}") from None
    for key in ("enabled", "null_families", "se_families"):
        unknown = set(p[key]) - set(_FAMILIES)
        if unknown:
            raise ValueError(f"unknown measure families {sorted(unknown)} in {key}; known: {', '.join(_FAMILIES)}")
    return p


def _row(measure: str, value: float, parameter: str = "", parameter_value: float = np.nan, note: str = ""
         ) -> dict[str, Any]:
    return {"measure": measure, "parameter": parameter, "parameter_value": float(parameter_value),
            "value": float(value), "note": note}


def _why(measure: str, err: MeasureUnavailable) -> str:
    """The note of an unavailable measure. A form problem names the measure and the cause:
    ``unavailable: <measure> needs the d × d feature-space sums (cxy); view 'flatten' is dual (d=…, n=…)``."""
    return f"unavailable: {measure} {err}" if isinstance(err, FormUnavailable) else f"unavailable: {err}"


def _try(rows: list[dict], measure: str, fn: Callable[[], float], parameter: str = "",
         parameter_value: float = np.nan, note: str = "") -> None:
    """Append the value of ``fn()`` (with ``note``) or, if it is unavailable, a NaN row with the reason."""
    try:
        rows.append(_row(measure, fn(), parameter, parameter_value, note))
    except MeasureUnavailable as err:
        rows.append(_row(measure, np.nan, parameter, parameter_value, note=_why(measure, err)))


def _rows_note(m: Moments | GramMoments) -> str:
    """How a dual view's all-rows measures were computed when its Gram holds a row subsample ("" otherwise)."""
    if m.form != DUAL or not m.subsampled:
        return ""
    return (f"subsample: dual form on a seeded subsample of {m.n} of {m.n_rows} rows "
            f"(max_gram_rows={m.meta.get('max_gram_rows')}, seed {m.meta.get('gram_row_seed')})")


def _cka(m: Moments, p: dict[str, Any]) -> list[dict]:
    rows: list[dict] = []
    _try(rows, "cka_linear", lambda: linear_cka(m), note=_rows_note(m))
    _try(rows, "cka_linear_debiased", lambda: linear_cka(m, debiased=True), note=_rows_note(m))
    size = m.meta.get("minibatch_size") or 0
    if m.mb_count or size:
        _try(rows, "cka_minibatch", lambda: minibatch_cka(m), "minibatch_size", size)
        if m.mb_count:   # appended: an "unavailable: ..." reason must stay first in the note
            sub = (f"subsample: {m.mb_count} minibatches of {size} consecutive rows "
                   f"(at most {m.meta.get('minibatch_max')} evenly spaced per fold)")
            rows[-1]["note"] = f"{rows[-1]['note']}; {sub}" if rows[-1]["note"] else sub
    return rows


def _matching(m: Moments, p: dict[str, Any]) -> list[dict]:
    rows: list[dict] = []
    tol, atol = p["dead_tol"], p["dead_atol"]
    try:
        c = correlation_matrix(m, dead_tol=tol, dead_atol=atol)
    except MeasureUnavailable as err:
        for name in ("hungarian_mean_corr", "semi_mean_corr", "semi_equals_hungarian"):
            rows.append(_row(name, np.nan, note=_why(name, err)))
        return rows
    h, s = _hungarian(c), _semi(c)   # one correlation matrix for both matchings
    rows.append(_row("hungarian_mean_corr", h.mean))
    rows.append(_row("semi_mean_corr", s.mean))
    rows.append(_row("semi_equals_hungarian", semi_equals_hungarian(h, s)))
    for g, v in zip(p["sorted_grid"], sorted_curve(h.r, np.asarray(p["sorted_grid"], dtype=float))):
        rows.append(_row("matched_corr_sorted", v, "rank_fraction", g))
    if m.folds is not None:
        _try(rows, "hungarian_mean_corr_cv", lambda: cross_validated_match(m, kind="hungarian",
                                                                           dead_tol=tol, dead_atol=atol).mean)
        _try(rows, "semi_mean_corr_cv", lambda: cross_validated_match(m, kind="semi",
                                                                      dead_tol=tol, dead_atol=atol).mean)
    return rows


def _kernels(m: Moments, p: dict[str, Any]) -> list[dict]:
    rows: list[dict] = []
    if m.sub_kx is None:
        return [_row(name, np.nan, note="unavailable: no subsample in the moments (subsample_size 0)")
                for name in ("cka_linear_subsample", "cka_rbf_subsample", "mutual_knn_subsample")] + (
                    _kernels_all_rows(m, p) if m.form == DUAL else [])
    rows.append(_row("subsample_rows", m.sub_kx.shape[0]))
    _try(rows, "cka_linear_subsample", lambda: linear_cka_subsample(m))
    try:
        vals = rbf_cka_grid(m, sigma_scales=tuple(p["rbf_sigma_scales"]))
        rows += [_row("cka_rbf_subsample", v, "sigma_scale", t) for t, v in zip(p["rbf_sigma_scales"], vals)]
    except MeasureUnavailable as err:
        rows += [_row("cka_rbf_subsample", np.nan, "sigma_scale", t, _why("cka_rbf_subsample", err))
                 for t in p["rbf_sigma_scales"]]
    for k in p["knn_k"]:
        _try(rows, "mutual_knn_subsample", lambda k=k: mutual_knn(m, k=k), "k", k)
    if m.form == DUAL:   # the Gram of every row (or of the declared row subsample): the same kernels on all rows
        rows += _kernels_all_rows(m, p)
    return rows


def _kernels_all_rows(m: GramMoments, p: dict[str, Any]) -> list[dict]:
    """``cka_rbf`` and ``mutual_knn`` on all rows of a dual view (primal views have only the subsample's)."""
    rows: list[dict] = []
    note = _rows_note(m)
    try:
        vals = rbf_cka_all_rows(m, sigma_scales=tuple(p["rbf_sigma_scales"]))
        rows += [_row("cka_rbf", v, "sigma_scale", t, note) for t, v in zip(p["rbf_sigma_scales"], vals)]
    except MeasureUnavailable as err:
        rows += [_row("cka_rbf", np.nan, "sigma_scale", t, _why("cka_rbf", err)) for t in p["rbf_sigma_scales"]]
    for k in p["knn_k"]:
        _try(rows, "mutual_knn", lambda k=k: mutual_knn_all_rows(m, k=k), "k", k, note)
    return rows


def _sparse(m: Moments, p: dict[str, Any]) -> list[dict]:
    names = ("sparse_val_r2", "sparse_val_mse", "sparse_nonzero")
    try:
        fit = sparse_prediction(m, alphas=p["lasso_alphas"], max_targets=p["lasso_max_targets"],
                                max_iter=p["lasso_max_iter"], tol=p["lasso_tol"], dead_tol=p["dead_tol"],
                                dead_atol=p["dead_atol"])
    except MeasureUnavailable as err:
        return [_row(n, np.nan, "alpha", a, _why(n, err)) for a in p["lasso_alphas"] for n in names]
    rows = [_row("sparse_targets", fit.targets.size)]
    # the linear map's held-out pooled R² (1 − ΣMSE / ΣVar), α chosen on the other fold (findings: li_subspace)
    try:
        back = sparse_prediction(m, alphas=p["lasso_alphas"], max_targets=p["lasso_max_targets"],
                                 max_iter=p["lasso_max_iter"], tol=p["lasso_tol"], dead_tol=p["dead_tol"],
                                 dead_atol=p["dead_atol"], fit_fold=1)
        alpha, r2 = heldout_r2(fit, back)
        rows.append(_row("sparse_r2_heldout", r2, "alpha", alpha))
    except MeasureUnavailable as err:
        rows.append(_row("sparse_r2_heldout", np.nan, "alpha", np.nan, f"unavailable: {err}"))
    for i, a in enumerate(fit.alphas):
        note = ""
        if float(a) in fit.unavailable:
            note = f"unavailable: {fit.unavailable[float(a)]}"
        elif fit.not_converged[i]:
            note = (f"{fit.not_converged[i]} of {fit.targets.size} fits stopped at max_iter="
                    f"{p['lasso_max_iter']} with duality gap > tol={p['lasso_tol']}")
        for n, vals in zip(names, (fit.r2, fit.mse, fit.nonzero)):
            rows.append(_row(n, np.mean(vals[i]), "alpha", a, note))
    return rows


def _spectral(m: Moments, p: dict[str, Any]) -> list[dict]:
    rows: list[dict] = []
    for k in p["spectral_k"]:
        try:
            g = spectral_groups(m, k=k, seed=p["spectral_seed"], dead_tol=p["dead_tol"], dead_atol=p["dead_atol"])
            rows += [_row("spectral_mixing", g.mixing, "k", k), _row("spectral_mixed_clusters", g.mixed_clusters,
                                                                      "k", k)]
        except MeasureUnavailable as err:
            rows += [_row(n, np.nan, "k", k, _why(n, err))
                     for n in ("spectral_mixing", "spectral_mixed_clusters")]
    return rows


def _subspace(m: Moments, p: dict[str, Any]) -> list[dict]:
    rows: list[dict] = []
    tol = p["subspace_rank_tol"]
    if tol is None:   # float32 block products resolve the cosine Gram to ~1e-6 only
        tol = 1e-6 if m.meta.get("precision") == "mixed" else 1e-10
    kw = {"rank_tol": tol, "norm_tol": p["subspace_norm_tol"]}
    if m.form == DUAL:   # Wang et al.'s match needs the d × d raw Gram of the units
        names = ("subspace_similarity", "subspace_matched_a", "subspace_matched_b")
        err = FormUnavailable(f"needs the d × d feature-space sums (xx, xy, yy); {m.describe()}")
        return ([_row(n, np.nan, "eps", eps, _why(n, err)) for eps in p["subspace_eps"] for n in names]
                + [_row(n, np.nan, "eps", eps, _why(n, err)) for eps in p["minimal_eps"]
                   for n in ("minimal_match_size_mean", "minimal_match_size_median", "minimal_match_size_max")])
    for eps in p["subspace_eps"]:
        mm = max_match(m, eps=eps, **kw)
        rows += [_row("subspace_similarity", mm.similarity, "eps", eps),
                 _row("subspace_matched_a", mm.a.size, "eps", eps),
                 _row("subspace_matched_b", mm.b.size, "eps", eps)]
    for eps in p["minimal_eps"]:
        mins = minimal_matches(m, eps=eps, max_neurons=p["minimal_max_neurons"], **kw)
        names = ("minimal_match_size_mean", "minimal_match_size_median", "minimal_match_size_max")
        if mins.sizes.size == 0:
            rows += [_row(n, np.nan, "eps", eps, "unavailable: the maximum match is empty") for n in names]
            continue
        rows += [_row(n, f(mins.sizes), "eps", eps) for n, f in zip(names, (np.mean, np.median, np.max))]
        rows.append(_row("minimal_match_neurons", mins.sizes.size, "eps", eps,
                         f"minimal matches of {mins.sizes.size} of the {mins.n_in_max} neurons in the maximum match"))
    return rows


def _alignment(m: Moments, p: dict[str, Any]) -> list[dict]:
    rows: list[dict] = []
    frac = p["alignment_fraction"]
    for side in ("a", "b"):
        try:
            al = alignment_curve(m, side, rank_tol=p["alignment_rank_tol"])
        except MeasureUnavailable as err:
            rows.append(_row(f"alignment_top_c_{side}", np.nan, note=_why(f"alignment_top_c_{side}", err)))
            continue
        c = al.n_classes
        rows.append(_row(f"alignment_top_c_{side}", al.top(c), "k", c, _rows_note(m)))
        k = al.k_for(frac)
        rows.append(_row(f"alignment_k_{side}", np.nan if k is None else k, "fraction", frac,
                         "" if k is not None else f"unavailable: A(k) never reaches {frac} (max {al.curve[-1]:.4g})"))
        r = al.curve.size
        ks = sorted({*[2 ** i for i in range(int(np.log2(r)) + 1)], c if c <= r else r, r})
        rows += [_row(f"alignment_curve_{side}", al.top(k), "k", k, _rows_note(m)) for k in ks]
    return rows


def _cca_family(m: Moments, p: dict[str, Any]) -> list[dict]:
    rows: list[dict] = []
    kw = {"singular_tol": p["cca_singular_tol"], "dead_tol": p["dead_tol"], "dead_atol": p["dead_atol"]}
    ridge = float(p["cca_ridge"])
    par = ("ridge", ridge) if ridge > 0 else ("", np.nan)
    try:
        r = cca(m, ridge=ridge, **kw)
        rows += [_row("cca_mean", float(np.mean(r.rho)), *par), _row("cca_r2", float(np.mean(r.rho ** 2)), *par)]
    except MeasureUnavailable as err:
        r, why = None, f"unavailable: {err}"
        rows += [_row(name, np.nan, *par, note=why) for name in ("cca_mean", "cca_r2")]
    for v in p["svcca_variance_kept"]:
        if m.form == DUAL:   # exact from the Grams' eigenvectors when few components are kept
            _try(rows, "svcca", lambda v=v: svcca_from_eigs(_eigs(m, "a"), _eigs(m, "b"), float(v)),
                 "variance_kept", v, _rows_note(m))
        else:
            _try(rows, "svcca", lambda v=v: svcca(m, variance_kept=float(v), **kw), "variance_kept", v)
    if r is None:
        rows.append(_row("pwcca", np.nan, *par, note=why))
    else:
        _try(rows, "pwcca", lambda: pwcca(m, ridge=ridge, result=r, **kw), *par)
    return rows


def _eigs(m: GramMoments, side: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`gram_eig` of one side's centred Gram, computed once per (moments, side): the shape,
    linear-regression and SVCCA measures of a dual view all start from it."""
    cache = m.__dict__.setdefault("_gram_eig_cache", {})   # not a dataclass field: never saved
    if side not in cache:
        cache[side] = gram_eig(m.gram(side))
    return cache[side]


def _shape_family(m: Moments | GramMoments, p: dict[str, Any]) -> list[dict]:
    rows: list[dict] = []
    if m.form == DUAL:   # Procrustes is a function of the two Grams (their eigendecompositions)
        for kind in ("angle", "distance"):
            _try(rows, f"procrustes_{kind}", lambda kind=kind: procrustes_from_eigs(_eigs(m, "a"), _eigs(m, "b"),
                                                                                    kind), note=_rows_note(m))
        return rows
    _try(rows, "procrustes_angle", lambda: procrustes_angle(m))
    _try(rows, "procrustes_distance", lambda: procrustes_distance(m))
    return rows


def _linreg(m: Moments | GramMoments, p: dict[str, Any]) -> list[dict]:
    rows: list[dict] = []
    kw = {"rank_tol": p["cca_singular_tol"], "dead_tol": p["dead_tol"], "dead_atol": p["dead_atol"]}
    for d in ("a_from_b", "b_from_a"):
        if m.form == DUAL:   # tr(P_pred K_target) / tr K_target from the Grams
            target, pred = ("a", "b") if d == "a_from_b" else ("b", "a")
            _try(rows, f"linreg_r2_{d}", lambda t=target, q=pred: linreg_r2_from_eig(m.gram(t), _eigs(m, q)),
                 note=_rows_note(m))
        else:
            _try(rows, f"linreg_r2_{d}", lambda d=d: linreg_r2(m, direction=d, **kw))
    return rows


def _rsa(m: Moments | GramMoments, p: dict[str, Any]) -> list[dict]:
    rows: list[dict] = []
    for kind in ("pearson", "cosine"):
        if m.form == DUAL:   # squared distances come straight from the Grams
            _try(rows, f"rsa_sqeuclid_{kind}",
                 lambda kind=kind: rsa_sqeuclid_from_grams(m.gram("a"), m.gram("b"), kind), note=_rows_note(m))
        else:
            _try(rows, f"rsa_sqeuclid_{kind}", lambda kind=kind: rsa_sqeuclid(m, kind=kind))
    return rows


_FAMILIES: dict[str, Callable[[Moments | GramMoments, dict[str, Any]], list[dict]]] = {
    "cka": _cka,
    "matching": _matching,
    "kernels": _kernels,
    "sparse": _sparse,
    "spectral": _spectral,
    "subspace": _subspace,
    "alignment": _alignment,
    "cca": _cca_family,
    "shape": _shape_family,
    "linreg": _linreg,
    "rsa": _rsa,
}

#: rows that describe the data rather than compare it: kept for a constant representation
_DESCRIPTIVE = {"dead_units_a", "dead_units_b", "subsample_rows"}


def _constant_unavailable(rows: list[dict], m: Moments | GramMoments, p: dict[str, Any]) -> list[dict]:
    """Turn every comparison of a constant (all units dead) representation into an unavailable row.

    A layer whose every unit is dead (variance ≤ the dead tolerance: a dead ReLU layer, a
    constant one) carries no information about the samples, so any number comparing it is
    an artefact (the subspace match of two constant layers is 1, their alignment the class
    prior). Per-network rows (``alignment_*_a``/``_b``) depend on that network only.
    """
    dead = dead_units(m, p["dead_tol"], p["dead_atol"])
    const = {side: mask.size > 0 and bool(mask.all()) for side, mask in (("a", dead.a), ("b", dead.b))}
    if not any(const.values()):
        return rows
    out = []
    for r in rows:
        name = r["measure"]
        sides = [name[-1]] if name.startswith("alignment_") else ["a", "b"]
        hit = [s.upper() for s in sides if const[s]]
        if name in _DESCRIPTIVE or not hit:
            out.append(r)
            continue
        who = f"representation {hit[0]} is" if len(hit) == 1 else "representations A and B are"
        why = r["note"].removeprefix("unavailable: ")
        out.append({**r, "value": np.nan,
                    "note": f"unavailable: {who} constant over the samples (every unit dead)"
                            + (f"; {why}" if why else "")})
    return out


def compute_measures(m: Moments | GramMoments | Mapping[str, Moments | GramMoments],
                     params: Mapping[str, Any] | None = None
                     ) -> pd.DataFrame:
    """All enabled measures of one (pair, layer) as a tidy table with :data:`COLUMNS`.

    ``m``: ``{view: Moments}`` as :func:`convergent.moments.load_moments` returns,
    or a single Moments (used for every family). One row per measure × parameter
    value; ``parameter`` is "" and ``parameter_value`` NaN when there is none.
    A measure that cannot be computed gives ``value`` NaN and the reason in
    ``note`` (never a silent NaN); ``note`` is "" otherwise. Dead-unit counts
    (``dead_units_a``, ``dead_units_b``) are reported for every view used.
    """
    p = _params(params)
    if p["blas_threads"] is None:
        return _compute(m, p)
    from threadpoolctl import threadpool_limits   # installed with scikit-learn

    with threadpool_limits(limits=int(p["blas_threads"]), user_api="blas"):
        return _compute(m, p)


def _compute(m: Moments | GramMoments | Mapping[str, Moments | GramMoments], p: dict[str, Any]) -> pd.DataFrame:
    rows: list[dict] = []
    dead_done: set[str] = set()
    replicates: dict[int, Replicates] = {}      # per view's moments object, shared by its families
    for fam in p["enabled"]:
        if is_moments(m):
            view, mv = m.view, m   # a bare Moments knows its own view (or "")
        else:
            view = p["views"].get(fam)
            if view is None:
                raise ValueError(f"no view configured for measure family {fam!r} (params['views'])")
            mv = m.get(view)
            if mv is None:
                rows.append({**_row(fam, np.nan, note=f"unavailable: view {view!r} not in the moments "
                                                       f"(has {', '.join(m)})"), "view": view})
                continue
        if view not in dead_done:
            dead_done.add(view)
            d = dead_units(mv, p["dead_tol"], p["dead_atol"])
            rows += [{**_row("dead_units_a", d.n_a), "view": view}, {**_row("dead_units_b", d.n_b), "view": view}]
        fam_rows = _constant_unavailable(_FAMILIES[fam](mv, p), mv, p)
        if id(mv) not in replicates:
            replicates[id(mv)] = Replicates(mv, p)
        fam_rows = uncertainty_columns(fam_rows, fam, _FAMILIES[fam], replicates[id(mv)], p)
        rows += [{**r, "view": view} for r in fam_rows]
    df = pd.DataFrame(rows)
    df = df.reindex(columns=COLUMNS + block_columns(df))
    df["null_method"] = df["null_method"].astype(object).fillna("")
    df["null_permutations"] = df["null_permutations"].fillna(0).astype(int)
    df["note"] = df["note"].fillna("")
    bad = df["value"].isna() & (df["note"] == "")
    if bad.any():  # a NaN without a reason is a bug, not a result
        raise RuntimeError(f"measures returned NaN without a reason: {df.loc[bad, 'measure'].tolist()}")
    return df
