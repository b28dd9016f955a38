"""Limits caught before any job: every width's estimated job memory against the machine (or
``max_mem_mb``), ``extract.max_samples`` against the split actually used, and the estimate as
each network rule's ``mem_mb``. The estimate's parts are tested against the built networks."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
import torch
import yaml

from convergent.nets.dataspec import split_sizes
from convergent.memory import BASE_MB, PARAM_COPIES, extract_estimate, geometry, request_mb, train_estimate
from convergent.nets.models import build_model, count_parameters, record_layers
from convergent.sweep import ConfigError, job_estimates, plan_sweep
from tests.workflow import REPO, tiny_config, write_config


@pytest.mark.parametrize("arch, width, shape, options", [
    ("mlp", 16, (1, 8, 8), {"depth": 3}),
    ("mlp", 5, (1, 40), {"depth": 1}),
    ("cnn", 8, (3, 32, 32), {"depth": 8, "batchnorm": True}),
    ("cnn", 4, (1, 40), {"depth": 5, "batchnorm": False}),
    ("cnn", 3, (1, 8, 8), {"depth": 7, "batchnorm": True}),   # pools down to 1x1 (ceil mode)
    ("resnet18", 4, (3, 32, 32), {}),
    ("resnet18", 2, (1, 40), {}),
    ("wrn", 2, (3, 32, 32), {"depth": 10}),
    ("wrn", 1, (1, 8, 8), {"depth": 16}),
])
def test_geometry_counts_what_the_built_network_has(arch, width, shape, options):
    model = build_model(arch, width, shape, 10, options)
    g = geometry(arch, width, shape, 10, options)
    assert g.params == count_parameters(model)[0]
    with record_layers(model, model.layer_names) as out:
        model(torch.zeros(2, *shape))
    assert list(g.layer_elems) == [out[n][0].numel() for n in model.layer_names]


@pytest.mark.parametrize("dataset, options", [("digits", None), ("mnist1d", None),
                                              ("shapes32", {"n_train": 300, "n_test": 200})])
def test_split_sizes_are_what_the_loader_returns(dataset, options, tmp_path):
    from convergent.nets.data import load_dataset

    data = load_dataset(dataset, data_dir=tmp_path, options=options)
    assert split_sizes(dataset, options) == {"train": data.n_train, "test": data.n_test}


def test_estimate_parts_follow_the_sizes():
    small = train_estimate("digits", "mlp", 16, {"depth": 3}, {"batch_size": 64})
    wide = train_estimate("digits", "mlp", 1600, {"depth": 3}, {"batch_size": 64})
    assert small.base_mb == wide.base_mb == BASE_MB and small.data_mb == wide.data_mb
    # the parameter term is the network's count times the float32 copies (SGD: one momentum state)
    assert wide.params == geometry("mlp", 1600, (1, 8, 8), 10, {"depth": 3}).params
    assert wide.params_mb == pytest.approx(4 * wide.params * (PARAM_COPIES + 1) / 2**20)
    assert wide.params_mb / small.params_mb == pytest.approx(wide.params / small.params)
    adam = train_estimate("digits", "mlp", 1600, {"depth": 3}, {"batch_size": 64, "optimizer": "adam"})
    assert adam.params_mb == pytest.approx(wide.params_mb * (PARAM_COPIES + 2) / (PARAM_COPIES + 1))
    # training activations scale with the minibatch (evaluation's batch kept small here: the
    # larger of the two terms counts)
    big_batch = train_estimate("cifar10", "cnn", 64, {"depth": 4}, {"batch_size": 512, "eval_batch_size": 8})
    assert big_batch.activations_mb == pytest.approx(4 * train_estimate(
        "cifar10", "cnn", 64, {"depth": 4}, {"batch_size": 128, "eval_batch_size": 8}).activations_mb)
    more_rows = extract_estimate("digits", "cnn", 8, {"depth": 3}, {"chunk_rows": 1024})
    assert more_rows.activations_mb == pytest.approx(
        4 * extract_estimate("digits", "cnn", 8, {"depth": 3}, {"chunk_rows": 256}).activations_mb)


def _default_config():
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_a_width_that_cannot_fit_is_refused_naming_the_key_and_the_estimate():
    config = _default_config()
    config["sweep"]["widths"] = [100000]
    with pytest.raises(ConfigError) as err:
        plan_sweep(config)
    text = str(err.value)
    worst = max(job_estimates(plan_sweep(_default_config()).experiments[0], 100000), key=lambda e: e.total_mb)
    assert "sweep.widths" in text and "100000" in text and "digits/mlp" in text
    assert f"{worst.total_mb} MB" in text and "parameters" in text and "machine's memory" in text


def test_max_mem_mb_sets_the_limit_and_the_largest_width_that_fits_is_named():
    config = _default_config()
    config["max_mem_mb"] = 1000
    config["sweep"]["widths"] = [16, 4096]
    with pytest.raises(ConfigError, match=r"more than the 1000 MB of max_mem_mb") as err:
        plan_sweep(config)
    fits = int(str(err.value).rsplit("widths ≤ ", 1)[1].split()[0])
    exp = plan_sweep(_default_config()).experiments[0]
    assert max(e.total_mb for e in job_estimates(exp, fits)) <= 1000
    assert max(e.total_mb for e in job_estimates(exp, fits + 1)) > 1000
    config["sweep"]["widths"] = [16, fits]
    plan_sweep(config)   # at the limit: accepted


def test_the_config_command_refuses_it_before_any_job(tmp_path):
    config = _default_config()
    config["sweep"]["widths"] = [100000]
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.run([sys.executable, "-m", "convergent.config", str(path)], capture_output=True,
                          text=True, cwd=REPO)
    assert proc.returncode == 1 and "config OK" not in proc.stdout
    assert "sweep.widths: width 100000" in proc.stderr and "estimated" in proc.stderr


@pytest.mark.parametrize("split, max_samples, ok", [("test", 360, True), ("test", 361, False),
                                                     ("test", 100000, False), ("train", 1437, True),
                                                     ("train", 1438, False)])
def test_max_samples_is_checked_against_the_split_actually_used(split, max_samples, ok):
    config = _default_config()
    config["sweep"]["extract"].update(split=split, max_samples=max_samples)
    if ok:
        plan_sweep(config)
        return
    with pytest.raises(ConfigError) as err:
        plan_sweep(config)
    rows = split_sizes("digits")[split]
    assert f"extract.max_samples = {max_samples}" in str(err.value)
    assert f"the {split} split of digits has {rows} rows" in str(err.value)


_RESOURCES_SCRIPT = r"""
import json, sys
from pathlib import Path
from snakemake.api import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings, SnakemakeApi
from snakemake.settings.types import Quietness

