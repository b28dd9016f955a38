"""Helpers for tests that run the real `snakemake` CLI in a temporary directory."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

TINY_CONFIG: dict[str, Any] = {
    "device": "cpu",
    "threads": 1,
    "sweep": {
        "datasets": ["digits"],
        "archs": ["mlp", "cnn"],
        "widths": [4],
        "frozen_k": [0, 1],
        "seeds": [0, 1],
        "reference_seed": 0,
        "frozen_from": "trained",
        "layers": "all",
        "model": {"mlp": {"depth": 2}, "cnn": {"depth": 2, "batchnorm": True}},
        "training": {"epochs": 2, "batch_size": 64, "optimizer": "sgd", "lr": 0.05,
                     "momentum": 0.9, "weight_decay": 0.0, "schedule": "constant"},
        "extract": {"split": "test", "chunk_rows": 64, "max_samples": 150},
    },
    # data_order is named (config.yaml turns it on and Snakemake merges the two): off here, on in
    # tests/test_workflow.py's sweep, so the other end-to-end tests do not pay for its jobs
    "controls": {"cross": True, "floor": True, "ceiling": True, "data_order": False},
    "moments": {},
    "measures": {},
    "lmc": {"alphas": 3},
    "rotation": {"layers": "all", "strengths": [0.0, 1.0], "retrain_epochs": 1},
}


def tiny_config(**sweep_changes: Any) -> dict[str, Any]:
    config = copy.deepcopy(TINY_CONFIG)
    config["sweep"].update(sweep_changes)
    return config


def write_config(workdir: Path, config: dict[str, Any]) -> Path:
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_snakemake(workdir: Path, *args: str, check: bool = True, cores: int = 2,
                  timeout: float = 1200) -> subprocess.CompletedProcess:
    """Run the repository's workflow on ``workdir/config.yaml`` with outputs under ``workdir``."""
    cmd = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), "--cores", str(cores), *args]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-5000:]}\n{proc.stderr[-8000:]}")
    return proc


def planned_jobs(output: str) -> dict[str, int]:
    """Parse the 'Job stats' table of a dry run into {rule: count}."""
    counts: dict[str, int] = {}
    in_table = False
    for line in output.splitlines():
        if line.startswith("Job stats:"):
            in_table = True
            continue
        if in_table:
            m = re.match(r"^(\S+)\s+(\d+)\s*$", line.strip())
            if m and m.group(1) != "total":
                counts[m.group(1)] = int(m.group(2))
            elif line.strip().startswith("total"):
                break
    return counts


_DRY_RUN_SCRIPT = r"""
import json, sys
from pathlib import Path
from snakemake.api import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings, SnakemakeApi
from snakemake.settings.types import Quietness

snakefile, jobs = Path(sys.argv[1]), json.loads(sys.argv[2])
counts = {}
for name, workdir in jobs.items():
    workdir = Path(workdir)
    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        wf = api.workflow(resource_settings=ResourceSettings(cores=1), snakefile=snakefile, workdir=workdir,
                          config_settings=ConfigSettings(configfiles=[workdir / "config.yaml"]))
        wf.dag(DAGSettings()).execute_workflow(executor="dryrun")
        counts[name] = wf._workflow.dag.stats()[1]   # {rule: jobs, ..., "total": jobs}
print("DRYRUN " + json.dumps(counts))
"""


def dry_run_counts(configs: dict[str, dict[str, Any]], root: Path, timeout: float = 600) -> dict[str, dict[str, int]]:
    """Plan each config (``snakemake -n``) in its own workdir ``root/<name>``; {name: {rule: jobs}}.

    One Python process plans them all through ``snakemake.api`` (the CLI would pay its start-up
    once per config); a dry run runs no job.
    """
    workdirs = {}
    for name, config in configs.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        write_config(root / name, config)
        workdirs[name] = str(root / name)
    import json

    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.run([sys.executable, "-c", _DRY_RUN_SCRIPT, str(REPO / "Snakefile"), json.dumps(workdirs)],
                          capture_output=True, text=True, timeout=timeout, env=env)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("DRYRUN ")]
    if proc.returncode != 0 or not line:
        raise AssertionError(f"dry run failed ({proc.returncode}):\n{proc.stdout[-5000:]}\n{proc.stderr[-8000:]}")
    return json.loads(line[-1][len("DRYRUN "):])
