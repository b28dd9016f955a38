"""Architectures: layer names == archspec, shapes, width scaling, freezing and copying."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convergent.nets import archspec
from convergent.nets.models import (ConvergentNet, build_model, copy_first_layers, count_parameters,
                               freeze_first_layers, record_layers)

CASES = [
    ("mlp", 8, (1, 8, 8), None),
    ("mlp", 8, (1, 40), {"depth": 1}),
    ("mlp", 8, (5,), {"depth": 5, "linear": True}),
    ("cnn", 4, (1, 8, 8), None),
    ("cnn", 4, (1, 8, 8), {"depth": 3, "batchnorm": False}),
    ("cnn", 4, (1, 40), {"depth": 6}),
    ("cnn", 4, (3, 5, 5), {"depth": 1, "linear": True}),
    ("cnn", 2, (1, 3), {"depth": 7}),  # pooling a 1-long map keeps it (ceil_mode)
    ("resnet18", 2, (3, 16, 16), None),
    ("resnet18", 2, (1, 40), None),
    ("wrn", 1, (3, 8, 8), {"depth": 10}),
    ("wrn", 1, (1, 8, 8), None),
    ("wrn", 1, (1, 12), {"depth": 22}),
]


def _ids(case):
    arch, width, shape, opts = case
    return f"{arch}-w{width}-{'x'.join(map(str, shape))}-{opts}"


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_layer_names_shapes_and_hooks(case):
    arch, width, shape, opts = case
    torch.manual_seed(0)
    model = build_model(arch, width, shape, 7, opts)
    assert isinstance(model, ConvergentNet)
    assert model.layer_names == archspec.layer_names(arch, opts)
    assert len(model.layers) == len(model.layer_names)
    model.eval()
    x = torch.randn(3, *shape)
    logits, outs = model.named_layer_outputs(x)
    assert logits.shape == (3, 7)
    assert list(outs) == model.layer_names
    for i, name in enumerate(model.layer_names):
        out = outs[name]
        assert out.shape[0] == 3
        if arch == "mlp":
            assert out.shape == (3, width)
        else:
            assert out.ndim == len(shape) + 1  # conv layers keep their spatial axes
        torch.testing.assert_close(out, model.forward_layers(x, i + 1))
        if i:   # carried on from the layer before's output, the same
            torch.testing.assert_close(out, model.forward_layers(outs[model.layer_names[i - 1]], i + 1, start=i))
    # hooks are gone after the call
    assert all(not m._forward_hooks for m in model.modules())


def test_cnn_channels_and_pooling():
    model = build_model("cnn", 8, (1, 8, 8), 10, {"depth": 5})
    _, outs = model.eval().named_layer_outputs(torch.randn(2, 1, 8, 8))
    shapes = {k: tuple(v.shape[1:]) for k, v in outs.items()}
    assert shapes == {"conv1": (8, 8, 8), "conv2": (8, 8, 8), "conv3": (16, 4, 4),
                      "conv4": (16, 4, 4), "conv5": (32, 2, 2)}
    # the representation is post-ReLU and un-pooled
    assert all((v >= 0).all() for v in outs.values())
    conv1d = build_model("cnn", 8, (1, 40), 10, {"depth": 3})
    assert isinstance(conv1d.layers[0].linear, nn.Conv1d)
    assert isinstance(model.layers[0].linear, nn.Conv2d)
    assert isinstance(model.layers[0].norm, nn.BatchNorm2d)
    no_bn = build_model("cnn", 8, (1, 8, 8), 10, {"batchnorm": False})
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in no_bn.modules())


def test_mlp_parameter_count_scales_with_width():
    d_in, classes, depth = 64, 10, 3
    for width in (4, 16, 64):
        n, _ = count_parameters(build_model("mlp", width, (1, 8, 8), classes, {"depth": depth}))
        expect = d_in * width + width + (depth - 1) * (width * width + width) + width * classes + classes
        assert n == expect


def test_conv_parameter_counts_match_references():
    # meta tensors: count parameters of the big models without allocating them
    with torch.device("meta"):
        assert count_parameters(build_model("resnet18", 64, (3, 32, 32), 10))[0] == 11_173_962
        assert count_parameters(build_model("wrn", 10, (3, 32, 32), 10, {"depth": 28}))[0] == 36_479_194
        small = count_parameters(build_model("cnn", 8, (3, 32, 32), 10))[0]
        double = count_parameters(build_model("cnn", 16, (3, 32, 32), 10))[0]
    # conv weights dominate and scale with width²; the first conv and head are linear in width
    assert 3.0 < double / small < 4.0


def test_linear_option_makes_the_network_affine():
    # every architecture; cnn depth 3 and 5 pool (by averaging in the linear control)
    for arch, shape, opts in (("mlp", (1, 8, 8), {}), ("cnn", (1, 8, 8), {"depth": 2}), ("cnn", (1, 40), {"depth": 3}),
                              ("cnn", (3, 32, 32), {"depth": 5}), ("resnet18", (3, 32, 32), {}),
                              ("resnet18", (1, 8, 8), {}), ("wrn", (3, 32, 32), {"depth": 10}),
                              ("wrn", (1, 8, 8), {"depth": 10})):
        torch.manual_seed(0)
        width = 1 if arch == "wrn" else (2 if arch == "resnet18" else 6)
        model = build_model(arch, width, shape, 5, {"linear": True, **opts}).eval().double()
        assert not any(isinstance(m, (nn.ReLU, nn.MaxPool1d, nn.MaxPool2d)) for m in model.modules())
        a, b = torch.randn(2, *shape, dtype=torch.float64), torch.randn(2, *shape, dtype=torch.float64)
        f0 = model(torch.zeros_like(a))
        torch.testing.assert_close(model(a + b) - f0, (model(a) - f0) + (model(b) - f0))


def test_pre_activation_is_the_input_of_act():
    model = build_model("mlp", 5, (4,), 3, {"depth": 2}).eval()
    x = torch.randn(2, 4)
    seen = {}
    model.layers[1].act.register_forward_hook(lambda m, i, o: seen.update(pre=i[0], post=o))
    _, outs = model.named_layer_outputs(x)
    torch.testing.assert_close(seen["post"], outs["fc2"])
    torch.testing.assert_close(torch.relu(seen["pre"]), outs["fc2"])


def test_bad_options_and_widths():
    with pytest.raises(ValueError, match="unknown mlp options"):
        build_model("mlp", 4, (4,), 2, {"batchnorm": True})
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("vgg", 4, (1, 8, 8), 2)
    with pytest.raises(ValueError, match="width"):
        build_model("mlp", 0, (4,), 2)
    with pytest.raises(ValueError, match="depth"):
        build_model("wrn", 1, (1, 8, 8), 2, {"depth": 12})
    with pytest.raises(ValueError, match="needs input"):
        build_model("cnn", 4, (64,), 2)
    with pytest.raises(KeyError, match="no layer"):
        build_model("mlp", 4, (4,), 2).layer_module("conv1")


def test_state_keys_of_first_layers():
    res = build_model("resnet18", 2, (3, 8, 8), 10)
    stem = res.state_keys_of_first(1)
    assert stem and all(k.startswith("layers.0.") for k in stem)  # the stem is layer 1
    assert any(k.endswith("running_mean") for k in stem) and any(k.endswith("num_batches_tracked") for k in stem)
    two = res.state_keys_of_first(2)
    assert set(stem) < set(two) and all(k.startswith(("layers.0.", "layers.1.")) for k in two)
    assert res.state_keys_of_first(0) == []
    everything = res.state_keys_of_first(len(res.layers))
    assert not any(k.startswith("head.") for k in everything)
    with pytest.raises(ValueError):
        res.state_keys_of_first(len(res.layers) + 1)
    # parameters_of_first agrees with the keys
    n_params = sum(p.numel() for p in res.parameters_of_first(2))
    sd = res.state_dict()
    named = dict(res.named_parameters())
    assert n_params == sum(sd[k].numel() for k in two if k in named)


def test_freeze_and_copy():
    torch.manual_seed(0)
    src = build_model("cnn", 4, (1, 8, 8), 10)
    torch.manual_seed(1)
    dst = build_model("cnn", 4, (1, 8, 8), 10)
    src.layers[0].norm.running_mean.fill_(0.5)
    keys = copy_first_layers(dst, src.state_dict(), 2)
    for k in keys:
        assert torch.equal(dst.state_dict()[k], src.state_dict()[k])
    assert not torch.equal(dst.layers[2].linear.weight, src.layers[2].linear.weight)

    freeze_first_layers(dst, 2)
    assert dst.frozen_k == 2
    assert all(not p.requires_grad for p in dst.parameters_of_first(2))
    assert all(p.requires_grad for layer in dst.layers[2:] for p in layer.parameters())
    assert all(p.requires_grad for p in dst.head.parameters())
    dst.train()
    assert not dst.layers[0].training and not dst.layers[1].norm.training
    assert dst.layers[2].training and dst.head.training
    before = {k: v.clone() for k, v in dst.state_dict().items() if k in keys}
    dst(torch.randn(8, 1, 8, 8))  # a train-mode forward pass
    assert all(torch.equal(dst.state_dict()[k], v) for k, v in before.items())
    assert count_parameters(dst)[1] < count_parameters(dst)[0]

    freeze_first_layers(dst, 0)  # unfreezing restores everything
    dst.train()
    assert all(p.requires_grad for p in dst.parameters()) and dst.layers[0].training


def test_copy_rejects_mismatched_reference():
    a = build_model("mlp", 4, (4,), 3)
    b = build_model("mlp", 8, (4,), 3)
    with pytest.raises(ValueError, match="shape"):
        copy_first_layers(a, b.state_dict(), 1)
    with pytest.raises(KeyError):
        copy_first_layers(a, {}, 1)


def test_record_layers_overwrites_per_pass():
    model = build_model("mlp", 4, (4,), 3).eval()
    with record_layers(model, ["fc1"]) as out:
        model(torch.zeros(1, 4))
        first = out["fc1"]
        model(torch.ones(2, 4))
        assert out["fc1"].shape == (2, 4) and first.shape == (1, 4)
