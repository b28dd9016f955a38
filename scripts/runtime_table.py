"""Snakemake entry point of rule `runtime_table`: wall time and memory per rule from the benchmark
files, and where each job's time went from the phases its log ends with."""

from convergent.io import atomic_write_bytes, write_csv
from convergent.logs import finish_job, get_logger, lap, setup_job_logging
from convergent.runtime import runtime_table, to_html, to_markdown

sm = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
setup_job_logging(sm.log[0])
table = runtime_table(sm.params.bench_dir, dict(sm.params.patterns), dict(sm.params.log_patterns))
lap("compute")
write_csv(sm.output.csv, table)
atomic_write_bytes(sm.output.md, to_markdown(table).encode())
atomic_write_bytes(sm.output.html, to_html(table).encode())
lap("write")
get_logger().info("%d benchmark files of %d rules, %.1f s in total, %.1f s of it compute (%d jobs with phases)",
                  int(table["jobs"].sum()), len(table), float(table["total_s"].sum()),
                  float(table["compute_total_s"].sum()), int(table["phase_jobs"].sum()))
finish_job()   # outputs are complete: exit without the interpreter's teardown
