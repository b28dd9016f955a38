"""Layer identification: Kornblith et al.'s grounding test on a cross-layer similarity matrix,
and the identification table per measure (``layer_identification.csv``). An analysis, read by
the findings (:mod:`convergent.findings.kornblith`) and drawn by the figures
(:mod:`convergent.figures.layers`).

For each layer of network A, the most similar layer of network B should be the same layer;
linear CKA passed this test 99.3 % of the time across ten CIFAR-10 CNNs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

PAIR_KEYS = ["dataset", "arch", "width", "frozen_k", "seed_a", "seed_b"]


def grounded_layers(matrix: np.ndarray) -> np.ndarray:
    """Boolean per row i of a square similarity matrix (rows: layers of A, columns: layers of B):
    is layer i of B among the most similar layers of B to layer i of A?

    Ties count as grounded when the matching layer is one of the maximisers (frozen layers
    copied into both networks are identical, so exact ties of 1.0 do occur). NaN entries are
    ignored; a row that is all NaN is not grounded.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"need a non-empty square matrix, got shape {m.shape}")
    out = np.zeros(m.shape[0], dtype=bool)
    for i, row in enumerate(m):
        if np.isfinite(row).any() and np.isfinite(row[i]):
            out[i] = row[i] >= np.nanmax(row)
    return out


def grounding_fraction(matrix: np.ndarray) -> float:
    """Fraction of layers of A whose most similar layer of B is the same layer (see :func:`grounded_layers`)."""
    return float(grounded_layers(matrix).mean())


def layer_matrix(pair: pd.DataFrame, value: str = "cka_linear") -> pd.DataFrame:
    """One pair's tidy cross-layer rows as a matrix: index layer_a, columns layer_b, in depth order."""
    order_a = pair.drop_duplicates("layer_a").sort_values("layer_index_a")["layer_a"].tolist()
    order_b = pair.drop_duplicates("layer_b").sort_values("layer_index_b")["layer_b"].tolist()
    return pair.pivot(index="layer_a", columns="layer_b", values=value).loc[order_a, order_b]


def grounding_table(cka_layers: pd.DataFrame, value: str = "cka_linear") -> pd.DataFrame:
    """Grounding per pair of ``results/summary/cka_layers.csv``.

    Columns: the pair keys, ``n_layers``, ``n_grounded`` and ``grounding_fraction``. Pool over
    pairs as ``n_grounded.sum() / n_layers.sum()`` (Kornblith et al. pool over layers and pairs).
    """
    keys = [k for k in PAIR_KEYS if k in cka_layers.columns]
    rows = []
    for key, pair in cka_layers.groupby(keys, sort=True):
        g = grounded_layers(layer_matrix(pair, value).to_numpy())
        rows.append({**dict(zip(keys, key)), "n_layers": int(g.size), "n_grounded": int(g.sum()),
                     "grounding_fraction": float(g.mean())})
    return pd.DataFrame(rows, columns=[*keys, "n_layers", "n_grounded", "grounding_fraction"])


# --------------------------------------------------------------------------- layer identification per measure

#: measures of ``cka_layers.csv`` scored by :func:`identification_table`: column -> (kind, label).
#: ``distance``: smaller is more similar (negated before the arg-max); ``linreg_r2`` is the
#: asymmetric R² symmetrised as S + Sᵀ (R² of A's layer from B's plus B's from A's).
IDENTIFICATION_MEASURES: dict[str, tuple[str, str]] = {
    "cka_linear": ("similarity", "linear CKA"),
    "cka_rbf_0.2": ("similarity", "RBF CKA σ = 0.2 × median"),
    "cka_rbf_0.4": ("similarity", "RBF CKA σ = 0.4 × median"),
    "cka_rbf_0.8": ("similarity", "RBF CKA σ = 0.8 × median"),
    "hungarian_mean_corr": ("similarity", "matched correlation (one-to-one)"),
    "cca_mean": ("similarity", "CCA ρ̄"),
    "cca_r2": ("similarity", "CCA R²_CCA"),
    "svcca": ("similarity", "SVCCA ρ̄"),
    "pwcca": ("similarity", "PWCCA"),
    "procrustes_angle": ("distance", "Procrustes angle"),
    "procrustes_distance": ("distance", "Procrustes distance"),
    "linreg_r2": ("symmetrised", "linear regression R² (S + Sᵀ)"),
    "linreg_r2_a_from_b": ("similarity", "linear regression R², A from B"),
    "linreg_r2_b_from_a": ("similarity", "linear regression R², B from A"),
    "rsa_sqeuclid_pearson": ("similarity", "RSA, squared Euclidean, Pearson"),
    "rsa_sqeuclid_cosine": ("similarity", "RSA, squared Euclidean, cosine"),
}

