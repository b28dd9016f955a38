"""Figures: one per question the papers ask, per experiment (dataset, arch).

Modules:

* :mod:`~convergent.figures.kinds` -- the fixed list of figure kinds (no plotting imports;
  the workflow reads it to name the outputs of rule ``figures``).
* :mod:`~convergent.figures.style` -- colours per width / frozen_k / layer, control line styles, saving.
* :mod:`~convergent.figures.measures`, :mod:`~convergent.figures.layers`,
  :mod:`~convergent.figures.weights` -- one function per figure, each returning a Figure.
* :mod:`~convergent.figures.experiment` -- draw and save every figure of one experiment.

The analyses the figures draw (e.g. Kornblith et al.'s layer identification,
:mod:`convergent.findings.layers`) live with the findings. Plotting modules use matplotlib's
Agg backend; nothing here imports Snakemake.
"""

from convergent.figures.kinds import FIGURE_KINDS, FIGURE_NAMES, FigureKind, figure_kind

__all__ = ["FIGURE_KINDS", "FIGURE_NAMES", "FigureKind", "figure_kind"]
