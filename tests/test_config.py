"""A bad config is rejected before any job runs, naming the key and what is allowed."""

from __future__ import annotations

import copy
import re

import pytest
import yaml
from convergent.config import load_sweep
from convergent.sweep import ConfigError, plan_sweep
from tests.workflow import REPO, run_snakemake, tiny_config, write_config


def check(config):
    """The Snakefile's one validation path, on a copy."""
    return load_sweep(copy.deepcopy(config))


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
    (lambda c: c.update(bogus=1), "bogus", "unknown key 'bogus'. Allowed keys here: chance_margin"),
    (lambda c: c["sweep"].update(widths=[0, 4]), "widths", "minimum of 1"),
    (lambda c: c["sweep"].update(widths=["wide"]), "widths", "has the wrong type; expected an integer"),
    (lambda c: c["sweep"].update(datasets=["imagenet"]), "datasets", "Allowed: digits, mnist1d, cifar10, cifar100"),
    (lambda c: c["sweep"].update(archs=["transformer"]), "archs", "Allowed: mlp, cnn, resnet18, wrn"),
    (lambda c: c["sweep"].update(seeds=[3]), "seeds", "should be non-empty" ),
    (lambda c: c["sweep"]["training"].update(optimizer="lbfgs"), "optimizer", "Allowed: sgd, adam"),
    (lambda c: c["sweep"]["training"].update(lr="fast"), "lr", "has the wrong type; expected a number"),
    (lambda c: c["sweep"].update(frozen_from="random"), "frozen_from", "Allowed: trained, init"),
    (lambda c: c.update(measures={"cca_ridge": -0.1}), "cca_ridge", "minimum of 0"),
    (lambda c: c.update(measures={"enabled": ["procrustes"]}), "procrustes", "cca, shape, linreg, rsa"),
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
    assert cnn.widths == [8, 16] and cnn.training.epochs == 7 and cnn.training.lr == 0.05
    assert mlp.widths == [4] and mlp.training.epochs == 2


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
    from convergent.settings import LMCSettings
    from convergent.weights.lmc import VARIANTS

    variants = yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text())["properties"]["lmc"][
        "properties"]["variants"]
    assert set(variants["items"]["enum"]) == set(VARIANTS)
    assert set(variants["default"]) == set(LMCSettings().variants) == set(VARIANTS)


# --- architecture options and rotation layers (issue 12) -----------------------------------------

@pytest.mark.parametrize("arch, options, key, allowed", [
    ("resnet18", {"depth": 3}, "depth", "['linear']"),
    ("wrn", {"batchnorm": True}, "batchnorm", "['depth', 'linear']"),
    ("mlp", {"batchnorm": False}, "batchnorm", "['depth', 'linear']"),
])
def test_option_of_another_architecture_is_refused_naming_key_and_allowed(arch, options, key, allowed):
    config = tiny_config(archs=["mlp", arch] if arch != "mlp" else ["mlp"], model={arch: options})
    with pytest.raises(Exception) as err:
        check(config)
    text = str(err.value)
    names = ", ".join(yaml.safe_load(allowed))   # the schema's message lists them plainly
    assert key in text and f"Allowed: {names}" in text and arch in text, text
    # the same refusal without the schema (plan_sweep alone, e.g. a programmatic caller)
    with pytest.raises(ConfigError, match=rf"model\.{arch}.*{key}.*allowed: {re.escape(allowed)}"):
        plan_sweep(copy.deepcopy(config))


def test_linear_option_is_accepted_by_every_architecture():
    from convergent.nets.models import ALLOWED_OPTIONS

    schema = yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text())
    per_arch = schema["$defs"]["model"]["properties"]
    for arch, allowed in ALLOWED_OPTIONS.items():
        assert set(per_arch[arch]["propertyNames"]["enum"]) == allowed == set(per_arch[arch]["properties"]), arch
        assert "linear" in allowed
    check(tiny_config(archs=["mlp", "cnn", "resnet18", "wrn"],
                      model={a: {"linear": True} for a in ("mlp", "cnn", "resnet18", "wrn")}))


@pytest.mark.parametrize("layers, words", [
    (["layer1.0"], ["wrn", "'layer1.0'", "allowed for wrn: block1.0, block2.0, block3.0", "per architecture"]),
    (["stem"], ["wrn", "'stem'", "not rotatable", "allowed for wrn: block1.0"]),
    ({"wrn": ["stem"]}, ["wrn", "'stem'", "not rotatable"]),
    ({"resnet18": ["layer9.0"]}, ["resnet18", "'layer9.0'", "allowed for resnet18: stem, layer1.0"]),
    ({"cnn": "all"}, ["rotation.layers", "['cnn']", "allowed: resnet18, wrn"]),
])
def test_rotation_layer_an_architecture_lacks_is_refused(layers, words):
    config = tiny_config(archs=["resnet18", "wrn"], model={"wrn": {"depth": 10}})
    config["rotation"]["layers"] = layers
    with pytest.raises(ConfigError) as err:
        check(config)
    for word in words:
        assert word in str(err.value), str(err.value)
    config["rotation"]["enabled"] = False  # the test is off: nothing to check
    check(config)


