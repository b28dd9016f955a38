# convergent: do networks trained from different seeds learn the same representation?
#
# Stages (one rules/*.smk file each):
#   train    -> results/runs/.../model.pt, init.pt, train_log.csv, metrics.json
#   extract  -> results/runs/.../{trained,init}.zarr   (one Zarr array per layer)
#   compare  -> results/pairs/.../moments/{layer}.npz -> measures.csv   (per pair, all layers)
#   layers   -> results/layers/...  (cross-layer CKA of one seed pair per cell)
#   aggregate-> results/summary/*.csv, results/figures/{dataset}_{arch}_{kind}.{png,svg}
#   weights  -> results/lmc/... (per cross pair), results/rotation/... (per reference run)
#   report   -> results/summary/findings.{md,csv,html} (replication summary), runtime.{csv,md,html}
# All logic lives in the importable package convergent/; scripts/ are thin entry points.

import os

from snakemake.utils import min_version

from convergent.config import ConfigError, load_config_file, load_sweep

min_version("9.0")

# The embedded default is read here, so a YAML error in it names the line; a file given with
# --configfile is parsed by Snakemake before this line runs (`make` checks it first instead:
# python -m convergent.config FILE).
try:
    if not workflow.overwrite_configfiles and os.path.exists("config.yaml"):
        load_config_file("config.yaml")
except ConfigError as err:
    raise WorkflowError(str(err)) from None


configfile: "config.yaml"


# The config's one validation path (convergent.config.load_sweep): the schema with readable
# errors (key path, value, allowed keys/values; numbers written 1e6 accepted), its defaults
# filled in, then the planned sweep with every section's settings (convergent.settings).
try:
    SWEEP = load_sweep(config)
except ConfigError as err:
    text = str(err)   # a schema problem's paragraph already starts with "invalid config"
    raise WorkflowError(text if text.startswith("invalid config") else f"invalid config: {text}") from None


report: "report/workflow.rst"  # the report's front page; make report builds results/report.html


include: "rules/common.smk"
include: "rules/train.smk"
include: "rules/extract.smk"
include: "rules/compare.smk"
include: "rules/layers.smk"
include: "rules/aggregate.smk"
include: "rules/weights.smk"
include: "rules/report.smk"  # keep last: its rules read what rule `all` asks for


rule all:
    default_target: True
    input:
        "results/summary/runs.csv",
        "results/summary/measures.csv",
        figure_paths(),
        cka_layers_targets(),
        weight_space_targets(),
        SUMMARY_OUTPUTS,  # findings.{md,csv,html}: the replication summary
        RUNTIME_OUTPUTS,  # runtime.{csv,md,html}: built last, after every job that writes a benchmark
