"""Centred kernel alignment with linear kernels, from moments (Kornblith et al. 2019).

Similarity in [0, 1] for the biased estimator (1 = identical up to rotation and
isotropic scaling); the debiased estimator (Song et al. unbiased HSIC) is
approximately in [0, 1] but can be negative and is reported as is, never clamped.
Invariant to orthogonal transforms, isotropic scaling and translation of either
representation; not invariant to arbitrary invertible linear maps.
"""

from __future__ import annotations

import numpy as np

from convergent.measures._common import MeasureUnavailable, as_moments
from convergent.moments import DUAL, GramMoments, Moments
from convergent.moments.dual import unbiased_hsic_gram


def hsic_unbiased_terms(m: Moments) -> tuple[float, float, float]:
    """Unbiased linear-kernel HSIC (Song et al.) of (X,Y), (X,X), (Y,Y) from moments.

    With K = XcXcᵀ, L = YcYcᵀ (rows centred at the mean, which leaves the
    estimator unchanged), a_i = ‖x_i-μx‖², b_i = ‖y_i-μy‖²:
    tr(K̃L̃) = ‖XcᵀYc‖²_F - Σa_i b_i, 1ᵀK̃1 = -Σa_i, 1ᵀK̃L̃1 = Σa_i b_i, so
    HSIC₁ = [‖XcᵀYc‖² - Σab + Σa Σb /((n-1)(n-2)) - 2 Σab/(n-2)] / (n(n-3)).
    """
    n = m.n
    if n < 4:
        raise MeasureUnavailable(f"unbiased HSIC needs n >= 4 rows, got {n}")
    t = m.centred_debias_terms()
    c1, c2 = (n - 1) * (n - 2), n - 2

    def h(frob2: float, sab: float, ta: float, tb: float) -> float:
        return (frob2 - sab + ta * tb / c1 - 2.0 * sab / c2) / (n * (n - 3))

    cxx, cyy, cxy = m.cxx, m.cyy, m.cxy
    return (h(float(np.sum(cxy * cxy)), t["sum_ab"], t["tr_x"], t["tr_y"]),
            h(float(np.sum(cxx * cxx)), t["sum_aa"], t["tr_x"], t["tr_x"]),
            h(float(np.sum(cyy * cyy)), t["sum_bb"], t["tr_y"], t["tr_y"]))


def hsic_terms_gram(m: GramMoments) -> tuple[float, float, float]:
    """Unbiased linear HSIC of (X,Y), (X,X), (Y,Y) from the dual form's n × n Grams."""
    K, L = m.gram("a"), m.gram("b")
    return unbiased_hsic_gram(K, L), unbiased_hsic_gram(K, K), unbiased_hsic_gram(L, L)


def _debiased_ratio(hxy: float, hxx: float, hyy: float) -> float:
    """HSIC₁(X,Y) / sqrt(HSIC₁(X,X) HSIC₁(Y,Y)) from the unbiased HSIC terms of either form."""
    if not (hxx > 0 and hyy > 0):
        raise MeasureUnavailable(f"unbiased self-HSIC not positive (X: {hxx:.3g}, Y: {hyy:.3g}); "
                                 "debiased CKA undefined (constant representation or n too small)")
    return float(hxy / np.sqrt(hxx * hyy))


def linear_cka(X: np.ndarray | Moments | GramMoments, Y: np.ndarray | None = None, debiased: bool = False) -> float:
    """Linear CKA of X (n, d1) and Y (n, d2), or of moments of either form.

    Biased: ‖XcᵀYc‖²_F / (‖XcᵀXc‖_F ‖YcᵀYc‖_F) = ⟨Kc, Lc⟩ / (‖Kc‖_F ‖Lc‖_F) with the centred
    Grams Kc = XcXcᵀ (the dual form's), in [0, 1].
    Debiased: HSIC₁(X,Y) / sqrt(HSIC₁(X,X) HSIC₁(Y,Y)) — may be negative.
    Raises :class:`MeasureUnavailable` if either representation is constant.
    """
    m = as_moments(X, Y)
    if m.form == DUAL:
        if debiased:
            return _debiased_ratio(*hsic_terms_gram(m))
        K, L = m.gram("a"), m.gram("b")
        nx, ny = np.linalg.norm(K), np.linalg.norm(L)
        if not (nx > 0 and ny > 0):
            raise MeasureUnavailable("a representation is constant over the samples; CKA undefined")
        return float(np.vdot(K, L) / (nx * ny))
    if debiased:
        return _debiased_ratio(*hsic_unbiased_terms(m))
    cxx, cyy, cxy = m.cxx, m.cyy, m.cxy
    nx, ny = np.linalg.norm(cxx), np.linalg.norm(cyy)
    if not (nx > 0 and ny > 0):
        raise MeasureUnavailable("a representation is constant over the samples; CKA undefined")
    return float(np.sum(cxy * cxy) / (nx * ny))


def minibatch_cka(m: Moments | GramMoments) -> float:
    """Minibatch linear CKA (Nguyen et al. 2021) from the streamed minibatch sums.

    mean_b HSIC₁(X_b,Y_b) / sqrt(mean_b HSIC₁(X_b,X_b) · mean_b HSIC₁(Y_b,Y_b)),
    minibatches of consecutive rows (``meta['minibatch_size']``); may be negative.
    """
    if m.mb_count == 0 and m.meta.get("minibatch_unavailable"):
        raise MeasureUnavailable(m.meta["minibatch_unavailable"])
    if m.mb_count == 0:
        raise MeasureUnavailable("no complete minibatch was accumulated (minibatch_size 0 or > rows per fold)")
    if not (m.mb_xx > 0 and m.mb_yy > 0):
        raise MeasureUnavailable("minibatch self-HSIC not positive; minibatch CKA undefined")
    return float(m.mb_xy / np.sqrt(m.mb_xx * m.mb_yy))
