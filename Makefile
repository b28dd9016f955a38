# The two commands of the README. Both set up .venv on a fresh machine first.
#   make run   -> the embedded default sweep (config.yaml) on all local cores, then its report
#   make test  -> the test suite
#   make report -> results/report.html alone: the self-contained Snakemake report of the results so far
#   make check  -> scrub results/: verify every digest and chunk checksum, print what is damaged and
#                  the snakemake --forcerun command that rebuilds it (exit 1 when damage is found);
#                  a running or stopped sweep's unbuilt outputs are "not built yet", not damage
# CONFIG: the config file(s); checked first (python -m convergent.config) because snakemake
# --configfile reports a YAML syntax error without its line.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all
STAMP := $(VENV)/.installed
CONFIG ?= config.yaml
CHECK_CONFIG = $(BIN)/python -m convergent.config $(CONFIG)

.PHONY: run test bench lint dryrun report clean check

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -c constraints.txt -e '.[test,slurm]'
	touch $(STAMP)

run: $(STAMP)
	$(CHECK_CONFIG)
	$(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG)
	$(BIN)/snakemake --configfile $(CONFIG) --report results/report.html

test: $(STAMP)
	$(BIN)/python -m pytest

report: $(STAMP)
	$(CHECK_CONFIG)
	$(BIN)/snakemake --configfile $(CONFIG) --report results/report.html

dryrun: $(STAMP)
	$(CHECK_CONFIG)
	$(BIN)/snakemake -n --configfile $(CONFIG)

check: $(STAMP)
	$(BIN)/python -m convergent.check --results results --configfile $(CONFIG)

lint: $(STAMP)
	$(BIN)/snakemake --lint --configfile config.yaml

clean:
	rm -rf results .snakemake
