"""No stage hard-codes the CPU; tensors follow the configured device (checked without a GPU).

Two checks that a CPU-only machine can make (bench/gpu_check.py runs the real thing):

* static: every torch-device literal ``"cpu"`` in the package is one of :data:`ALLOWED`,
  each with the reason it must stay the CPU whatever the configured device;
* dynamic: with the network on the ``meta`` device (tensors with shapes and no data), LMC's
  variants and the rotation test's prefix run their forward passes there. The first failure
  must be the copy of a result back to the host — never a device mismatch, which is what a
  tensor left on the CPU would raise.
"""

import ast
import warnings
from pathlib import Path

import pytest

from convergent.nets.data import load_dataset
from convergent.nets.models import build_model

PACKAGE = Path(__file__).resolve().parents[2] / "convergent"
#: (file, source line fragment) → why it is the CPU on every device
ALLOWED = {
    ("nets/train.py", 'device: str = "cpu"'): "TrainConfig's default when no device is configured",
    ("nets/train.py", 'if self.device not in ("cpu", "cuda", "auto")'): "validation of the configured value",
    ("nets/train.py", 'return torch.device("cuda" if torch.cuda.is_available() else "cpu")'): "device: auto",
    ("nets/train.py", 'map_location: str | torch.device = "cpu"'): "states are loaded on the host, then copied "
                                                            "into the model on its device by load_state_dict",
    ("nets/train.py", 'torch.load(path, map_location="cpu"'): "resume checkpoints: the same",
    ("nets/train.py", 'torch.Generator(device="cpu")'): "the batch order comes from a CPU generator so that it is "
                                                   "the same on every device (the permutation is then moved)",
    ("weights/rotation.py", 'torch.Generator(device="cpu")'): "retraining's batch order: as in train.py",
    ("weights/evaluation.py", 'if model_device(model).type != "cpu"'): "auto batch size: big batches off the CPU",
}


def _cpu_literals():
    """(file, line) of every string constant "cpu" in the package's source."""
    for path in sorted(PACKAGE.rglob("*.py")):
        src = path.read_text()
        lines = src.splitlines()
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Constant) and node.value == "cpu":
                yield path.relative_to(PACKAGE).as_posix(), lines[node.lineno - 1].strip()


def test_no_stage_hard_codes_the_cpu():
    found = list(_cpu_literals())
    assert found, "the scan finds nothing: it is broken"
    unexplained = [(f, line) for f, line in found
                   if not any(f == af and frag in line for af, frag in ALLOWED)]
    assert not unexplained, f"torch device 'cpu' hard-coded (add a reason to ALLOWED if it must be): {unexplained}"


ON_DEVICE = ("Cannot copy out of meta tensor", "cannot be called on meta tensors")


def _assert_ran_on_device(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # load_state_dict into meta parameters is a no-op, and says so
        with pytest.raises((NotImplementedError, RuntimeError)) as err:
            fn()
    msg = str(err.value)
    assert "same device" not in msg and any(m in msg for m in ON_DEVICE), msg


@pytest.mark.parametrize("variant", ["naive", "bn_reset", "repair", "permuted_weight"])
def test_lmc_forward_passes_follow_the_model_device(variant):
    from convergent.weights.lmc import lmc_curve

    data = load_dataset("digits", max_train=64, max_test=32)
    model = build_model("cnn", 4, data.input_shape, data.num_classes, {"depth": 2, "batchnorm": True})
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.to("meta")
    _assert_ran_on_device(lambda: lmc_curve(model, state, state, data, [0.0, 0.5, 1.0], variant))


def test_rotation_prefix_and_retraining_follow_the_model_device():
    from convergent.weights.rotation import prefix, rotation_path, rotation_test

    data = load_dataset("digits", max_train=64, max_test=32)
    model = build_model("cnn", 4, data.input_shape, data.num_classes, {"depth": 3, "batchnorm": True})
    model.to("meta")
    cache = prefix(model, data, "conv3", 32, limit_bytes=None)
    assert cache.x_train.device.type == "meta" and cache.start == 2
    _assert_ran_on_device(lambda: rotation_test(model, data, "conv3", rotation_path(8, 1.0, 0), 1, 0.01, 0,
                                                cfg={"batch_size": 32}, cache=cache))


def test_jobs_move_every_network_to_the_configured_device(monkeypatch, tmp_path):
    """rotation_job puts both networks on ``_device(device)``; a stand-in device proves it."""
    import convergent.jobs.weights as jobs   # rotation_job and the _device it calls live there
    import convergent.nets.data
    from convergent.nets.train import init_model, save_state

    data = load_dataset("digits", max_train=64, max_test=32)
    monkeypatch.setattr(convergent.nets.data, "load_dataset", lambda *a, **k: data)
    model = init_model("cnn", 4, data, {"depth": 2, "batchnorm": True}, seed=0)
    save_state(model, tmp_path / "model.pt")
    monkeypatch.setattr(jobs, "_device", lambda requested: "meta")
    settings = {"model": {"depth": 2, "batchnorm": True}, "training": {"epochs": 1, "batch_size": 32}}
    _assert_ran_on_device(lambda: jobs.rotation_job(
        run={"dataset": "digits", "arch": "cnn", "width": 4, "frozen_k": 0, "seed": 0}, settings=settings,
        checkpoint=str(tmp_path / "model.pt"), params={"strengths": [0.0], "retrain_epochs": 1},
        data_dir=str(tmp_path), device="cuda", threads=1, out_csv=str(tmp_path / "rot.csv")))
