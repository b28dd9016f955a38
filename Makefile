# The two commands of the README. Both set up .venv on a fresh machine first.
#   make run   -> the embedded default sweep (config.yaml) on all local cores, then its report
#   make test  -> the test suite
#   make report -> results/report.html alone: the self-contained Snakemake report of the results so far
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all
STAMP := $(VENV)/.installed

.PHONY: run test bench lint dryrun report clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -c constraints.txt -e '.[test,slurm]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --configfile config.yaml
	$(BIN)/snakemake --configfile config.yaml --report results/report.html

test: $(STAMP)
	$(BIN)/python -m pytest

report: $(STAMP)
	$(BIN)/snakemake --configfile config.yaml --report results/report.html

dryrun: $(STAMP)
	$(BIN)/snakemake -n --configfile config.yaml

lint: $(STAMP)
	$(BIN)/snakemake --lint --configfile config.yaml

clean:
	rm -rf results .snakemake
