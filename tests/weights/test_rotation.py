"""Rotation test: identity is a no-op; a linear net recovers from any rotation."""

import numpy as np
import pytest
import torch

from convergent.nets.data import load_dataset
from convergent.nets.models import build_model
from convergent.nets.train import TrainConfig, set_determinism, train
from convergent.weights.rotation import insert_rotation, random_rotation, rotation_path, rotation_test


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", max_train=600, max_test=300)


def _trained(arch, opts, width, data, tmp_path, epochs=8):
    set_determinism(0)
    model = build_model(arch, width, data.input_shape, data.num_classes, opts)
    train(model, data, TrainConfig(epochs=epochs, batch_size=32, lr=0.02, weight_decay=0.0), seed=0,
          frozen_k=0, log_path=tmp_path / "log.csv", log=lambda s: None)
    return model


def test_rotations_are_orthogonal():
    for R in (random_rotation(7, 0), rotation_path(7, 0.3, 0)):
        np.testing.assert_allclose(R @ R.T, np.eye(7), atol=1e-10)
        assert np.linalg.det(R) == pytest.approx(1.0)
    np.testing.assert_allclose(rotation_path(5, 0.0, 1), np.eye(5))
    np.testing.assert_array_equal(random_rotation(6, 3), random_rotation(6, 3))


@pytest.mark.parametrize("arch,opts,width", [("mlp", {"depth": 2}, 16),
                                              ("cnn", {"depth": 2, "batchnorm": True}, 4)])
def test_identity_rotation_changes_nothing(arch, opts, width, digits, tmp_path):
    model = _trained(arch, opts, width, digits, tmp_path, epochs=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = rotation_test(model, digits, model.layer_names[0], np.eye(width), retrain_epochs=1, lr=0.01, seed=0)
    assert res["rotation_identity"]
    assert res["rotated_test_acc"] == res["original_test_acc"]
    assert res["rotated_test_loss"] == pytest.approx(res["original_test_loss"], rel=1e-6)
    for k, v in model.state_dict().items():  # the input model is untouched
        assert torch.equal(v, before[k])


def test_rotation_frozen_below_and_applied(digits, tmp_path):
    model = _trained("mlp", {"depth": 2}, 16, digits, tmp_path, epochs=2)
    R = random_rotation(16, 0)
    net = insert_rotation(model, "fc1", R)
    with torch.no_grad():
        h = model.layers[0].linear(model.layers[0].pre(digits.x_test[:5]))
        got = net.forward_layers(digits.x_test[:5], 1)
    torch.testing.assert_close(got, torch.relu(h @ torch.as_tensor(R, dtype=torch.float32)))


def test_linear_net_recovers_from_rotation(digits, tmp_path):
    model = _trained("mlp", {"depth": 2, "linear": True}, 16, digits, tmp_path)
    res = rotation_test(model, digits, "fc1", random_rotation(16, 1), retrain_epochs=8, lr=0.02, seed=0,
                        cfg={"weight_decay": 0.0, "batch_size": 32})
    assert res["original_test_acc"] > 0.8
    assert res["rotated_test_acc"] < res["original_test_acc"] - 0.1  # the rotation did hurt
    assert res["retrained_test_acc"] >= res["original_test_acc"] - 0.03


# --- every architecture, every rotatable layer: the linear control undoes R exactly ------------

from convergent.nets import archspec  # noqa: E402
from convergent.weights.rotation import NotRotatable, rotation_site  # noqa: E402

FOLD_CASES = [
    ("mlp", 6, (1, 8, 8), {"depth": 3}),
    ("cnn", 3, (1, 8, 8), {"depth": 5, "batchnorm": True}),  # pools open conv3 and conv5
    ("cnn", 3, (3, 32, 32), {"depth": 4, "batchnorm": False}),
    ("cnn", 2, (1, 40), {"depth": 3, "batchnorm": True}),  # Conv1d
    ("resnet18", 2, (1, 8, 8), {}),
    ("resnet18", 2, (3, 32, 32), {}),
    ("wrn", 1, (1, 8, 8), {"depth": 10}),  # block1.0: 16 -> 16 channels, identity skip
    ("wrn", 2, (3, 32, 32), {"depth": 10}),  # block1.0: 16 -> 32 channels, 1x1 conv shortcut
]


def _random_eval_net(arch, width, shape, opts, linear):
    """float64, random weights, BatchNorm in eval mode with non-trivial statistics and affine."""
    torch.manual_seed(0)
    model = build_model(arch, width, shape, 5, {**opts, "linear": linear}).double().eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.running_mean.copy_(0.5 * torch.randn(c, generator=gen, dtype=torch.float64))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=gen, dtype=torch.float64))
                m.weight.copy_(0.5 + torch.rand(c, generator=gen, dtype=torch.float64))
                m.bias.copy_(0.3 * torch.randn(c, generator=gen, dtype=torch.float64))
    return model


