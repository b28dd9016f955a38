"""Training: learns, deterministic to the byte, resumable, frozen layers stay bit-identical."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from convergent.nets.data import DatasetSplits, load_dataset
from convergent.nets.train import (LOG_COLUMNS, TrainConfig, evaluate, init_model, load_state, lr_at,
                              save_state, set_determinism, train)

QUIET = lambda msg: None  # noqa: E731


@pytest.fixture(scope="module")
def digits() -> DatasetSplits:
    return load_dataset("digits")


@pytest.fixture(scope="module")
def tiny(digits) -> DatasetSplits:
    """300 training and 100 test digits: enough for every property but learning."""
    return load_dataset("digits", max_train=300, max_test=100)


def _run(data, arch, width, opts, seed, cfg, tmp: Path, tag: str, frozen_k=0, reference=None,
         resume=True, log=QUIET):
    set_determinism(seed, 1)
    model = init_model(arch, width, data, opts, seed, frozen_k=frozen_k, reference_state=reference)
    metrics = train(model, data, cfg, seed, frozen_k, tmp / f"{tag}.csv",
                    tmp / f"{tag}.resume.pt" if resume else None, log=log)
    return model, metrics


def test_tiny_mlp_learns_digits(digits, tmp_path):
    cfg = TrainConfig(epochs=8, batch_size=64, lr=0.05)
    model, m = _run(digits, "mlp", 32, {"depth": 2}, 0, cfg, tmp_path, "mlp")
    assert m["test_acc"] > 0.9 and m["train_acc"] > 0.9  # chance is 0.1
    assert m["epochs"] == 8 and m["n_params"] == m["n_trainable"] > 0
    assert m["resumed_from_epoch"] == 0 and m["frozen_k"] == 0 and m["device"] == "cpu"
    assert (m["test_loss"], m["test_acc"]) == evaluate(model, digits.x_test, digits.y_test, cfg.eval_batch_size)
    # another batching sums the float32 per-batch losses in another order: equal to rounding only
    loss, acc = evaluate(model, digits.x_test, digits.y_test, 100)
    assert acc == m["test_acc"] and loss == pytest.approx(m["test_loss"], rel=1e-6)
    with open(tmp_path / "mlp.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == LOG_COLUMNS
    assert [int(r["epoch"]) for r in rows] == list(range(1, 9))
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert not (tmp_path / "mlp.resume.pt").exists()  # removed once training completed


@pytest.mark.parametrize("arch,opts", [("mlp", {"depth": 2}), ("cnn", {"depth": 3})])
def test_training_is_byte_deterministic(tiny, tmp_path, arch, opts):
    cfg = TrainConfig(epochs=2, batch_size=32)
    paths = []
    for i, seed in enumerate((5, 5, 6)):
        model, _ = _run(tiny, arch, 4, opts, seed, cfg, tmp_path, f"run{i}")
        paths.append(save_state(model, tmp_path / f"run{i}.pt"))
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()


@pytest.mark.parametrize("optimizer,schedule", [("sgd", "cosine"), ("adam", "step")])
def test_resume_equals_uninterrupted(tiny, tmp_path, optimizer, schedule):
    cfg = TrainConfig(epochs=3, batch_size=32, optimizer=optimizer, schedule=schedule,
                      lr=0.01 if optimizer == "adam" else 0.05)
    opts = {"depth": 3}  # cnn with BatchNorm: running statistics must resume too
    full, _ = _run(tiny, "cnn", 4, opts, 1, cfg, tmp_path, "full")

    class Interrupt(Exception):
        pass

    def die_after_epoch_2(msg: str) -> None:
        if msg.startswith("epoch 2/"):
            raise Interrupt  # the checkpoint of epoch 2 is already on disk

    with pytest.raises(Interrupt):
        _run(tiny, "cnn", 4, opts, 1, cfg, tmp_path, "part", log=die_after_epoch_2)
    assert (tmp_path / "part.resume.pt").exists()
    messages = []
    resumed, metrics = _run(tiny, "cnn", 4, opts, 1, cfg, tmp_path, "part", log=messages.append)
    assert metrics["resumed_from_epoch"] == 2 and any("resuming" in m for m in messages)
    a, b = save_state(full, tmp_path / "a.pt"), save_state(resumed, tmp_path / "b.pt")
    assert a.read_bytes() == b.read_bytes()
    with open(tmp_path / "part.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2, 3]


def test_foreign_resume_checkpoint_is_ignored(tiny, tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=64)

    def stop(msg):
        if msg.startswith("epoch 1/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(tiny, "mlp", 4, None, 0, cfg, tmp_path, "x", log=stop)
    messages = []
    _, m = _run(tiny, "mlp", 4, None, 1, cfg, tmp_path, "x", log=messages.append)  # other seed
    assert m["resumed_from_epoch"] == 0 and any("different run" in s for s in messages)


@pytest.mark.parametrize("arch,width,opts,k", [
    ("cnn", 4, {"depth": 3, "batchnorm": True}, 1),
    ("cnn", 4, {"depth": 3, "batchnorm": True}, 3),  # every layer frozen: only the head trains
    ("mlp", 8, {"depth": 3}, 2),
    ("resnet18", 2, {}, 2),
    ("wrn", 1, {"depth": 10}, 4),  # every layer frozen: only the head's BN and Linear train
])
def test_frozen_layers_stay_bit_identical(tiny, tmp_path, arch, width, opts, k):
    cfg = TrainConfig(epochs=2, batch_size=64)
    ref, _ = _run(tiny, arch, width, opts, 0, cfg, tmp_path, "ref")
    ref_state = {key: v.clone() for key, v in ref.state_dict().items()}
    model, m = _run(tiny, arch, width, opts, 3, cfg, tmp_path, "frozen", frozen_k=k, reference=ref_state)
    assert m["n_trainable"] < m["n_params"] and m["frozen_k"] == k
    state = model.state_dict()
    keys = model.state_keys_of_first(k)
    assert any("running" in key for key in keys) or arch == "mlp"
    for key in keys:  # weights, biases, BN running stats and num_batches_tracked
        assert torch.equal(state[key], ref_state[key]), key
    # the rest did train away from the reference and from its own initialisation
    rest = [key for key in state if key not in keys and key.endswith("weight")]
    assert rest and any(not torch.equal(state[key], ref_state[key]) for key in rest)


def test_frozen_reference_from_file(tiny, tmp_path):
    ref = init_model("mlp", 4, tiny, None, seed=0)
    path = save_state(ref, tmp_path / "ref.pt")
    model = init_model("mlp", 4, tiny, None, seed=1, frozen_k=1, reference_state=path)
    assert torch.equal(model.layers[0].linear.weight, ref.layers[0].linear.weight)
    assert not torch.equal(model.layers[1].linear.weight, ref.layers[1].linear.weight)
    with pytest.raises(ValueError, match="reference_state"):
        init_model("mlp", 4, tiny, None, seed=1, frozen_k=1)


def test_init_is_seeded_and_independent_of_frozen_k(tiny):
    a = init_model("mlp", 4, tiny, None, seed=7)
    b = init_model("mlp", 4, tiny, None, seed=7)
    c = init_model("mlp", 4, tiny, None, seed=8, frozen_k=1, reference_state=a.state_dict())
    d = init_model("mlp", 4, tiny, None, seed=8)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert torch.equal(c.layers[2].linear.weight, d.layers[2].linear.weight)


def test_save_and_load_state(tmp_path):
    model = torch.nn.Linear(3, 2)
    path = save_state(model, tmp_path / "sub" / "m.pt")
    # no temp file left behind; the digest recorded beside it (sha256sum -c format)
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.pt", "m.pt.sha256"]
    state = load_state(path)
    assert set(state) == {"weight", "bias"} and torch.equal(state["weight"], model.weight.detach())


def test_schedules_and_config():
    cosine = TrainConfig(epochs=4, lr=1.0, schedule="cosine")
    assert [round(lr_at(cosine, e), 6) for e in range(4)] == [1.0, 0.853553, 0.5, 0.146447]
    step = TrainConfig(epochs=8, lr=1.0, schedule="step")
    assert [lr_at(step, e) for e in range(8)] == [1.0] * 4 + [0.1] * 2 + [pytest.approx(0.01)] * 2
    assert lr_at(TrainConfig(schedule="constant", lr=0.3), 10) == 0.3
    cfg = TrainConfig.from_dict({"epochs": 2, "optimizer": "adam"}, device="cpu")
    assert cfg.epochs == 2 and cfg.optimizer == "adam"
    with pytest.raises(ValueError, match="unknown training keys"):
        TrainConfig.from_dict({"epoch": 2})
    with pytest.raises(ValueError):
        TrainConfig(optimizer="rmsprop")


def test_set_determinism():
    set_determinism(3, threads=1)
    assert torch.are_deterministic_algorithms_enabled() and torch.get_num_threads() == 1
    a = torch.rand(3)
    set_determinism(3, threads=1)
    assert torch.equal(a, torch.rand(3))
