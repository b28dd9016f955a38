"""Every measure between every layer of network A and every layer of network B (Kornblith et al. Table 2).

Input: each layer's activations of the same n samples, column-centred, rows = samples.
Per layer, the d × d scatter (narrow layers) or the n × n Gram and its eigendecomposition
(layers wider than ``max_features``: the dual form) is formed once; each (layer_a, layer_b)
then costs one cross product X̃ᵀỸ (d1 × d2) or one n × n product. RBF CKA uses the first
``kernel_samples`` rows (its kernels are n × n whatever the width).

Output columns (:func:`pair_measure_names`), similarities unless noted: ``cka_linear``,
``cka_rbf_<t>`` (σ = t × median distance), ``hungarian_mean_corr`` (one-to-one matched
correlation of the alive units), ``cca_mean``, ``cca_r2``, ``svcca`` (``variance_kept``),
``pwcca``, ``procrustes_angle`` and ``procrustes_distance`` (distances), ``linreg_r2_a_from_b``,
``linreg_r2_b_from_a``, ``rsa_sqeuclid_pearson``, ``rsa_sqeuclid_cosine``. A value that
cannot be computed is NaN and ``note`` says why (e.g. CCA on a layer wider than the samples).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from convergent.measures._common import MeasureUnavailable, dead_units
from convergent.measures.classic import (CentredStats, cca, gram_eig, linreg_r2, linreg_r2_from_eig,
                                         procrustes_angle, procrustes_distance, procrustes_from_eigs, pwcca,
                                         rsa_sqeuclid, rsa_sqeuclid_from_grams, svcca, svcca_from_eigs)
from convergent.measures.kernels import _dist_and_median, cka_from_kernels
from convergent.settings import LayersSettings

def pair_measure_names(sigma_scales: Sequence[float]) -> list[str]:
    """The value columns, in order."""
    return (["cka_linear"] + [f"cka_rbf_{t:g}" for t in sigma_scales]
            + ["hungarian_mean_corr", "cca_mean", "cca_r2", "svcca", "pwcca", "procrustes_angle",
               "procrustes_distance", "linreg_r2_a_from_b", "linreg_r2_b_from_a", "rsa_sqeuclid_pearson",
               "rsa_sqeuclid_cosine"])


class _Layer:
    """One layer's centred activations and what every pair reuses."""

    def __init__(self, x: np.ndarray, max_features: int, kernel_samples: int) -> None:
        self.x, self.n, self.d = x, x.shape[0], x.shape[1]
        # the dual form when the d × d form is too big or the wrong object (d ≥ n: the n × n Gram
        # is smaller, and CCA is undefined there anyway)
        self.wide = self.d > max_features or self.d >= self.n
        self.max_features = max_features
        self.a = np.einsum("ij,ij->i", x, x)
        self._dual: tuple[np.ndarray, tuple[np.ndarray, np.ndarray]] | None = None
        if not self.wide:
            self.cov = x.T @ x
        xs = x[:kernel_samples]
        xs = xs - xs.mean(axis=0)
        self.sub_gram = xs @ xs.T
        self._rbf: dict[float, np.ndarray] = {}

    def dual(self) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """The n × n Gram and its :func:`gram_eig`, formed on first use."""
        if self._dual is None:
            gram = self.x @ self.x.T
            self._dual = (gram, gram_eig(gram))
        return self._dual

    def rbf(self, t: float) -> np.ndarray:
        if t not in self._rbf:
            d2, med = _dist_and_median(self.sub_gram)
            self._rbf[t] = np.exp(-d2 / (2.0 * (t * med) ** 2))
        return self._rbf[t]


def _value(out: dict[str, Any], notes: list[str], name: str, fn) -> None:
    try:
        out[name] = float(fn())
    except MeasureUnavailable as err:
        out[name] = np.nan
        notes.append(f"{name}: {err}")


