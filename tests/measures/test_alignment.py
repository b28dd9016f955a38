import numpy as np
import pytest
from scipy.stats import ortho_group

import naive
from convergent.measures import alignment_curve
from convergent.moments import moments_from_arrays


def _feat(rng, n=200, d=6, c=3):
    t = rng.integers(0, c, n)
    Phi = np.maximum(rng.standard_normal((n, d)) + 1.5 * np.eye(c, d)[t], 0)
    return Phi, t


def test_alignment_vs_explicit_svd(rng):
    Phi, t = _feat(rng)
    ref, S = naive.alignment_curve(Phi, t, 3)
    al = alignment_curve(Phi, t)
    np.testing.assert_allclose(al.curve, ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(al.singular_values, S, rtol=1e-9)
    assert al.top(3) == pytest.approx(ref[2], rel=1e-9)
    assert al.k_for(0.5) == int(np.argmax(ref >= 0.5)) + 1


def test_alignment_from_moments_both_sides(rng):
    Phi, t = _feat(rng)
    Psi, _ = _feat(rng)
    m = moments_from_arrays(Phi, Psi, t, chunk_rows=17)
    np.testing.assert_allclose(alignment_curve(m, "a").curve, naive.alignment_curve(Phi, t, 3)[0], rtol=1e-9)
    np.testing.assert_allclose(alignment_curve(m, "b").curve, naive.alignment_curve(Psi, t, 3)[0], rtol=1e-9)


def test_alignment_invariances(rng):
    Phi, t = _feat(rng)
    base = alignment_curve(Phi, t).curve
    Q = ortho_group.rvs(6, random_state=2)
    np.testing.assert_allclose(alignment_curve(Phi @ Q, t).curve, base, rtol=1e-9)      # rotation: invariant
    assert np.abs(alignment_curve(Phi + 5, t).curve - base).max() > 1e-3                # translation: not
    assert np.abs(alignment_curve(Phi * 10, t).curve - base).max() > 1e-3               # scaling: not


def test_rank_deficient_features(rng):
    Phi, t = _feat(rng)
    Phi = np.hstack([Phi, Phi[:, :2]])          # duplicated columns: rank 7 of 9 columns (+1 constant)
    al = alignment_curve(Phi, t)
    assert al.curve.size == 7
    assert np.all(np.diff(al.curve) >= -1e-12) and al.curve[-1] <= 1 + 1e-12