def _consumers(net, arch, i):
    """Every module reading layer i's rotated pre-activation (written from the architectures'
    definitions, independently of rotation_site)."""
    nxt = net.layers[i + 1] if i + 1 < len(net.layers) else None
    if arch in ("mlp", "cnn"):
        return {f"layers.{i + 1}.linear" if nxt is not None else "head.linear":
                nxt.linear if nxt is not None else net.head.linear}
    if arch == "resnet18" and i == 0:  # the stem feeds layer1.0's conv1 and (now 1x1 conv) shortcut
        return {"layers.1.conv1": nxt.conv1, "layers.1.shortcut": nxt.shortcut}
    return {f"layers.{i}.conv2": net.layers[i].conv2}  # resnet18 / wrn blocks: conv2 alone


def _fold_inverse(net, arch, i, R):
    """Each consumer's weight W (out, in, *kernel) on R's unit axis becomes W R, so that
    (h R)(W R)^T = h W^T: R^-1 = R^T folded into everything that reads the rotated units."""
    consumers = _consumers(net, arch, i)
    with torch.no_grad():
        for m in consumers.values():
            m.weight.copy_(torch.einsum("oi...,ij->oj...", m.weight, R))
    return sorted(consumers)


@pytest.mark.parametrize("case", FOLD_CASES, ids=[f"{c[0]}-w{c[1]}-{'x'.join(map(str, c[2]))}" for c in FOLD_CASES])
def test_linear_control_undoes_every_rotation_exactly(case):
    arch, width, shape, opts = case
    linear = _random_eval_net(arch, width, shape, opts, linear=True)
    relu = _random_eval_net(arch, width, shape, opts, linear=False)
    x = torch.randn(4, *shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    refused = archspec.rotation_refusals(arch, opts)
    rotatable = archspec.rotatable_layers(arch, opts)
    assert sorted(rotatable + list(refused)) == sorted(linear.layer_names)  # every layer: a site or a reason
    assert set(refused) == ({"stem"} if arch == "wrn" else set())
    with torch.no_grad():
        base_lin, base_relu = linear(x), relu(x)
        for layer in rotatable:
            i = linear.layer_index(layer)
            site = rotation_site(linear, layer)
            R = torch.as_tensor(random_rotation(site.units, i + 7))
            rot_lin = insert_rotation(linear, layer, R).eval()
            # R did change the function before folding (else the check below is empty)
            assert (rot_lin(x) - base_lin).abs().max() > 1e-3, layer
            folded = _fold_inverse(rot_lin, arch, i, R)
            assert folded == sorted(site.consumers), (layer, folded, site.consumers)
            err = (rot_lin(x) - base_lin).abs().max().item()
            assert err < 1e-5 * max(1.0, base_lin.abs().max().item()), (layer, err)
            # the same fold does not restore the ReLU net: its basis is privileged
            rot_relu = insert_rotation(relu, layer, R).eval()
            _fold_inverse(rot_relu, arch, i, R)
            assert (rot_relu(x) - base_relu).abs().max() > 1e-3, layer


def test_linear_cnn_pools_by_averaging():
    # max-pool does not commute with a channel rotation; the linear control must average
    relu = build_model("cnn", 2, (1, 8, 8), 3, {"depth": 3})
    linear = build_model("cnn", 2, (1, 8, 8), 3, {"depth": 3, "linear": True})
    assert isinstance(relu.layers[2].pre, torch.nn.MaxPool2d)
    assert isinstance(linear.layers[2].pre, torch.nn.AvgPool2d)
    assert not any(isinstance(m, (torch.nn.ReLU, torch.nn.MaxPool2d)) for m in linear.modules())


@pytest.mark.parametrize("arch,width,opts", [("resnet18", 2, {}), ("wrn", 1, {"depth": 10})])
def test_no_rotation_site_is_refused_with_its_reason(arch, width, opts):
    model = build_model(arch, width, (1, 8, 8), 10, opts)
    if arch == "wrn":
        with pytest.raises(NotRotatable, match="stem.*not rotatable.*BatchNorm"):
            insert_rotation(model, "stem", np.eye(16))
        with pytest.raises(NotRotatable):
            rotation_site(model, "stem")
    with pytest.raises(ValueError, match="units"):
        insert_rotation(model, model.layer_names[1], np.eye(3))


@pytest.mark.parametrize("arch,width,layer,opts", [("resnet18", 2, "layer2.0", {}),
                                                   ("resnet18", 2, "stem", {}),
                                                   ("wrn", 1, "block2.0", {"depth": 10})])
def test_retraining_freezes_everything_at_and_below_R(arch, width, layer, opts, digits, tmp_path):
    set_determinism(0)
    model = build_model(arch, width, digits.input_shape, digits.num_classes, opts)
    res = rotation_test(model, digits, layer, random_rotation(rotation_site(model, layer).units, 0),
                        retrain_epochs=1, lr=0.05, seed=0, cfg={"batch_size": 128})
    assert res["layer_index"] == model.layer_index(layer) + 1
    assert np.isfinite(res["retrained_test_loss"])
    # retrain again, keeping the network, to see which tensors moved
    net = insert_rotation(model, layer, random_rotation(rotation_site(model, layer).units, 0))
    site = rotation_site(model, layer)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    train(net, digits, TrainConfig(epochs=1, batch_size=128, lr=0.05), seed=0, frozen_k=site.frozen_k,
          log_path=tmp_path / "log.csv", log=lambda s: None)
    after = net.state_dict()
    below = [f"layers.{j}." for j in range(site.frozen_k)] + [f"layers.{site.index}.{m}." for m in site.pinned]
    above = [f"{c}." for c in site.consumers] + ["head."]
    for key, value in before.items():
        if any(key.startswith(p) for p in below) or key.endswith(".R"):
            assert torch.equal(after[key], value), f"{key} (below R) changed"
    moved = [k for k in before if any(k.startswith(p) for p in above) and k.endswith("weight")
             and not torch.equal(after[k], before[k])]
    assert sorted(moved) == sorted(k for k in before if any(k.startswith(p) for p in above) and k.endswith("weight"))


def test_rotation_job_runs_a_residual_arch_with_its_linear_control(tmp_path, monkeypatch, digits):
    """The job that failed with "unknown wrn options ['linear']": ReLU and linear rows, finite."""
    import pandas as pd

    import convergent.nets.data
    from convergent.jobs import rotation_job
    from convergent.nets.train import init_model, save_state

    monkeypatch.setattr(convergent.nets.data, "load_dataset", lambda *a, **k: digits)  # the 600/300 subset: fast
    data = digits
    opts = {"depth": 10}
    model = init_model("wrn", 1, data, opts, seed=0)
    save_state(model, tmp_path / "model.pt")
    settings = {"model": opts, "training": {"epochs": 1, "batch_size": 128, "lr": 0.05}}
    run = {"dataset": "digits", "arch": "wrn", "width": 1, "frozen_k": 0, "seed": 0}
    table = rotation_job(run=run, settings=settings, checkpoint=str(tmp_path / "model.pt"),
                         params={"layers": {"wrn": ["block2.0"], "cnn": "all"}, "strengths": [0.0, 1.0],
                                 "retrain_epochs": 1},
                         data_dir=str(tmp_path), device="cpu", threads=1, out_csv=str(tmp_path / "rot.csv"))
    assert len(pd.read_csv(tmp_path / "rot.csv")) == len(table) == 4
    assert sorted(map(tuple, table[["linear", "strength"]].values.tolist())) == [
        (False, 0.0), (False, 1.0), (True, 0.0), (True, 1.0)]
    assert set(table["layer"]) == {"block2.0"} and set(table["units"]) == {32}  # 16·k·2 channels in stage 2
    assert np.isfinite(table[["original_test_acc", "rotated_test_loss", "retrained_test_loss"]].to_numpy()).all()
    relu_t0 = table[(~table["linear"]) & (table["strength"] == 0.0)].iloc[0]
    assert relu_t0["rotated_test_acc"] == relu_t0["original_test_acc"]  # R = I changes nothing


# --- work shared between rotation tests (rotation_job): prefix cache, original, R = I -----------

from convergent.weights.rotation import Above, prefix, retrain  # noqa: E402


@pytest.mark.parametrize("arch,opts,width,layer", [("wrn", {"depth": 10}, 1, "block3.0"),
                                                    ("resnet18", {}, 2, "stem"),
                                                    ("cnn", {"depth": 3, "batchnorm": True}, 4, "conv3")])
def test_cached_prefix_gives_the_uncached_result(arch, opts, width, layer, digits):
    """Retraining on the frozen prefix's cached outputs is the same computation as from the
    images (up to rounding); the original and R = I rows reuse what they may."""
    torch.manual_seed(0)
    model = build_model(arch, width, digits.input_shape, digits.num_classes, opts)
    R = rotation_path(rotation_site_units(model, layer), 1.0, 0)
    cfg = {"batch_size": 128}
    plain = rotation_test(model, digits, layer, R, 1, 0.05, 0, cfg=cfg)
    cache = prefix(model, digits, layer, 64, limit_bytes=None)
    assert cache.start == model.layer_index(layer)
    if cache.start:
        assert cache.x_train.shape[0] == len(digits.y_train) and cache.x_train.shape[1:] != digits.x_train.shape[1:]
    cached = rotation_test(model, digits, layer, R, 1, 0.05, 0, cfg=cfg, cache=cache, eval_batch_size=64)
    for key in ("original_test_loss", "rotated_test_loss", "retrained_test_loss"):
        assert cached[key] == pytest.approx(plain[key], rel=1e-4), key
    for key in ("original_test_acc", "rotated_test_acc", "retrained_test_acc", "retrained_train_acc"):
        assert abs(cached[key] - plain[key]) <= 2 / len(digits.y_test), key
    # a prefix over the memory limit falls back to the images
    assert prefix(model, digits, layer, 64, limit_bytes=1).start == 0
    # a given original is used as is; R = I reuses it for the rotated network
    row = rotation_test(model, digits, layer, np.eye(len(R)), 1, 0.05, 0, cfg=cfg, original=(9.0, 0.5))
    assert (row["original_test_loss"], row["rotated_test_loss"], row["rotated_test_acc"]) == (9.0, 9.0, 0.5)


@pytest.mark.parametrize("arch,opts,width", [("wrn", {"depth": 10}, 1), ("resnet18", {}, 2),
                                              ("cnn", {"depth": 3, "batchnorm": True}, 4)])
def test_prefix_carried_on_from_the_layer_below_equals_the_prefix_from_the_images(arch, opts, width, digits):
    """The rotation job walks its layers in depth order and carries each frozen prefix on from the
    one before (each lower layer's output computed once): the same numbers as from the images."""
    from convergent.nets.archspec import rotation_layers

    torch.manual_seed(0)
    model = build_model(arch, width, digits.input_shape, digits.num_classes, opts)
    previous = None
    starts = []
    for layer in rotation_layers(arch, opts, "all"):
        carried = prefix(model, digits, layer, 64, limit_bytes=None, previous=previous)
        fresh = prefix(model, digits, layer, 64, limit_bytes=None)
        assert carried.start == fresh.start == model.layer_index(layer)
        assert torch.equal(carried.x_train, fresh.x_train) and torch.equal(carried.x_test, fresh.x_test), layer
        starts.append(carried.start)
        previous = carried
    assert len(set(starts)) > 1
    # and it is really carried on: a tampered previous prefix shows in the next one
    from convergent.weights.rotation import Prefix
    first, last = rotation_layers(arch, opts, "all")[-2:]
    below = prefix(model, digits, first, 64, limit_bytes=None)
    tampered = Prefix(below.start, torch.zeros_like(below.x_train), torch.zeros_like(below.x_test))
    assert not torch.equal(prefix(model, digits, last, 64, limit_bytes=None, previous=tampered).x_test,
                           prefix(model, digits, last, 64, limit_bytes=None).x_test)
    # a previous prefix above the layer is not used (it cannot be carried backwards)
    top, bottom = rotation_layers(arch, opts, "all")[-1], rotation_layers(arch, opts, "all")[0]
    above = prefix(model, digits, top, 64, limit_bytes=None)
    again = prefix(model, digits, bottom, 64, limit_bytes=None, previous=above)
    assert again.start == model.layer_index(bottom)
    assert torch.equal(again.x_test, prefix(model, digits, bottom, 64, limit_bytes=None).x_test)


def rotation_site_units(model, layer):
    from convergent.weights.rotation import rotation_site

    return rotation_site(model, layer).units


def test_retrain_is_train_without_its_evaluations(digits, tmp_path):
    """retrain() makes the same updates as convergent.nets.train.train (same optimiser, schedule,
    batch order): the weights agree to rounding, so leaving out train()'s passes changes nothing."""
    set_determinism(0)
    a = build_model("cnn", 4, digits.input_shape, digits.num_classes, {"depth": 2, "batchnorm": True})
    b = build_model("cnn", 4, digits.input_shape, digits.num_classes, {"depth": 2, "batchnorm": True})
    b.load_state_dict(a.state_dict())
    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.05)
    train(a, digits, cfg, seed=3, frozen_k=1, log_path=tmp_path / "l.csv", log=lambda s: None)
    retrain(b, Above(b, 0), digits.x_train, digits.y_train, cfg, seed=3, frozen_k=1)
    moved = 0
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(va, vb, rtol=1e-5, atol=1e-6, msg=k)
    before = build_model("cnn", 4, digits.input_shape, digits.num_classes, {"depth": 2, "batchnorm": True})
    moved = sum(not torch.equal(v, before.state_dict()[k]) for k, v in b.state_dict().items()
                if k.startswith("layers.1") and k.endswith("weight"))
    assert moved  # not vacuous: the trainable layer did change


