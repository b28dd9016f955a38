# convergent: do networks trained from different seeds learn the same representation?
#
# Stages (one rules/*.smk file each):
#   train    -> results/runs/.../model.pt, init.pt, train_log.csv, metrics.json
#   extract  -> results/runs/.../{trained,init}.zarr   (one Zarr array per layer)
#   compare  -> results/pairs/.../{layer}.moments.npz -> {layer}.measures.csv
#   aggregate-> results/summary/*.csv, results/figures/*.png
#   weights  -> results/lmc/... (per cross pair), results/rotation/... (per reference run)
# All logic lives in the importable package convergent/; scripts/ are thin entry points.

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "schemas/config.schema.yaml")


include: "rules/common.smk"
include: "rules/train.smk"
include: "rules/extract.smk"
include: "rules/compare.smk"
include: "rules/aggregate.smk"
include: "rules/weights.smk"


rule all:
    default_target: True
    input:
        "results/summary/runs.csv",
        "results/summary/measures.csv",
        figure_paths(),
        weight_space_targets(),