snakefile, workdir = Path(sys.argv[1]), Path(sys.argv[2])
with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
    wf = api.workflow(resource_settings=ResourceSettings(cores=1), snakefile=snakefile, workdir=workdir,
                      config_settings=ConfigSettings(configfiles=[workdir / "config.yaml"]))
    dag = wf.dag(DAGSettings())
    dag.execute_workflow(executor="dryrun")
    out = {}
    for job in wf._workflow.dag.jobs:
        if job.rule.name in ("train", "extract", "lmc", "rotation"):
            out.setdefault(job.rule.name, {})[job.wildcards["width"]] = job.resources["mem_mb"]
print("MEM " + json.dumps(out))
"""


def test_the_estimate_sets_each_network_rules_mem_mb(tmp_path):
    config = tiny_config(archs=["mlp"], widths=[4, 3000])
    write_config(tmp_path, config)
    proc = subprocess.run([sys.executable, "-c", _RESOURCES_SCRIPT, str(REPO / "Snakefile"), str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("MEM ")]
    assert proc.returncode == 0 and line, proc.stderr[-3000:]
    mem = json.loads(line[-1][4:])
    sweep = copy.deepcopy(config)["sweep"]
    for width in (4, 3000):
        train = request_mb(train_estimate("digits", "mlp", width, sweep["model"]["mlp"], sweep["training"]))
        extract = request_mb(extract_estimate("digits", "mlp", width, sweep["model"]["mlp"], sweep["extract"]))
        assert train >= 1.5 * train_estimate("digits", "mlp", width, sweep["model"]["mlp"], sweep["training"]).total_mb
        assert mem["train"][str(width)] == mem["lmc"][str(width)] == mem["rotation"][str(width)] == train
        assert mem["extract"][str(width)] == extract
    assert mem["train"]["3000"] > mem["train"]["4"]
