"""The fixed set of figures drawn per experiment (dataset, arch), without plotting imports.

The workflow reads this list to name the outputs of rule ``figures`` and their report
captions (``report/<kind>.rst``); the plotting code reads it to dispatch. A figure whose
data the sweep lacks is still written, with a "not available in this sweep" panel, so the
outputs of a rule never depend on the data.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FigureKind:
    """One figure: file-name suffix, title and the report category it is filed under."""

    name: str
    title: str
    category: str


_UNITS = "Units and bases (Li et al. 2016; Brown et al. 2023)"
_SUBSPACES = "Subspaces (Wang et al. 2018)"
_CKA = "Layer correspondence (Kornblith et al. 2019)"
_ALIGNMENT = "Target alignment (Imani et al. 2022)"
_WEIGHTS = "Weight space (Brown et al. 2023; linear mode connectivity)"

#: every figure kind in drawing order; files are ``results/figures/{dataset}_{arch}_{name}.{png,svg}``
FIGURE_KINDS: tuple[FigureKind, ...] = (
    FigureKind("matched_vs_layer", "matched correlation and CKA vs layer, one line per width", _UNITS),
    FigureKind("frozen_vs_layer", "matched correlation and CKA vs layer, one line per frozen_k", _UNITS),
    FigureKind("vs_width", "matched correlation and CKA vs width, one line per layer", _UNITS),
    FigureKind("sorted_corr", "sorted matched correlations: reliable vs unreliable units", _UNITS),
    FigureKind("subspace_vs_layer", "subspace-match similarity vs layer for each ε", _SUBSPACES),
    FigureKind("minimal_match_hist", "minimal-match sizes", _SUBSPACES),
    FigureKind("alignment_curves", "target alignment A(k) of the top-k directions", _ALIGNMENT),
    FigureKind("cka_layers", "linear CKA of every layer pair between two seeds", _CKA),
    FigureKind("layer_identification", "layer identification per measure (Kornblith et al. Table 2)", _CKA),
    FigureKind("lmc_vs_width", "LMC barriers and basis correlation vs width", _WEIGHTS),
    FigureKind("rotation", "rotation test: accuracy after retraining vs rotation strength", _WEIGHTS),
)

FIGURE_NAMES: tuple[str, ...] = tuple(k.name for k in FIGURE_KINDS)


def figure_kind(name: str) -> FigureKind:
    """The :class:`FigureKind` called ``name``."""
    for kind in FIGURE_KINDS:
        if kind.name == name:
            return kind
    raise KeyError(f"unknown figure kind {name!r}; known: {', '.join(FIGURE_NAMES)}")
