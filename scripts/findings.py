"""Snakemake entry point of rule `findings`: the replication summary (md, csv, html)."""

from convergent.findings import TABLE_NAMES, findings_table, load_tables, to_html, to_markdown
from convergent.io import atomic_write_bytes, write_csv
from convergent.logs import finish_job, get_logger, lap, setup_job_logging

sm = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
setup_job_logging(sm.log[0])
tables = load_tables({name: sm.input.get(name) for name in TABLE_NAMES})
lap("data")
table = findings_table(tables)
lap("compute")
write_csv(sm.output.csv, table)
atomic_write_bytes(sm.output.md, to_markdown(table, tables).encode())
atomic_write_bytes(sm.output.html, to_html(table, tables).encode())
lap("write")
for _, row in table.iterrows():
    get_logger().info("%s %s/%s: %s (%s)", row["finding"], row["dataset"], row["arch"], row["verdict"], row["reason"])
finish_job()   # outputs are complete: exit without the interpreter's teardown
