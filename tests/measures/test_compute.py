import numpy as np
import pandas as pd
import pytest

from convergent.measures import COLUMNS, compute_measures
from convergent.moments import Moments


def _views(rng):
    X = rng.standard_normal((300, 6))
    Y = X @ rng.standard_normal((6, 7))
    Y[:, 2] = 0.0
    m = Moments.from_arrays(X, Y, rng.integers(0, 3, 300), minibatch_size=32)
    return {"positions": m, "flatten": m}


def test_columns_and_rows(rng):
    df = compute_measures(_views(rng), {})
    assert list(df.columns) == COLUMNS
    got = set(df["measure"])
    assert {"cka_linear", "hungarian_mean_corr", "dead_units_a", "dead_units_b"} <= got
    assert df.loc[df.measure == "dead_units_b", "value"].tolist() == [1.0, 1.0]
    assert df["value"].notna().all() and (df["note"] == "").all()
    plain = df[df.parameter == ""]
    assert plain["parameter_value"].isna().all()


def test_self_pair_ceiling(rng):
    X = rng.standard_normal((300, 6))
    df = compute_measures(Moments.from_arrays(X, X), {})
    v = df.set_index("measure")["value"]
    for name in ("cka_linear", "cka_linear_debiased", "hungarian_mean_corr", "semi_mean_corr",
                 "semi_equals_hungarian", "hungarian_mean_corr_cv"):
        assert v[name] == pytest.approx(1.0, abs=1e-12), name


def test_unavailable_gives_note_not_silent_nan(rng):
    X = rng.standard_normal((50, 4))
    df = compute_measures({"positions": Moments.from_arrays(X, np.zeros((50, 3))),
                           "flatten": Moments.from_arrays(X, np.zeros((50, 3)))}, {})
    bad = df[df.value.isna()]
    assert len(bad) and bad["note"].str.startswith("unavailable").all()


def test_missing_view_and_bad_params(rng):
    v = _views(rng)
    del v["flatten"]
    df = compute_measures(v, {"enabled": ["cka"]})
    assert df["note"].str.contains("view 'flatten' not in").any()
    with pytest.raises(ValueError, match="unknown measures parameter"):
        compute_measures(v, {"nonsense": 1})
    with pytest.raises(ValueError, match="unknown measure families"):
        compute_measures(v, {"enabled": ["nope"]})
