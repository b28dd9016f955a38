"""Your own network and data: architectures and datasets by import path, checked before planning."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from snakemake.utils import validate

from convergent.sweep import ConfigError, plan_sweep
from tests.workflow import REPO, tiny_config

SCHEMA = str(REPO / "schemas" / "config.schema.yaml")
VIT = "tests.models_vit:tiny_vit"
SHAPES = "tests.datasets_byo:small_shapes"
BLOCKS = ["encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1"]


def vit(width=8, layers=None, container=None, **options):
    from convergent.nets.models import build_model

    opts = {**options, **({"layers": layers} if layers else {}), **({"container": container} if container else {})}
    return build_model(VIT, width, (3, 32, 32), 10, opts)


def byo_config(**sweep):
    config = tiny_config(datasets=[SHAPES], archs=[VIT], widths=[8], frozen_k=[0, 1],
                         model={VIT: {"container": "encoder.layers"}}, **sweep)
    config["data"] = {SHAPES: {"n_train": 40, "n_test": 20}}
    config["sweep"]["extract"]["max_samples"] = 20
    config["rotation"] = {"enabled": False}
    return config


def check(config):
    from convergent.config import check_config

    config = copy.deepcopy(config)
    check_config(config)
    validate(config, SCHEMA)
    return plan_sweep(config)


# --- the registry ---------------------------------------------------------------------------

def test_builtins_are_registry_entries_called_like_an_import_path():
    from convergent.nets import models
    from convergent.nets.registry import ARCH_REGISTRY, arch_factory

    assert set(ARCH_REGISTRY) == {"mlp", "cnn", "resnet18", "wrn"}
    assert arch_factory("cnn") is models.cnn
    torch.manual_seed(0)
    a = arch_factory("convergent.nets.models:mlp")(4, 3, (1, 8, 8), depth=2)
    torch.manual_seed(0)
    b = models.build_model("mlp", 4, (1, 8, 8), 3, {"depth": 2})
    assert a.layer_names == b.layer_names == ["fc1", "fc2"]
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_schema_pattern_is_the_code_s():
    import yaml

    from convergent.nets.registry import IMPORT_PATH_PATTERN, is_import_path

    schema = yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text())
    assert schema["$defs"]["import_path"]["pattern"] == IMPORT_PATH_PATTERN
    assert is_import_path(VIT) and is_import_path("a:b") and not is_import_path("mlp")
    assert not is_import_path("tests/models_vit.py:tiny_vit") and not is_import_path("a.b:c.d")


# --- the imported network ---------------------------------------------------------------------

def test_layers_default_to_children_of_the_top_or_a_container_in_forward_order():
    assert vit().layer_names == ["conv_proj", "encoder", "heads"]
    assert vit().layer_kinds == {"conv_proj": "conv", "encoder": "tokens", "heads": "dense"}
    assert vit(container="encoder.layers").layer_names == BLOCKS
    # named in any order, kept in the order the forward pass completes them
    net = vit(layers=[BLOCKS[1], "conv_proj", BLOCKS[0]])
    assert net.layer_names == ["conv_proj", *BLOCKS]
    assert net.layer_shapes[BLOCKS[0]] == (17, 8)   # 16 patches + the class token, 8 units


@pytest.mark.parametrize("layers, words", [
    (["encoder.layers.encoder_layer_7"], ["sweep.model.tests.models_vit:tiny_vit.layers",
                                          "'encoder.layers.encoder_layer_7'", "conv_proj, encoder, heads"]),
    (["encoder.layers.encoder_layer_0.self_attention"], ["outputs a tuple", "one tensor"]),
])
def test_a_bad_layer_name_is_one_line_naming_the_key(layers, words):
    with pytest.raises(ValueError) as err:
        vit(layers=layers)
    assert "\n" not in str(err.value)
    for word in words:
        assert word in str(err.value)


def test_forward_layers_stops_after_the_layer():
    net = vit(layers=["conv_proj", *BLOCKS]).eval()
    called = []
    net.net.heads.register_forward_hook(lambda *a: called.append("heads"))
    net.net.get_submodule(BLOCKS[1]).register_forward_hook(lambda *a: called.append("block1"))
    x = torch.randn(3, 3, 32, 32)
    out = net.forward_layers(x, 2)
    assert called == [] and out.shape == (3, 17, 8)
    _, full = net.named_layer_outputs(x)
    torch.testing.assert_close(out, full[BLOCKS[0]])


def test_freezing_k_layers_freezes_what_computes_them_including_container_parameters():
    net = vit(layers=["conv_proj", *BLOCKS])
    params, modules = net.prefix(2)
    # the class token (on the top module) and the position embedding (on the encoder) compute
    # the first block's output: frozen with it; the second block and the head are not
    assert {"class_token", "encoder.pos_embedding", "conv_proj.weight"} <= set(params)
    assert not any(p.startswith((BLOCKS[1], "heads", "encoder.ln")) for p in params)
    assert "encoder.dropout" in modules and BLOCKS[1] not in modules
    assert set(net.prefix(1)[0]) == {"conv_proj.weight", "conv_proj.bias"}
    net.freeze_first(2)
    assert net.frozen_k == 2
    frozen = {n for n, p in net.net.named_parameters() if not p.requires_grad}
    assert frozen == set(params)
    net.train()
    assert not net.net.encoder.dropout.training and net.net.get_submodule(BLOCKS[1]).training
    assert {k.removeprefix("net.") for k in net.state_keys_of_first(2)} == set(params)
    net.freeze_first(0)
    assert all(p.requires_grad for p in net.parameters()) and net.net.encoder.dropout.training


def test_init_model_copies_and_freezes_the_reference_prefix():
    from convergent.nets.data import load_dataset
    from convergent.nets.train import init_model

    data = load_dataset(SHAPES, options={"n_train": 20, "n_test": 10})
    opts = {"layers": ["conv_proj", *BLOCKS]}
    ref = init_model(VIT, 8, data, opts, seed=0)
    net = init_model(VIT, 8, data, opts, seed=1, frozen_k=1, reference_state=ref.state_dict())
    free = init_model(VIT, 8, data, opts, seed=1)
    # tensors whose initialisation depends on the seed (biases, LayerNorms and the class token start
    # at constants): of those, the frozen run shares exactly the patch embedding with the reference
    seeded = {k for k, v in ref.state_dict().items() if not torch.equal(v, free.state_dict()[k])}
    same = {k for k in seeded if torch.equal(ref.state_dict()[k], net.state_dict()[k])}
    assert same == {"net.conv_proj.weight"}   # (its bias starts at zero whatever the seed)
    assert set(net.state_keys_of_first(1)) == {"net.conv_proj.weight", "net.conv_proj.bias"}
    assert all(torch.equal(net.state_dict()[k], free.state_dict()[k]) for k in seeded - same)
    assert not net.net.conv_proj.weight.requires_grad and net.net.class_token.requires_grad


def test_tokens_layers_are_stored_units_by_tokens(tmp_path):
    from convergent.activations import ActivationStore
    from convergent.nets.extract import extract_to_store

    net = vit(layers=["conv_proj", *BLOCKS]).eval()
    x, y = torch.randn(10, 3, 32, 32), torch.arange(10) % 3
    store = ActivationStore(extract_to_store(net, x, y, net.layer_names, tmp_path / "s.zarr", chunk_rows=4,
                                           batch_size=10))   # one batch: the same kernels as below
    with torch.no_grad():   # as extraction runs (attention takes its no-grad fast path)
        _, outs = net.named_layer_outputs(x)
    tokens = outs[BLOCKS[1]].numpy()                                 # (n, tokens, d)
    raw = store.raw(BLOCKS[1])
    assert raw.shape == (10, 8, 17) and raw.attrs["axes"] == ["sample", "unit", "token"]
    np.testing.assert_allclose(raw[:], tokens.transpose(0, 2, 1), rtol=0, atol=0)
    rows, t = store.read_view(BLOCKS[1], "positions")               # the tokens view
    np.testing.assert_allclose(rows, tokens.reshape(-1, 8), rtol=0, atol=0)
    assert (t == np.repeat(y.numpy(), 17)).all()
    np.testing.assert_allclose(store.read_view(BLOCKS[1], "pool")[0], tokens.mean(axis=1), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(store.raw("conv_proj")[:], outs["conv_proj"].numpy(), rtol=0, atol=0)


def test_memory_estimate_counts_the_built_network():
    from convergent.memory import geometry
    from convergent.nets.models import count_parameters

    net = vit(layers=["conv_proj", *BLOCKS])
    g = geometry(VIT, 8, (3, 32, 32), 10, {"layers": ["conv_proj", *BLOCKS]})
    assert g.params == count_parameters(net)[0]
    assert g.layer_elems == (8 * 4 * 4, 17 * 8, 17 * 8)


# --- datasets by import path ----------------------------------------------------------------

def test_dataset_by_import_path_counts_classes_and_fingerprints():
    from convergent.nets.data import load_dataset

    a = load_dataset("tests.datasets_byo:counting")
    assert a.num_classes == 3 and a.input_shape == (3,) and a.x_train.dtype == torch.float32
    assert a.y_train.tolist()[:4] == [0, 1, 2, 0] and a.n_test == 12
    again = load_dataset("tests.datasets_byo:counting")
    other = load_dataset("tests.datasets_byo:counting", options={"n_train": 31})
    assert a.info["fingerprint"] == again.info["fingerprint"] != other.info["fingerprint"]
    given = load_dataset(SHAPES, options={"n_train": 20, "n_test": 10, "num_classes": 12})
    assert given.num_classes == 12 and given.input_shape == (3, 32, 32)


@pytest.mark.parametrize("name, options, words", [
    ("tests.datasets_byo:broken", None, ["sweep.datasets", "labels must be integers"]),
    ("tests.datasets_byo:counting", {"num_classes": 2}, ["data.tests.datasets_byo:counting.num_classes", "0..1"]),
    ("tests.datasets_byo:counting", {"size": 3}, ["data.tests.datasets_byo:counting", "refused its options"]),
    ("tests.datasets_byo:nothing", None, ["sweep.datasets", "has no 'nothing'", "counting"]),
])
def test_bad_dataset_errors_name_the_key(name, options, words):
    from convergent.nets.data import load_dataset

    with pytest.raises(ValueError) as err:
        load_dataset(name, options=options)
    for word in words:
        assert word in str(err.value), str(err.value)


# --- planning -------------------------------------------------------------------------------

def test_a_sweep_by_import_path_plans():
    sweep = check(byo_config())
    exp = sweep.experiments[0]
    assert exp.all_layers == exp.layers == BLOCKS and exp.data == {"n_train": 40, "n_test": 20}
    assert {r.arch for r in sweep.runs()} == {VIT}


@pytest.mark.parametrize("mutate, words", [
    (lambda c: c["sweep"].update(archs=["tests.no_such_module:net"]),
     ["sweep.archs", "cannot import module 'tests.no_such_module'", "PYTHONPATH"]),
    (lambda c: c["sweep"].update(archs=["tests.models_vit:tiny_vat"]),
     ["sweep.archs", "has no 'tiny_vat'", "tiny_vit"]),
    (lambda c: c["sweep"]["model"][VIT].update(container="encoder.blocks"),
     ["sweep.model.tests.models_vit:tiny_vit.container", "'encoder.blocks'"]),
    (lambda c: c["sweep"]["model"][VIT].update(layers=["encoder.layers.encoder_layer_9"]),
     ["sweep.model.tests.models_vit:tiny_vit.layers", "encoder_layer_9"]),
    (lambda c: c["sweep"]["model"][VIT].update(patch=7),
     ["tiny_vit(width=8", "ValueError", "multiple of patch=7"]),
    (lambda c: c["sweep"].update(layers=["heads"]), ["layers", "'heads'", "allowed: " + ", ".join(BLOCKS)]),
    (lambda c: c["sweep"].update(frozen_k=[0, 3]), ["frozen_k", "allowed: 0..2"]),
    (lambda c: c["sweep"].update(datasets=["tests.datasets_byo:broken"]),
     ["sweep.datasets", "labels must be integers"]),
    (lambda c: c.update(rotation={"enabled": True}),
     ["rotation.enabled", VIT, "declares no rotation site", "rotation.enabled: false"]),
])
def test_planning_refuses_in_one_line_naming_the_key(mutate, words):
    config = byo_config()
    mutate(config)
    with pytest.raises(ConfigError) as err:
        check(config)
    text = str(err.value)
    assert "\n" not in text, text
    for word in words:
        assert word in text, text


def test_rotation_leaves_out_an_imported_arch_beside_a_builtin():
    config = byo_config()
    config["sweep"]["archs"] = ["mlp", VIT]
    config["sweep"]["model"]["mlp"] = {"depth": 2}
    config["rotation"] = {"layers": {VIT: []}}
    sweep = check(config)
    rot = {e.arch: e.rotation_layers for e in sweep.experiments}
    assert rot == {"mlp": ["fc1", "fc2"], VIT: []}


def test_a_name_that_is_neither_builtin_nor_import_path_is_refused_readably():
    from convergent.config import check_config

    config = tiny_config(datasets=["imagenet"], archs=["transformer", "tests/models_vit.py:tiny_vit"])
    with pytest.raises(ConfigError) as err:
        check_config(config)
    text = str(err.value)
    for words in ("sweep.archs[0] = 'transformer'", "sweep.archs[1]", "sweep.datasets[0] = 'imagenet'",
                  "mlp, cnn, resnet18, wrn or package.module:name", "Allowed: digits, mnist1d", "shapes32 or package.module:name"):
        assert words in text, text
