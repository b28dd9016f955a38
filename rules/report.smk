# report: the replication summary (findings) and the runtime table, both shown in the
# Snakemake HTML report (`make report`, i.e. snakemake --report results/report.html).
#
# Included last from the Snakefile: both rules read what rule `all` asks for, so they
# follow whatever the other rule files add to the sweep without being edited.

from convergent.findings import summary_tables

SUMMARY_OUTPUTS = ["results/summary/findings.md", "results/summary/findings.csv",
                   "results/summary/findings.html"]
RUNTIME_OUTPUTS = ["results/summary/runtime.csv", "results/summary/runtime.md",
                   "results/summary/runtime.html"]


rule findings:
    input:
        # the tidy tables of results/summary/ that rule `all` asks for, by name (runs, measures,
        # lmc, rotation, cka_layers): the findings read whichever of them this config makes
        unpack(lambda wildcards: summary_tables(map(str, rules.all.input))),
    output:
        md=report("results/summary/findings.md", caption="../report/findings.rst", category="Findings",
                  labels={"table": "findings (markdown)"}),
        csv=report("results/summary/findings.csv", caption="../report/findings.rst", category="Findings",
                   labels={"table": "findings (csv)"}),
        html=report("results/summary/findings.html", caption="../report/findings.rst", category="Findings",
                    labels={"table": "replication summary"}),
    log:
        "results/logs/aggregate/findings.log",
    benchmark:
        "results/benchmarks/aggregate/findings.tsv"
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/findings.py"


rule runtime_table:
    input:
        # every other target of rule `all`: benchmark files are not declared outputs, so the
        # runtime table waits for every job that writes one
        lambda wildcards: [str(f) for f in rules.all.input if str(f) not in RUNTIME_OUTPUTS],
    output:
        csv=report("results/summary/runtime.csv", caption="../report/runtime.rst", category="Runtime",
                   labels={"table": "runtime per rule (csv)"}),
        md=report("results/summary/runtime.md", caption="../report/runtime.rst", category="Runtime",
                  labels={"table": "runtime per rule (markdown)"}),
        html=report("results/summary/runtime.html", caption="../report/runtime.rst", category="Runtime",
                    labels={"table": "runtime per rule"}),
    params:
        bench_dir="results/benchmarks",
        # {rule: benchmark path pattern}, so each file is attributed to the rule that wrote it
        patterns=lambda wildcards: {r.name: str(r.benchmark) for r in workflow.rules if r.benchmark},
        # {rule: log path pattern}: each job's log ends with its phases (convergent.logs)
        log_patterns=lambda wildcards: {r.name: str(r.log[0]) for r in workflow.rules if r.benchmark and r.log},
    log:
        "results/logs/aggregate/runtime_table.log",
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/runtime_table.py"
