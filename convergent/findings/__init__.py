"""Replication summary: does this sweep reproduce the five papers' findings?

For every finding of the five papers (docs/findings.md) that a sweep can test, one **statistic** is computed from the
tidy tables of ``results/summary/`` (runs, measures, lmc, rotation and, when present,
cka_layers), per seed pair (two runs that differ only in seed) or per network. Its 95 %
interval resamples the **seeds**, and the test images where measures.csv has block-jackknife
replicates: the Multi-Bootstrap (:mod:`convergent.stats`). A small, named **verdict rule** with
a stated threshold turns the interval into one of

* ``supported``      the whole interval lies on the side the paper predicts;
* ``not supported``  it does not: *contradicted* (wholly on the other side) or
  *inconclusive* (it contains the threshold, or too few seeds give no interval) — the
  reason says which, and names the seed count;
* ``not testable``   the sweep lacks what the statistic needs; the reason says what.

Every finding is evaluated separately for each (dataset, arch) cell of the sweep. Findings that
compare levels (widths, depths, frozen_k) read calibrated values (chance 0 at every level).

Layout — a newcomer looking for "how is brown_b decided" lands in one short file:

* :mod:`~convergent.findings.core`      tables, :class:`Estimate`, verdict rules, row selection;
* :mod:`~convergent.findings.li`, :mod:`~convergent.findings.kornblith`,
  :mod:`~convergent.findings.wang`, :mod:`~convergent.findings.imani`,
  :mod:`~convergent.findings.brown`     one module per paper's rules;
* :mod:`~convergent.findings.registry`  the list of findings and the table;
* :mod:`~convergent.findings.render`    findings.md and findings.html.

The package never imports Snakemake; ``scripts/findings.py`` is its entry point.
"""

from convergent.findings.brown import (brown_freezing, brown_lmc_width, brown_no_unique_basis,
                                       brown_privileged_basis)
from convergent.findings.core import (BASIS_MEASURE, BROWN_BASIS_RISE_MAX, BROWN_CEILING_GAP_MIN, CALIBRATED,
                                      DENSE_ARCHS, KORNBLITH_CKA_OVER_CCA_MIN, KORNBLITH_GROUNDING_MIN,
                                      LI_BOTTOM_MAX, LI_BOTTOM_RANK, LI_SUBSPACE_GAP_MIN, LI_SUBSPACE_R2_FRACTION,
                                      LI_TOP_MIN, LI_TOP_RANK, LMC_SPLIT, LMC_VARIANT, NETWORK, NOT_SUPPORTED,
                                      NOT_TESTABLE, PAIR, SUBSPACE_R2_MEASURE, SUPPORTED, TABLE_NAMES,
                                      WANG_SMALL_MATCH_MAX, Estimate, Finding, NotTestable, Outcome, Tables,
                                      calibrated_rows, like_for_like, load_summary_dir, load_tables,
                                      measure_rows, missing_levels, pair_means, per_pair_slope, per_unit_slope,
                                      summary_tables, unavailable_notes, verdict_above, verdict_below,
                                      verdict_lmc_not_basis, verdict_reliable_and_unreliable, with_influence)
from convergent.findings.imani import imani_depth, imani_emerges
from convergent.findings.kornblith import kornblith_cka_over_cca, kornblith_grounding, kornblith_width
from convergent.findings.li import li_reliable_units, li_shared_subspace
from convergent.findings.registry import (COLUMNS, FINDINGS, NOT_OPERATIONALISED, RUN_KEYS, cells, evaluate,
                                          exclude_at_chance, findings_table, seeds_needed_of)
from convergent.findings.render import INTRO, to_html, to_markdown
from convergent.findings.wang import wang_depth, wang_small_matches

__all__ = [name for name in dir() if not name.startswith("_")]
