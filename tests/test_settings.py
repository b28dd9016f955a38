"""Every config section's defaults have one definition: the fields of its class in
convergent/settings.py. The schema agrees with them, and a default changed there reaches the job."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields

import numpy as np
import pytest
import yaml

from convergent import settings as S
from convergent.config import ConfigError, load_sweep
from convergent.sweep import Pair, Run
from tests.workflow import REPO, tiny_config

SCHEMA = yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text())


def _schema_section(key: str) -> dict:
    """The schema's ``properties`` of a section (``sweep.training`` -> the $defs it refers to)."""
    if key.startswith("sweep."):
        return SCHEMA["$defs"][key.split(".")[1]]["properties"]
    return SCHEMA["properties"][key]["properties"]


SECTIONS = [*S.EXPERIMENT_SECTIONS.values(), *S.SWEEP_SECTIONS.values()]


@pytest.mark.parametrize("section", SECTIONS, ids=lambda c: c.KEY)
def test_the_schema_knows_exactly_the_section_s_keys_and_states_its_defaults(section):
    props = _schema_section(section.KEY)
    assert set(props) == {f.name for f in fields(section)}, section.KEY
    defaults = section().as_dict()
    stated = {k: spec["default"] for k, spec in props.items() if "default" in spec}
    for key, value in stated.items():
        assert value == defaults[key], f"{section.KEY}.{key}: schema says {value!r}, {section.__name__} {defaults[key]!r}"
    if section in (S.LMCSettings, S.RotationSettings, S.LayersSettings):   # these document every default
        assert set(stated) == set(defaults), section.KEY


def test_train_config_takes_its_defaults_from_the_training_section():
    from convergent.nets.train import TrainConfig

    cfg = TrainConfig()
    for key, value in S.TrainingSettings().as_dict().items():
        assert getattr(cfg, key) == value, key


def test_library_defaults_are_views_of_the_sections():
    from convergent.measures import DEFAULT_PARAMS
    from convergent.moments import DEFAULT_MOMENT_PARAMS

    assert DEFAULT_MOMENT_PARAMS == S.MomentSettings().as_dict()
    assert DEFAULT_PARAMS == S.MeasureSettings().as_dict()
    assert S.LayersSettings().max_features == S.MomentSettings().max_features == S.MAX_PRIMAL_FEATURES


def test_a_section_refuses_an_unknown_key_naming_the_section():
    with pytest.raises(ConfigError, match=r"cka_layers: unknown key 'seed'\. Allowed keys here: .*seeds"):
        S.LayersSettings.from_mapping({"seed": 2})
    # measures.views replaces only the families it names
    views = S.MeasureSettings.from_mapping({"views": {"cka": "pool"}}).views
    assert views == {**S.MEASURE_VIEWS, "cka": "pool"}


def test_as_dict_round_trips_and_is_plain_data():
    """A job's params are the section as plain data; its script rebuilds the same object."""
    for section in SECTIONS:
        value = section()
        data = value.as_dict()
        assert section.from_mapping(data) == value
        assert yaml.safe_load(yaml.safe_dump(data)) == data, section.KEY   # lists and dicts only


def test_the_planned_sweep_holds_every_section_built_once():
    config = tiny_config()
    config["cka_layers"] = {"seeds": 2, "max_samples": 100}
    sweep = load_sweep(config)
    assert sweep.settings.cka_layers == dataclasses.replace(S.LayersSettings(), seeds=2, max_samples=100)
    assert sweep.settings.lmc.alphas == 3 and sweep.settings.lmc.train_samples == 500   # config, then default
    exp = sweep.experiments[0]
    assert isinstance(exp.training, S.TrainingSettings) and exp.training.epochs == 2
    assert exp.training.eval_batch_size == S.TrainingSettings.eval_batch_size
    assert exp.extract == S.ExtractSettings(chunk_rows=64, max_samples=150)
    bad = tiny_config()
    bad["cka_layers"] = {"seeds": 1}
    with pytest.raises(ConfigError, match="cka_layers.seeds"):
        load_sweep(bad)


def test_coordinates_have_one_order():
    pair = Pair("digits", "mlp", 8, 1, "data_order", 0, 0, 0, 2)
    assert list(pair.coordinates()) == ["dataset", "arch", "width", "frozen_k", "seed_a", "seed_b", "control",
                                        "order_seed_a", "order_seed_b"]
    assert list(pair.coordinates("trained"))[4] == "frozen_from"
    assert pair.coordinates()["order_seed_b"] == 2
    run = Run.coerce({"dataset": "digits", "arch": "mlp", "width": 8, "frozen_k": 0, "seed": 3})
    assert run == Run("digits", "mlp", 8, 0, 3, 3) and list(run.coordinates())[-2:] == ["seed", "order_seed"]

    class Wildcards:   # what Snakemake hands a rule: strings; rotation's have no frozen
        dataset, arch, width, seed, order = "digits", "mlp", "8", "3", "5"
    assert Run.from_wildcards(Wildcards) == Run("digits", "mlp", 8, 0, 3, 5)


def test_a_default_changed_in_its_dataclass_reaches_the_job(monkeypatch, tmp_path):
    """Change ExtractSettings' chunk_rows default (a subclass stands in for an edited class): the
    planned sweep, the extract job's params (what rule extract passes) and the store it writes follow."""
    from convergent.activations import ActivationStore
    from convergent.nets.data import load_dataset
    from convergent.jobs import extract_job
    from convergent.nets.train import init_model, save_state

    @dataclass(frozen=True)
    class Changed(S.ExtractSettings):
        chunk_rows: int = 40

    monkeypatch.setitem(S.EXPERIMENT_SECTIONS, "extract", Changed)
    config = tiny_config(archs=["mlp"])
    del config["sweep"]["extract"]["chunk_rows"]
    sweep = load_sweep(config)
    exp = sweep.experiments[0]
    params = exp.extract_params()              # rule extract's params
    assert params["extract"]["chunk_rows"] == 40
    run = exp.runs()[0]
    data = load_dataset(run.dataset, data_dir=str(tmp_path / "data"))
    save_state(init_model(run.arch, run.width, data, exp.model, run.seed), str(tmp_path / "init.pt"))
    out = tmp_path / "init.zarr"
    extract_job(run=run, checkpoints={"init": str(tmp_path / "init.pt")},
                settings={**params, "extract": S.ExtractSettings.from_mapping(params["extract"])},
                data_dir=str(tmp_path / "data"), device="cpu", threads=1, out_stores={"init": str(out)})
    store = ActivationStore(str(out))
    layer = exp.layers[0]
    assert store.n_images == 150
    import zarr
    assert zarr.open_group(str(out), mode="r")[layer].chunks[0] == 40
    assert np.isfinite(np.asarray(store.read_view(layer, "flatten")[0])).all()


def test_a_sweep_wide_default_changed_in_its_dataclass_reaches_the_params(monkeypatch):
    @dataclass(frozen=True)
    class Changed(S.LayersSettings):
        kernel_samples: int = 77

    monkeypatch.setitem(S.SWEEP_SECTIONS, "cka_layers", Changed)
    sweep = load_sweep(tiny_config())
    params = sweep.settings.cka_layers.as_dict()       # rule cka_layers' params
    assert S.LayersSettings.from_mapping(params).kernel_samples == 77


def test_top_level_defaults_the_code_also_names_agree_with_the_schema():
    from convergent.jobs import CHANCE_MARGIN

    assert SCHEMA["properties"]["chance_margin"]["default"] == CHANCE_MARGIN
