"""Every figure of one experiment (dataset, arch) from the sweep's tidy tables."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from convergent.figures import layers, measures, weights
from convergent.figures.kinds import FIGURE_NAMES, figure_kind
from convergent.figures.style import Palette, save_figure
from convergent.io import read_table
from convergent.logs import get_logger


@dataclass(frozen=True)
class Tables:
    """The tidy tables figures are drawn from; ``None`` means the sweep did not produce that table."""

    measures: pd.DataFrame
    runs: pd.DataFrame | None = None
    lmc: pd.DataFrame | None = None
    lmc_curves: pd.DataFrame | None = None
    rotation: pd.DataFrame | None = None
    cka_layers: pd.DataFrame | None = None

    def of(self, dataset: str, arch: str) -> "Tables":
        """Only the rows of one experiment."""
        def pick(frame: pd.DataFrame | None) -> pd.DataFrame | None:
            if frame is None or frame.empty:
                return frame
            return frame[(frame["dataset"] == dataset) & (frame["arch"] == arch)].reset_index(drop=True)

        return replace(self, **{f.name: pick(getattr(self, f.name)) for f in fields(self)})

    def palette(self) -> Palette:
        return Palette.from_tables(self.runs, self.measures, self.cka_layers)


#: the function drawing each figure kind from an experiment's tables
DRAW: dict[str, Callable[[Tables, Palette], Figure]] = {
    "matched_vs_layer": lambda t, p: measures.matched_vs_layer(t.measures, p),
    "frozen_vs_layer": lambda t, p: measures.frozen_vs_layer(t.measures, p),
    "vs_width": lambda t, p: measures.vs_width(t.measures, p),
    "sorted_corr": lambda t, p: measures.sorted_corr(t.measures, p),
    "subspace_vs_layer": lambda t, p: measures.subspace_vs_layer(t.measures, p),
    "minimal_match_hist": lambda t, p: measures.minimal_match_hist(t.measures, p),
    "alignment_curves": lambda t, p: measures.alignment_curves(t.measures, p),
    "cka_layers": lambda t, p: layers.cka_layers(t.cka_layers, p),
    "layer_identification": lambda t, p: layers.layer_identification(t.cka_layers, p),
    "lmc_vs_width": lambda t, p: weights.lmc_vs_width(t.lmc, t.lmc_curves, t.measures, p),
    "rotation": lambda t, p: weights.rotation(t.rotation, p),
}
assert tuple(DRAW) == FIGURE_NAMES, "every figure kind needs a drawing function, in the same order"


def draw_figure(kind: str, tables: Tables, dataset: str, arch: str) -> Figure:
    """Figure ``kind`` of experiment (dataset, arch), titled."""
    exp = tables.of(dataset, arch)
    fig = DRAW[kind](exp, exp.palette())
    # wrap to the figure's width: a one-panel "not available" figure is narrow
    title = textwrap.fill(f"{dataset} / {arch}: {figure_kind(kind).title}", width=int(fig.get_figwidth() * 10))
    note = chance_note(exp.runs)
    if note:   # drawn, not hidden: the title says which networks did not learn (the layout makes room)
        title += "\n" + textwrap.fill(note, width=int(fig.get_figwidth() * 12))
    fig.suptitle(title)
    return fig


def chance_note(runs: pd.DataFrame | None) -> str:
    """A warning naming the runs flagged ``at_chance`` in runs.csv ("" when there are none)."""
    if runs is None or "at_chance" not in runs:
        return ""
    bad = runs[runs["at_chance"].astype(str).str.lower().eq("true")]
    if bad.empty:
        return ""
    names = ", ".join(f"w{r.width} f{r.frozen_k} s{r.seed}"
                      + (f"o{r.order_seed}" if getattr(r, "order_seed", r.seed) != r.seed else "")
                      for r in bad.itertuples())
    return (f"Warning: {len(bad)} network(s) at chance test accuracy ({names}; runs.csv at_chance): "
            "drawn here, left out of the findings.")


def experiment_figures(tables: Tables, dataset: str, arch: str,
                       outputs: Mapping[str, str | os.PathLike]) -> list[Path]:
    """Draw each figure kind in ``outputs`` (kind → PNG path; the SVG goes beside it)."""
    log = get_logger()
    written = []
    for kind, path in outputs.items():
        log.info("drawing %s/%s %s -> %s", dataset, arch, kind, path)
        png, svg = save_figure(draw_figure(kind, tables, dataset, arch), path)
        written += [png, svg]
    return written


def read_optional(path: str | os.PathLike | None) -> pd.DataFrame | None:
    """A CSV table (checked against its recorded digest), or None when the workflow did not provide it."""
    return read_table(path) if path else None


def read_tables(*, measures: str | os.PathLike, runs: str | os.PathLike | None = None,
                lmc: str | os.PathLike | None = None, lmc_curves: Sequence[str | os.PathLike] = (),
                rotation: str | os.PathLike | None = None, cka_layers: str | os.PathLike | None = None) -> Tables:
    """Read the tables the workflow gives rule ``figures``; the per-pair LMC curves are concatenated."""
    curves = pd.concat([read_table(p) for p in lmc_curves], ignore_index=True) if lmc_curves else None
    return Tables(measures=read_table(measures), runs=read_optional(runs), lmc=read_optional(lmc),
                  lmc_curves=curves, rotation=read_optional(rotation), cka_layers=read_optional(cka_layers))