#: the CCA family of the finding "CKA identifies layers better than the CCA family"
CCA_FAMILY = ("cca_mean", "cca_r2", "svcca", "pwcca")

#: Kornblith et al. 2019, Table 2 (10 CIFAR-10 Tiny-10 CNNs, layers 1–9, training set), as fractions.
#: The paper's numbers beside ours, not targets. SVCCA: the paper's 9.9 % is SVCCA with ρ̄ (15.1 %
#: with R²_CCA, not computed here); the paper has no Procrustes, RSA or matched-correlation row.
PAPER_IDENTIFICATION: dict[str, float] = {
    "cca_mean": 0.014, "cca_r2": 0.106, "svcca": 0.099, "pwcca": 0.111, "linreg_r2": 0.454,
    "cka_linear": 0.993, "cka_rbf_0.2": 0.806, "cka_rbf_0.4": 0.991, "cka_rbf_0.8": 0.993,
}

IDENTIFICATION_COLUMNS = [*PAIR_KEYS, "measure", "label", "kind", "n_layers", "n_comparable", "n_identifications", "n_defined",
                          "n_identified", "fraction", "paper_fraction", "note"]


def identification_measures(columns: Sequence[str]) -> dict[str, tuple[str, str]]:
    """:data:`IDENTIFICATION_MEASURES` with the RBF bandwidths actually present in ``columns``
    (``cka_rbf_<t>``, configurable) in place of the default three, if any is present."""
    rbf = sorted((c for c in columns if str(c).startswith("cka_rbf_")), key=lambda c: float(c[8:]))
    out: dict[str, tuple[str, str]] = {}
    for name, spec in IDENTIFICATION_MEASURES.items():
        if name.startswith("cka_rbf_") and rbf:
            if name == "cka_rbf_0.2":   # insert the present ones where the defaults stand
                out.update({c: ("similarity", f"RBF CKA σ = {c[8:]} × median") for c in rbf})
            continue
        out[name] = spec
    return out


def identification_matrix(pair: pd.DataFrame, measure: str) -> pd.DataFrame:
    """The (layers of A × layers of B) matrix of one pair in which larger means more similar:
    distances negated, ``linreg_r2`` = R²(A_i from B_j) + R²(B_j from A_i)."""
    kind = identification_measures(pair.columns).get(measure, ("similarity", ""))[0]
    if kind == "symmetrised":
        return layer_matrix(pair, "linreg_r2_a_from_b") + layer_matrix(pair, "linreg_r2_b_from_a")
    m = layer_matrix(pair, measure)
    return -m if kind == "distance" else m


def comparable_layers(matrix: np.ndarray) -> np.ndarray:
    """Layers i whose own entry M[i, i] is finite: the candidate set of an identification. A measure
    undefined for a layer with itself (CCA on a layer with more units than half the samples) cannot
    be asked which layer is most similar to it; for CCA, layers comparable with themselves are
    comparable with each other (2d_i, 2d_j ≤ n − 1 ⇒ d_i + d_j ≤ n − 1)."""
    m = np.asarray(matrix, dtype=np.float64)
    return np.isfinite(np.diag(m))


