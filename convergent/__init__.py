"""convergent: do networks trained from different seeds learn the same representation?

All logic lives in this package; it knows nothing about Snakemake. The workflow
(``Snakefile``, ``rules/``) calls thin entry points in ``scripts/``.
"""

__version__ = "0.1.0"
