"""Snakemake entry point of rule `rotation` (see convergent.jobs.rotation_job)."""

from convergent.jobs import rotation_job
from convergent.logs import finish_job, setup_job_logging

sm = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
setup_job_logging(sm.log[0])
w = sm.wildcards
rotation_job(
    run={"dataset": w.dataset, "arch": w.arch, "width": int(w.width), "frozen_k": 0, "seed": int(w.seed)},
    settings=sm.params.settings,
    checkpoint=sm.input.model,
    params=sm.params.rotation,
    data_dir=sm.params.data_dir,
    device=sm.params.device,
    threads=sm.threads,
    out_csv=sm.output[0],
)
finish_job()   # outputs are complete: exit without the interpreter's teardown
