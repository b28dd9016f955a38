"""Representation–target alignment (Imani, Hu, White 2022).

Φ (n, d) post-activation features; append a constant-1 feature, scale every row
to unit length (Φ̃), thin SVD Φ̃ = U S Vᵀ. With one-hot targets T (n, c):
A(k) = Σ_{i≤k} ‖u_iᵀ T‖² / ‖T‖²_F, directions ordered by decreasing singular value.
From moments: Φ̃ᵀΦ̃ = V S² Vᵀ and u_iᵀT = v_iᵀ(Φ̃ᵀT)/s_i, so only the row-normalised
streaming sums ``ax``/``axt`` (net A) or ``ay``/``ayt`` (net B) are needed.

A(k) is a fraction in [0, 1], non-decreasing in k. Directions with
s_i² ≤ ``rank_tol`` × s_1² are dropped (their u_i are not determined by the
moments to useful precision); the curve then has fewer than d+1 points.
Invariant to rotations of Φ (row norms of [Φ, 1] and the constant column are
unchanged, so U is too); not invariant to translation or scaling of Φ (both
change the row normalisation relative to the constant feature).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convergent.measures._common import MeasureUnavailable, is_moments
from convergent.moments import DUAL, GramMoments, Moments


@dataclass(frozen=True)
class Alignment:
    """``curve[k-1]`` = A(k) for k = 1..r; ``singular_values`` (r,) decreasing; ``n_classes`` = c."""

    curve: np.ndarray
    singular_values: np.ndarray
    n_classes: int

    def top(self, k: int) -> float:
        """A(k), with A(k) = A(r) for k beyond the numerical rank r."""
        return float(self.curve[min(k, self.curve.size) - 1])

    def k_for(self, fraction: float) -> int | None:
        """Smallest k with A(k) ≥ fraction, or None if never reached."""
        hit = np.flatnonzero(self.curve >= fraction - 1e-12)
        return int(hit[0]) + 1 if hit.size else None


def alignment_from_sums(phi_gram: np.ndarray, phi_t: np.ndarray, n: int, rank_tol: float = 1e-10) -> Alignment:
    """A(k) from Φ̃ᵀΦ̃ ((d+1), (d+1)), Φ̃ᵀT ((d+1), c) and n = ‖T‖²_F (one-hot)."""
    w, V = np.linalg.eigh(phi_gram)
    order = np.argsort(w)[::-1]
    w, V = w[order], V[:, order]
    keep = w > rank_tol * w[0]
    w, V = w[keep], V[:, keep]
    proj = ((V.T @ phi_t) ** 2).sum(axis=1) / w
    return Alignment(np.cumsum(proj) / n, np.sqrt(w), phi_t.shape[1])


def alignment_from_gram(phi_gram: np.ndarray, labels: np.ndarray, n_classes: int, rank_tol: float = 1e-10
                        ) -> Alignment:
    """A(k) from the Gram Φ̃Φ̃ᵀ (n, n) of the row-normalised [Φ, 1] and integer labels (n,).

    Φ̃Φ̃ᵀ = U S² Uᵀ: the eigenvectors are the left singular vectors u_i themselves, so
    A(k) = Σ_{i≤k} ‖u_iᵀT‖² / n. Same nonzero spectrum and u_i as the primal Φ̃ᵀΦ̃, hence
    the same curve. ``scipy.linalg.eigh`` (MRRR, ``overwrite_a``) keeps the memory at the
    input and the eigenvectors (two n × n arrays).
    """
    import scipy.linalg

    n = phi_gram.shape[0]
    w, U = scipy.linalg.eigh(phi_gram, overwrite_a=True, check_finite=False, driver="evr")
    w, U = w[::-1], U[:, ::-1]
    r = int(np.count_nonzero(w > rank_tol * w[0]))     # a prefix: w is decreasing
    T = np.zeros((n, int(n_classes)))
    T[np.arange(n), labels] = 1.0
    proj = ((T.T @ U[:, :r]) ** 2).sum(axis=0)
    return Alignment(np.cumsum(proj) / n, np.sqrt(w[:r]), int(n_classes))


def alignment_curve(Phi: np.ndarray | Moments | GramMoments, labels: np.ndarray | str | None = None, n_classes: int | None = None,
                    rank_tol: float = 1e-10) -> Alignment:
    """Alignment curve of features Φ (n, d) with integer ``labels`` (n,), or of one net in Moments.

    With moments (either form) pass ``labels="a"`` (net A, the X side) or ``"b"``.
    """
    if is_moments(Phi) and Phi.form == DUAL:
        side = labels or "a"
        return alignment_from_gram(Phi.phi_gram(side), Phi.labels, Phi.n_classes, rank_tol)
    if is_moments(Phi):
        side = labels or "a"
        g, t = (Phi.ax, Phi.axt) if side == "a" else (Phi.ay, Phi.ayt)
        if g is None:
            raise MeasureUnavailable("alignment terms were not accumulated (moments pass alignment=False)")
        return alignment_from_sums(g, t, Phi.n, rank_tol)
    Phi = np.asarray(Phi, dtype=np.float64)
    labels = np.asarray(labels)
    if labels.shape != (Phi.shape[0],):
        raise ValueError(f"labels must have shape ({Phi.shape[0]},)")
    c = int(labels.max()) + 1 if n_classes is None else int(n_classes)
    P = np.hstack([Phi, np.ones((Phi.shape[0], 1))])
    P /= np.linalg.norm(P, axis=1, keepdims=True)
    T = np.zeros((Phi.shape[0], c))
    T[np.arange(Phi.shape[0]), labels] = 1.0
    return alignment_from_sums(P.T @ P, P.T @ T, Phi.shape[0], rank_tol)
