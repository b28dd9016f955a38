"""Config errors a person can read: the key path, the offending value and what is allowed, in a
few lines (not Snakemake's dump of the schema); YAML syntax errors with file, line and column;
numbers written like 1e6 accepted as numbers."""

from __future__ import annotations

import copy
import subprocess

import pytest
import yaml

from convergent.config import check_config, coerce_numbers, load_config_file, load_schema, main
from convergent.sweep import ConfigError
from tests.workflow import REPO, SNAKEMAKE, tiny_config, write_config

SCHEMA = load_schema()


def _error(config) -> str:
    with pytest.raises(ConfigError) as err:
        check_config(copy.deepcopy(config), SCHEMA)
    text = str(err.value)
    assert len(text.splitlines()) <= 8, text          # a paragraph, not a dump
    assert "Failed validating" not in text and "$defs" not in text
    return text


def test_unknown_top_level_key_lists_the_allowed_keys():
    config = tiny_config()
    config["foo"] = 1
    text = _error(config)
    assert "the top level: unknown key 'foo'" in text
    assert "Allowed keys here: chance_margin, cka_layers, controls, data, data_dir, device, download, lmc, max_mem_mb, measures" in text


def test_unknown_nested_key_names_its_path_and_siblings():
    config = tiny_config()
    config["sweep"]["training"]["lrr"] = 0.1
    text = _error(config)
    assert "sweep.training: unknown key 'lrr'" in text
    assert "batch_size, epochs, eval_batch_size, lr, momentum" in text


@pytest.mark.parametrize("mutate, words", [
    (lambda c: c["sweep"]["training"].update(lr="fast"), ["sweep.training.lr = 'fast'", "expected a number > 0"]),
    (lambda c: c["sweep"]["training"].update(lr=-1), ["sweep.training.lr = -1", "a number > 0"]),
    (lambda c: c["sweep"].update(datasets=["imagenet"]),
     ["sweep.datasets[0] = 'imagenet' is not allowed", "Allowed: digits, mnist1d, cifar10, cifar100"]),
    (lambda c: c["sweep"]["extract"].update(max_samples=0),
     ["sweep.extract.max_samples = 0", "Allowed: null or an integer ≥ 1"]),
    (lambda c: c.update(overrides=[{"arch": "vit"}]), ["overrides[0].arch = 'vit'", "mlp, cnn, resnet18, wrn"]),
    (lambda c: c["sweep"].pop("seeds"), ["sweep: missing required key: 'seeds'"]),
])
def test_schema_errors_name_key_value_and_allowed(mutate, words):
    config = tiny_config()
    mutate(config)
    text = _error(config)
    for word in words:
        assert word in text, text


def test_numbers_written_in_e_notation_are_numbers():
    config = tiny_config()
    # what PyYAML (YAML 1.1, used by Snakemake) makes of these: strings
    loaded = yaml.safe_load("lr: 5e-4\nepochs: 1e1\nstrengths: [0, 1e-1]\nmax: 1e2\ndir: 1e3\n")
    assert loaded["lr"] == "5e-4" and loaded["epochs"] == "1e1"
    config["sweep"]["training"].update(lr=loaded["lr"], epochs=loaded["epochs"], weight_decay="1E-5")
    config["rotation"]["strengths"] = loaded["strengths"]
    config["sweep"]["extract"]["max_samples"] = loaded["max"]
    config["data_dir"] = loaded["dir"]
    check_config(config, SCHEMA)
    training = config["sweep"]["training"]
    assert training["lr"] == 5e-4 and isinstance(training["lr"], float)
    assert training["epochs"] == 10 and isinstance(training["epochs"], int)
    assert training["weight_decay"] == 1e-5
    assert config["rotation"]["strengths"] == [0, 0.1]
    assert config["sweep"]["extract"]["max_samples"] == 100
    assert config["data_dir"] == "1e3"          # a string key stays a string
    # a fractional value where an integer is required is still refused, by name
    bad = tiny_config()
    bad["sweep"]["training"]["epochs"] = "2.5e0"
    assert "sweep.training.epochs = '2.5e0'" in _error(bad)


def test_coerce_leaves_non_numbers_alone():
    config = {"sweep": {"training": {"lr": "fast", "optimizer": "1e3"}}}
    coerce_numbers(config, SCHEMA)
    assert config["sweep"]["training"] == {"lr": "fast", "optimizer": "1e3"}


def test_yaml_syntax_error_gives_file_line_and_column(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sweep:\n  datasets: [digits\n  archs: [mlp]\n")
    with pytest.raises(ConfigError, match=rf"{bad}, line 3, column 8: YAML syntax error"):
        load_config_file(bad)
    tab = tmp_path / "tab.yaml"
    tab.write_text("sweep:\n\tdatasets: [digits]\n")
    with pytest.raises(ConfigError, match=r"line 2, column 1: .*replace the tab"):
        load_config_file(tab)
    assert main([str(bad)]) == 1
    assert "line 3, column 8" in capsys.readouterr().err
    assert main([str(REPO / "config.yaml")]) == 0


def _snakemake(workdir, *args):
    cmd = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "1", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


def test_snakemake_prints_the_short_message_and_accepts_e_notation(tmp_path):
    config = tiny_config(archs=["mlp"])
    config["foo"] = 1
    write_config(tmp_path, config)
    rc, out = _snakemake(tmp_path, "-n", "--configfile", str(tmp_path / "config.yaml"))
    assert rc != 0 and "the top level: unknown key 'foo'" in out, out
    assert len(out.splitlines()) < 25 and "Failed validating" not in out, out
    assert not (tmp_path / "results").exists()
    # lr written 5e-2: YAML 1.1 reads a string; the workflow takes the number
    text = (tmp_path / "config.yaml").read_text().replace("foo: 1\n", "")
    text = text.replace("lr: 0.05", "lr: 5e-2")
    assert "lr: 5e-2" in text
    (tmp_path / "config.yaml").write_text(text)
    rc, out = _snakemake(tmp_path, "-n", "--configfile", str(tmp_path / "config.yaml"))
    assert rc == 0, out
    # a YAML error in the embedded config.yaml (no --configfile) names its line and column
    (tmp_path / "config.yaml").write_text(text.replace("archs:", "archs: [mlp\n  x:", 1))
    rc, out = _snakemake(tmp_path, "-n")
    assert rc != 0 and "config.yaml, line" in out and "column" in out, out