def test_rotation_layers_per_architecture_plan():
    from convergent.nets.archspec import rotation_layers

    config = tiny_config(archs=["resnet18", "wrn"], model={"wrn": {"depth": 10}})
    config["rotation"]["layers"] = {"resnet18": ["layer2.1", "stem"]}
    sweep = check(config)
    opts = {e.arch: e.model for e in sweep.experiments}
    spec = config["rotation"]["layers"]
    assert rotation_layers("resnet18", opts["resnet18"], spec) == ["stem", "layer2.1"]
    assert rotation_layers("wrn", opts["wrn"], spec) == ["block1.0", "block2.0", "block3.0"]  # all but the stem
    assert rotation_layers("wrn", opts["wrn"], "all") == ["block1.0", "block2.0", "block3.0"]


# --- shapes32's size (config data.shapes32) ---------------------------------------------------

@pytest.mark.parametrize("size, words", [
    ({"n_train": 0}, ["n_train", "minimum of 100"]),
    ({"n_test": -1}, ["n_test", "minimum of 100"]),
    ({"n_test": 50}, ["n_test", "minimum of 100"]),
    ({"n_train": 10**9}, ["n_train", "maximum of 100000"]),
    ({"n_train": "10k"}, ["n_train", "has the wrong type; expected an integer"]),
    ({"n_images": 10}, ["n_images", "unknown key 'n_images'. Allowed keys here: n_test, n_train"]),
])
def test_shapes32_size_that_does_not_fit_is_refused(size, words):
    config = tiny_config(datasets=["shapes32"])
    config["data"] = {"shapes32": size}
    with pytest.raises(Exception) as err:
        check(config)
    for word in words:
        assert word in str(err.value), str(err.value)


def test_shapes32_test_split_must_hold_what_extract_asks_for():
    config = tiny_config(datasets=["shapes32"])           # extract.max_samples = 150 of the test split
    config["data"] = {"shapes32": {"n_train": 1000, "n_test": 120}}
    with pytest.raises(ConfigError) as err:
        check(config)
    for word in ("data.shapes32.n_test = 120", "extract.max_samples = 150", "allowed: data.shapes32.n_test in 150..100000"):
        assert word in str(err.value), str(err.value)
    config["sweep"]["extract"].update(split="train")      # the training split is big enough
    assert check(config).experiments[0].data == {"n_train": 1000, "n_test": 120}


def test_shapes32_size_reaches_every_job_that_loads_data():
    """Every stage must see the same images: the size travels in each job's settings."""
    config = tiny_config(datasets=["shapes32", "digits"], archs=["mlp"])
    config["data"] = {"shapes32": {"n_test": 300}}
    sweep = check(config)
    assert sweep.experiment("shapes32", "mlp").data == {"n_train": 10000, "n_test": 300}
    assert sweep.experiment("digits", "mlp").data == {}   # digits takes no options; its params are unchanged
    for exp in sweep.experiments:                          # both kinds of job settings carry it
        assert exp.train_params().get("data") == exp.extract_params().get("data") == (exp.data or None)
    for rule in ("train", "extract", "lmc", "rotation"):  # every job that loads a dataset gets one of them
        smk = next(p for p in (REPO / "rules").glob("*.smk") if f"rule {rule}:" in p.read_text()).read_text()
        body = smk.split(f"rule {rule}:")[1].split("\nrule ")[0]
        assert "settings=training_params" in body or "settings=extract_params" in body, rule


def test_schema_limits_of_shapes32_are_the_code_s():
    from convergent.nets.dataspec import SHAPES32_DEFAULTS, SHAPES32_LIMITS

    schema = yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text())
    props = schema["properties"]["data"]["properties"]["shapes32"]["properties"]
    assert set(props) == set(SHAPES32_DEFAULTS)
    for key, (low, high) in SHAPES32_LIMITS.items():
        assert (props[key]["minimum"], props[key]["maximum"], props[key]["default"]) == \
            (low, high, SHAPES32_DEFAULTS[key]), key
    assert schema["properties"]["sweep"]["properties"]["datasets"]["items"] == {"$ref": "#/$defs/dataset_name"}
    datasets = schema["$defs"]["dataset_name"]["anyOf"][0]["enum"]   # the built-ins; [1]: an import path
    from convergent.nets.dataspec import DATASETS
    assert datasets == list(DATASETS)
    assert schema["properties"]["overrides"]["items"]["properties"]["dataset"] == {"$ref": "#/$defs/dataset_name"}


def test_snakemake_refuses_a_shapes32_size_before_any_job(tmp_path):
    config = tiny_config(datasets=["shapes32"], archs=["mlp"])
    config["data"] = {"shapes32": {"n_test": 0}}
    write_config(tmp_path, config)
    proc = run_snakemake(tmp_path, check=False)
    out = proc.stderr + proc.stdout
    assert proc.returncode != 0 and "n_test" in out and "minimum of 100" in out, out[-3000:]
    config["data"] = {"shapes32": {"n_test": 100}}   # passes the schema, too small for max_samples = 150
    write_config(tmp_path, config)
    proc = run_snakemake(tmp_path, check=False)
    out = proc.stderr + proc.stdout
    assert proc.returncode != 0 and "allowed: data.shapes32.n_test in 150..100000" in out, out[-3000:]
    assert not (tmp_path / "results").exists() and not (tmp_path / "data").exists()