def identified(matrix: np.ndarray, keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(defined, identified) booleans over the 2k identifications among the ``keep`` layers (default
    :func:`comparable_layers`) of an L × L matrix: each kept layer of A against every kept layer of B
    (rows), then each kept layer of B against every kept layer of A (columns).

    An identification is *defined* when its whole row (column) over the kept layers is finite:
    the arg-max over a row with a missing entry is not the same question. Ties count as
    identified (:func:`grounded_layers`)."""
    m = np.asarray(matrix, dtype=np.float64)
    keep = comparable_layers(m) if keep is None else np.asarray(keep, dtype=bool)
    if not keep.any():
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=bool)
    m = m[np.ix_(keep, keep)]
    defined = np.concatenate([np.isfinite(m).all(axis=1), np.isfinite(m).all(axis=0)])
    hit = np.concatenate([grounded_layers(m), grounded_layers(m.T)])
    return defined, hit & defined


def identification_table(cka_layers: pd.DataFrame) -> pd.DataFrame:
    """``results/summary/layer_identification.csv``: one row per measure × cell (pair keys).

    ``n_layers``: layers compared; ``n_comparable``: those defined with themselves
    (:func:`comparable_layers`), the candidates; ``fraction`` = n_identified / n_defined over
    both directions (2 × comparable layers); NaN with the reason in ``note`` when no
    identification is defined or the column is absent; ``note`` names excluded layers.
    ``paper_fraction``: Kornblith et al.'s Table 2 (:data:`PAPER_IDENTIFICATION`), else NaN.
    """
    keys = [k for k in PAIR_KEYS if k in cka_layers.columns]
    rows = []
    for key, pair in cka_layers.groupby(keys, sort=True):
        coords = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        for measure, (kind, label) in identification_measures(cka_layers.columns).items():
            need = ["linreg_r2_a_from_b", "linreg_r2_b_from_a"] if kind == "symmetrised" else [measure]
            base = {**coords, "measure": measure, "label": label, "kind": kind,
                    "paper_fraction": PAPER_IDENTIFICATION.get(measure, np.nan)}
            if not set(need) <= set(pair.columns):
                rows.append({**base, "n_layers": int(pair["layer_a"].nunique()), "n_comparable": 0,
                             "n_identifications": 0, "n_defined": 0, "n_identified": 0,
                             "fraction": np.nan, "note": f"unavailable: no column {need} in the cross-layer table"})
                continue
            matrix = identification_matrix(pair, measure)
            keep = comparable_layers(matrix.to_numpy())
            defined, hit = identified(matrix.to_numpy(), keep)
            note = ""
            if (~keep).any() and keep.any():
                note = (f"{int((~keep).sum())} of {keep.size} layers not comparable (undefined with themselves): "
                        + ", ".join(str(x) for x in matrix.index[~keep]) + "; ")
            if keep.sum() == 1:
                defined[:] = False       # one candidate is always "identified"
                note += "only one comparable layer: nothing to identify; "
            if not defined.any():
                why = ""
                if "note" in pair.columns:
                    reasons = pair["note"].dropna().astype(str)
                    reasons = reasons[reasons.str.contains(need[0], regex=False)]
                    why = f" ({reasons.iloc[0][:300]})" if len(reasons) else ""
                note = f"unavailable: {measure} is undefined in every layer pair{why}"
            elif not defined.all():
                note += f"{int((~defined).sum())} of {defined.size} identifications undefined (a layer pair is NaN)"
            rows.append({**base, "n_layers": int(keep.size), "n_comparable": int(keep.sum()),
                         "n_identifications": int(defined.size), "n_defined": int(defined.sum()),
                         "n_identified": int(hit.sum()),
                         "fraction": float(hit.sum() / defined.sum()) if defined.any() else np.nan, "note": note})
    return pd.DataFrame(rows, columns=[*keys, *IDENTIFICATION_COLUMNS[len(PAIR_KEYS):]])