def test_diagnostics_on_a_subset_leave_the_result_alone(digits):
    """``diagnostic_samples`` puts the rotated network's test pass and the retrained train pass on
    seeded subsets; the retrained test metrics (the test's result) are unchanged, the counts are
    reported, and the subset's numbers are the plain metrics of those images."""
    import torch.nn.functional as F

    from convergent.weights.evaluation import subset_indices

    torch.manual_seed(0)
    model = build_model("mlp", 16, digits.input_shape, digits.num_classes, {"depth": 2})
    R, seed = random_rotation(16, 3), 5
    whole = rotation_test(model, digits, "fc1", R, 1, 0.05, seed, cfg={"batch_size": 128})
    part = rotation_test(model, digits, "fc1", R, 1, 0.05, seed, cfg={"batch_size": 128}, diagnostic_samples=100)
    every = rotation_test(model, digits, "fc1", R, 1, 0.05, seed, cfg={"batch_size": 128}, diagnostic_samples=10_000)
    n_test, n_train = len(digits.y_test), len(digits.y_train)
    assert (whole["rotated_test_images"], whole["retrained_train_images"]) == (n_test, n_train)
    assert (part["rotated_test_images"], part["retrained_train_images"]) == (100, 100)
    assert every == whole   # a subset as large as the split is the split
    for key in ("original_test_acc", "original_test_loss", "retrained_test_acc", "retrained_test_loss"):
        assert part[key] == whole[key], key
    assert part["rotated_test_acc"] != whole["rotated_test_acc"] or part["rotated_test_loss"] != whole["rotated_test_loss"]
    # R = I: the rotated network is the original, whose metrics are over every test image
    same = rotation_test(model, digits, "fc1", np.eye(16), 1, 0.05, seed, cfg={"batch_size": 128},
                         diagnostic_samples=100)
    assert (same["rotated_test_images"], same["retrained_train_images"]) == (n_test, 100)
    assert same["rotated_test_acc"] == same["original_test_acc"]
    # the rotated network's metrics on exactly the seeded test images, computed directly
    idx = torch.as_tensor(subset_indices(n_test, 100, [seed, 0]))
    net = insert_rotation(model, "fc1", R).eval()
    with torch.no_grad():
        logits = net(digits.x_test[idx])
    assert part["rotated_test_acc"] == pytest.approx((logits.argmax(1) == digits.y_test[idx]).double().mean().item())
    assert part["rotated_test_loss"] == pytest.approx(F.cross_entropy(logits, digits.y_test[idx]).item(), rel=1e-5)