def pair_values(la: _Layer, lb: _Layer, p: Mapping[str, Any]) -> dict[str, Any]:
    """Every measure of one (layer of A, layer of B); ``note`` joins the reasons for NaNs."""
    out: dict[str, Any] = {}
    notes: list[str] = []
    tol = float(p["dead_tol"])
    if la.wide or lb.wide:
        # dual form: everything that is a function of the Grams; the rest is unavailable
        (ka, ea), (kb, eb) = la.dual(), lb.dual()
        _value(out, notes, "cka_linear", lambda: cka_from_kernels(ka, kb))
        d = max(la.d, lb.d)
        why = (f"a layer has {d} features, more than max_features={p['max_features']}: only the Gram (dual) "
               "form is computed" if d > int(p["max_features"]) else
               f"a layer has {d} features >= n = {la.n} samples (more units than samples): CCA is undefined "
               "(every ρ = 1) and only the Gram (dual) form is computed")

        def unavailable():
            raise MeasureUnavailable(why)
        for name in ("hungarian_mean_corr", "cca_mean", "cca_r2", "pwcca"):
            _value(out, notes, name, unavailable)
        _value(out, notes, "svcca", lambda: svcca_from_eigs(ea, eb, float(p["svcca_variance_kept"])))
        _value(out, notes, "procrustes_angle", lambda: procrustes_from_eigs(ea, eb, "angle"))
        _value(out, notes, "procrustes_distance", lambda: procrustes_from_eigs(ea, eb, "distance"))
        _value(out, notes, "linreg_r2_a_from_b", lambda: linreg_r2_from_eig(ka, eb))
        _value(out, notes, "linreg_r2_b_from_a", lambda: linreg_r2_from_eig(kb, ea))
        _value(out, notes, "rsa_sqeuclid_pearson", lambda: rsa_sqeuclid_from_grams(ka, kb, "pearson"))
        _value(out, notes, "rsa_sqeuclid_cosine", lambda: rsa_sqeuclid_from_grams(ka, kb, "cosine"))
    else:
        s = CentredStats(la.n, la.cov, lb.cov, la.x.T @ lb.x, la.a, lb.a, {"precision": "float64"})
        _value(out, notes, "cka_linear", lambda: _linear_cka(s))
        _value(out, notes, "hungarian_mean_corr", lambda: _hungarian_mean(s, tol, int(p["match_max_features"])))
        kw = {"dead_tol": tol}

        try:
            r = cca(s, **kw)
            out["cca_mean"], out["cca_r2"] = float(np.mean(r.rho)), float(np.mean(r.rho ** 2))
            _value(out, notes, "pwcca", lambda: pwcca(s, result=r, **kw))
        except MeasureUnavailable as err:
            out["cca_mean"] = out["cca_r2"] = out["pwcca"] = np.nan
            notes.append(f"cca, pwcca: {err}")
        _value(out, notes, "svcca", lambda: svcca(s, variance_kept=float(p["svcca_variance_kept"]), **kw))
        _value(out, notes, "procrustes_angle", lambda: procrustes_angle(s))
        _value(out, notes, "procrustes_distance", lambda: procrustes_distance(s))
        _value(out, notes, "linreg_r2_a_from_b", lambda: linreg_r2(s, direction="a_from_b", **kw))
        _value(out, notes, "linreg_r2_b_from_a", lambda: linreg_r2(s, direction="b_from_a", **kw))
        _value(out, notes, "rsa_sqeuclid_pearson", lambda: rsa_sqeuclid(s, kind="pearson"))
        _value(out, notes, "rsa_sqeuclid_cosine", lambda: rsa_sqeuclid(s, kind="cosine"))
    for t in p["rbf_sigma_scales"]:
        _value(out, notes, f"cka_rbf_{float(t):g}", lambda t=t: cka_from_kernels(la.rbf(float(t)), lb.rbf(float(t))))
    out["note"] = "; ".join(notes)
    return out


def _linear_cka(s: CentredStats) -> float:
    """‖X̃ᵀỸ‖²_F / (‖X̃ᵀX̃‖_F ‖ỸᵀỸ‖_F), the formula of :func:`convergent.measures.cka.linear_cka`."""
    nx, ny = np.linalg.norm(s.cxx), np.linalg.norm(s.cyy)
    if not (nx > 0 and ny > 0):
        raise MeasureUnavailable("a representation is constant over the samples; CKA undefined")
    return float(np.sum(s.cxy * s.cxy) / (nx * ny))


def _hungarian_mean(s: CentredStats, tol: float, max_features: int) -> float:
    dead = dead_units(s, tol)
    ia, ib = np.flatnonzero(~dead.a), np.flatnonzero(~dead.b)
    if ia.size == 0 or ib.size == 0:
        raise MeasureUnavailable("no alive units")
    if max(ia.size, ib.size) > max_features:
        raise MeasureUnavailable(f"{max(ia.size, ib.size)} alive units > match_max_features={max_features}")
    sa, sb = np.sqrt(np.diag(s.cxx)[ia]), np.sqrt(np.diag(s.cyy)[ib])
    r = np.clip(s.cxy[np.ix_(ia, ib)] / np.outer(sa, sb), -1.0, 1.0)
    rows, cols = linear_sum_assignment(r, maximize=True)
    return float(r[rows, cols].mean())


def cross_layer_measures(xs_a: Mapping[str, np.ndarray], xs_b: Mapping[str, np.ndarray],
                         params: LayersSettings | Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Rows ``{"layer_a", "layer_b", <measures>, "note"}`` for every layer of A × every layer of B.

    ``xs_a``/``xs_b``: {layer: column-centred float64 activations (n, d)} of the same n samples;
    ``params``: :class:`~convergent.settings.LayersSettings` (the pipeline's ``cka_layers``; a
    mapping of its keys, or None, gets its defaults for the rest).
    """
    p = LayersSettings.coerce(params).measure_params()
    ks = int(p["kernel_samples"])
    if ks < 3:
        raise ValueError(f"kernel_samples must be >= 3, got {ks}")
    la = {k: _Layer(v, int(p["max_features"]), ks) for k, v in xs_a.items()}
    lb = {k: _Layer(v, int(p["max_features"]), ks) for k, v in xs_b.items()}
    return [{"layer_a": a, "layer_b": b, **pair_values(la[a], lb[b], p)} for a in la for b in lb]
