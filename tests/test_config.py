"""A bad config is rejected before any job runs, naming the key and what is allowed."""

from __future__ import annotations

import copy

import pytest
import yaml
from snakemake.utils import validate

from convergent.sweep import ConfigError, plan_sweep
from tests.workflow import REPO, run_snakemake, tiny_config, write_config

SCHEMA = str(REPO / "schemas" / "config.schema.yaml")


def check(config):
    config = copy.deepcopy(config)
    validate(config, SCHEMA)
    return plan_sweep(config)


def test_embedded_default_is_valid_and_plans_the_documented_sweep():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    sweep = check(config)
    sw = config["sweep"]
    assert len(sw["seeds"]) >= 3 and len(sw["widths"]) >= 3 and len(sw["frozen_k"]) >= 2
    n_cells = len(sw["datasets"]) * len(sw["archs"]) * len(sw["widths"]) * len(sw["frozen_k"])
    # one run per cell and seed, plus (data-order control) one per cell and non-reference seed
    n_order = n_cells * (len(sw["seeds"]) - 1) if config["controls"].get("data_order") else 0
    assert len(sweep.runs()) == n_cells * len(sw["seeds"]) + n_order
    assert set(sw["datasets"]) <= {"digits", "mnist1d"}


@pytest.mark.parametrize("mutate, key, allowed", [
    (lambda c: c.update(bogus=1), "bogus", "Additional properties"),
    (lambda c: c["sweep"].update(widths=[0, 4]), "widths", "minimum of 1"),
    (lambda c: c["sweep"].update(widths=["wide"]), "widths", "not of type 'integer'"),
    (lambda c: c["sweep"].update(datasets=["imagenet"]), "datasets", "'digits', 'mnist1d', 'cifar10', 'cifar100'"),
    (lambda c: c["sweep"].update(archs=["transformer"]), "archs", "'mlp', 'cnn', 'resnet18', 'wrn'"),
    (lambda c: c["sweep"].update(seeds=[3]), "seeds", "should be non-empty" ),
    (lambda c: c["sweep"]["training"].update(optimizer="lbfgs"), "optimizer", "'sgd', 'adam'"),
    (lambda c: c["sweep"]["training"].update(lr="fast"), "lr", "not of type 'number'"),
    (lambda c: c["sweep"].update(frozen_from="random"), "frozen_from", "'trained', 'init'"),
])
def test_schema_rejects_with_key_and_allowed_values(mutate, key, allowed):
    config = tiny_config()
    mutate(config)
    with pytest.raises(Exception) as err:
        check(config)
    text = str(err.value)
    assert key in text, text
    if key == "seeds":  # minItems 2: jsonschema phrases it as "is too short"/"should be non-empty"
        assert "too short" in text or "non-empty" in text or "fewer than 2" in text, text
    else:
        assert allowed in text, text


@pytest.mark.parametrize("changes, words", [
    ({"frozen_k": [0, 3]}, ["frozen_k", "allowed: 0..2", "fc1, fc2"]),
    ({"layers": ["fc1", "fc9"]}, ["layers", "fc9", "allowed: fc1, fc2"]),
    ({"seeds": [1, 1]}, ["seeds", "two distinct"]),
])
def test_semantic_checks_name_key_and_allowed(changes, words):
    config = tiny_config(archs=["mlp"], **changes)
    with pytest.raises(ConfigError) as err:
        check(config)
    for word in words:
        assert word in str(err.value)


def test_override_must_match_an_experiment():
    config = tiny_config(archs=["mlp"])
    config["overrides"] = [{"arch": "cnn", "widths": [8]}]
    with pytest.raises(ConfigError, match=r"overrides\[0\]\.arch.*allowed: mlp"):
        check(config)


def test_overrides_apply_to_matching_cell_only():
    config = tiny_config()
    config["overrides"] = [{"arch": "cnn", "widths": [8, 16], "training": {"epochs": 7}}]
    sweep = check(config)
    cnn, mlp = sweep.experiment("digits", "cnn"), sweep.experiment("digits", "mlp")
    assert cnn.widths == [8, 16] and cnn.training["epochs"] == 7 and cnn.training["lr"] == 0.05
    assert mlp.widths == [4] and mlp.training["epochs"] == 2


def test_pairs_and_controls():
    sweep = check(tiny_config(archs=["mlp"], seeds=[0, 1, 2], frozen_k=[0]))
    by_control = {c: [(p.seed_a, p.seed_b) for p in sweep.pairs() if p.control == c] for c in sweep.controls}
    assert by_control["cross"] == [(0, 1), (0, 2), (1, 2)]
    assert by_control["floor"] == [(0, 1), (0, 2), (1, 2)]
    assert by_control["ceiling"] == [(0, 0)]
    assert {p.state for p in sweep.pairs() if p.control == "floor"} == {"init"}


def test_frozen_runs_pull_in_their_reference_run():
    sweep = check(tiny_config(archs=["mlp"], frozen_k=[1], seeds=[1, 2], reference_seed=5))
    runs = {(r.frozen_k, r.seed) for r in sweep.runs()}
    assert runs == {(1, 1), (1, 2), (0, 5)}


def test_snakemake_refuses_bad_config_before_any_job(tmp_path):
    config = tiny_config(archs=["mlp"], frozen_k=[0, 9])
    write_config(tmp_path, config)
    proc = run_snakemake(tmp_path, check=False)
    assert proc.returncode != 0
    assert "frozen_k" in proc.stderr + proc.stdout and "allowed: 0..2" in proc.stderr + proc.stdout
    assert not (tmp_path / "results").exists()

    config = tiny_config(datasets=["svhn"])
    write_config(tmp_path, config)
    proc = run_snakemake(tmp_path, check=False)
    assert proc.returncode != 0
    assert "datasets" in proc.stderr + proc.stdout and "cifar100" in proc.stderr + proc.stdout
    assert not (tmp_path / "results").exists()


def test_schema_knows_every_measure_and_moment_parameter():
    """The schema lists exactly the parameters the code reads, so typos fail before any job."""
    from convergent.measures import DEFAULT_PARAMS
    from convergent.moments import DEFAULT_MOMENT_PARAMS

    schema = yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text())
    assert set(schema["properties"]["measures"]["properties"]) == set(DEFAULT_PARAMS)
    assert set(schema["properties"]["moments"]["properties"]) == set(DEFAULT_MOMENT_PARAMS)
    for key, spec in schema["properties"]["moments"]["properties"].items():   # defaults filled by the schema
        assert spec.get("default", DEFAULT_MOMENT_PARAMS[key]) == DEFAULT_MOMENT_PARAMS[key], key
    config = tiny_config()
    config["measures"] = {**DEFAULT_PARAMS}
    config["moments"] = {**DEFAULT_MOMENT_PARAMS}
    check(config)
    config["measures"] = {"subspace_epsilon": [0.2]}
    with pytest.raises(Exception, match="subspace_epsilon"):
        check(config)
    config["measures"] = {"views": {"cka": "pooled"}}
    with pytest.raises(Exception, match="positions"):
        check(config)


def test_schema_lists_exactly_the_lmc_variants_the_code_has():
    from convergent.jobs import LMC_DEFAULTS
    from convergent.weights.lmc import VARIANTS

    variants = yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text())["properties"]["lmc"][
        "properties"]["variants"]
    assert set(variants["items"]["enum"]) == set(VARIANTS)
    assert set(variants["default"]) == set(LMC_DEFAULTS["variants"])
