"""What the paper presets cost on CPU: per-image CPU seconds at CIFAR shape, times the job counts.

For every (architecture, width, options) used by configs/*.yaml this measures, on shapes32
images (3 × 32 × 32, 10 classes: CIFAR-10's shape), with one torch thread:

* ``train_img``: CPU seconds per training image (forward + backward + SGD step, the project's
  own training loop, ``--train-images`` images in batches of the preset's batch size);
* ``eval_img``: CPU seconds per image of an eval-mode forward pass (``evaluate``);
* ``extract_img``: CPU seconds per image and network state of the extract stage
  (``extract_to_store``: forward with hooks + writing every layer to a Zarr store, lz4).

and extrapolates linearly in the number of images (the per-image cost of a conv net does not
depend on how many images there are; measured on a few hundred, stated as such) to a job:

* train job = epochs × (n_train × train_img + n_test × eval_img) + (n_train + n_test) × eval_img
  (every epoch ends with a test pass, the job with a final pass over both splits);
* extract job = 2 states × n_extract × extract_img;
* lmc job (:func:`lmc_images`): the images pushed through a network by one cross pair with the
  preset's ``lmc`` settings (:class:`convergent.settings.LMCSettings`) — per variant, every
  evaluated α (the coarse grid plus one refined bracket, :func:`evaluated_alphas`) that is not an
  endpoint over the evaluated train + test images; the endpoints once per treatment; one
  calibration pass over the calibration images per α of a BatchNorm-reset variant and per interior
  α (+ 2 endpoint-statistics passes) of a REPAIR variant; activation matching ≈ 2 passes over the
  training split — times ``eval_auto_img`` (an eval pass in the batch size the LMC job picks);
  a data-order pair (the presets turn the control on) adds the naive variant's share alone;
* rotation job ≈ layers × strengths × 2 × (retrain_epochs × n_train × train_img + (d_train + n_test +
  d_test) × eval_auto_img) (d: the diagnostics' subsets, ``rotation.diagnostic_samples``)
  + layers × 2 × (n_train + n_test) × eval_auto_img (the frozen prefixes, counted as if each ran
  the whole network; they are carried on from layer to layer) + epochs × n_train × train_img (the
  linear control); retraining only the layers above R is cheaper than a full training step, so
  this is an upper bound.

Job counts come from the real dry run of each preset (snakemake -n through the API). Moments
and measures are not extrapolated here (their cost is n·d² per view, see bench_moments.py).
Run: ``PYTHONPATH=. python bench/bench_presets.py [--train-images 128] [--out bench_presets.json]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PRESETS = ("brown", "brown-small", "li", "li-small", "kornblith", "kornblith-small")
CIFAR = {"n_train": 50_000, "n_test": 10_000}


def cpu_seconds(fn) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def measure(arch: str, width: int, options: dict, batch_size: int, n_train: int, n_eval: int) -> dict:
    """Per-image CPU seconds of one architecture at CIFAR shape (see module docstring)."""
    import torch

    from convergent.nets.data import load_dataset
    from convergent.nets.extract import extract_to_store
    from convergent.nets.train import TrainConfig, _train_epoch, evaluate, init_model, make_optimizer, set_determinism
    from convergent.weights.evaluation import auto_batch_size

    data = load_dataset("shapes32", options={"n_train": max(n_train, 100), "n_test": max(n_eval, 100)})
    set_determinism(0, 1)
    model = init_model(arch, width, data, options, seed=0)
    cfg = TrainConfig(epochs=1, batch_size=batch_size)
    opt = make_optimizer(model, cfg)
    gen = torch.Generator().manual_seed(0)
    x, y = data.x_train[:n_train], data.y_train[:n_train]
    model.train()
    _train_epoch(model, opt, x[:batch_size], y[:batch_size], batch_size, gen)   # warm-up (allocations)
    train_s = cpu_seconds(lambda: _train_epoch(model, opt, x, y, batch_size, gen))
    xe, ye = data.x_test[:n_eval], data.y_test[:n_eval]
    evaluate(model, xe[:64], ye[:64], 1024)
    eval_s = cpu_seconds(lambda: evaluate(model, xe, ye, 1024))
    auto = auto_batch_size(model, tuple(model.input_shape))
    eval_auto_s = cpu_seconds(lambda: evaluate(model, xe, ye, auto))
    with tempfile.TemporaryDirectory() as tmp:
        model.eval()
        with torch.no_grad():
            extract_s = cpu_seconds(lambda: extract_to_store(model, xe, ye, model.layer_names, Path(tmp) / "s.zarr",
                                                             chunk_rows=256, attrs={}, compression="lz4"))
    params = sum(p.numel() for p in model.parameters())
    return {"arch": arch, "width": width, "options": options, "params": params,
            "train_img": train_s / n_train, "eval_img": eval_s / n_eval, "extract_img": extract_s / n_eval,
            "eval_auto_img": eval_auto_s / n_eval, "eval_auto_batch": auto,
            "layers": len(model.layer_names)}


def evaluated_alphas(alphas: int, coarse: int | None) -> int:
    """α points an LMC variant evaluates: the coarse grid and the bracket refined around a
    single hump at α = 0.5 (the typical curve; several humps in different brackets add more)."""
    import numpy as np

    from convergent.weights.lmc import coarse_grid, refine_grid

    grid = np.linspace(0, 1, alphas)
    done = coarse_grid(alphas, coarse)
    hump = np.exp(-((grid - 0.5) / 0.2) ** 2)
    return len(done) + len(refine_grid(grid, done, {"f": hump[done]}))


def lmc_images(lmc: dict, n_train: int, n_test: int) -> float:
    """Images one cross pair's LMC pushes through a network (see the module docstring)."""
    from convergent.settings import LMCSettings
    from convergent.weights.lmc import _parse

    p = LMCSettings.coerce(lmc).as_dict()
    n_alpha = evaluated_alphas(int(p["alphas"]), p["coarse_alphas"])
    n_tr = min(p["train_samples"] or n_train, n_train)
    n_te = min(p["test_samples"] or n_test, n_test)
    n_cal = min(p["calib_samples"] or n_train, n_train)
    evals = calib = 0
    treats = set()
    for variant in p["variants"]:
        method, treat = _parse(variant)
        treats.add(treat == "bn_reset")
        evals += n_alpha - 2
        if treat == "bn_reset":
            calib += n_alpha - 2
        elif treat == "repair":
            calib += n_alpha - 2 + 2
    evals += 2 * len(treats)               # the endpoints, once per treatment
    calib += 2 if True in treats else 0    # BatchNorm reset of the endpoints
    matching = 2 * n_train if any("activation" in v for v in p["variants"]) else 0
    return evals * (n_tr + n_te) + calib * n_cal + matching


def job_counts() -> dict[str, dict[str, int]]:
    import sys

    sys.path.insert(0, str(REPO))
    from tests.workflow import dry_run_counts

    with tempfile.TemporaryDirectory() as tmp:
        return dry_run_counts({p: yaml.safe_load((REPO / "configs" / f"{p}.yaml").read_text()) for p in PRESETS},
                              Path(tmp))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-images", type=int, default=128, help="images per training measurement")
    ap.add_argument("--eval-images", type=int, default=256, help="images per eval/extract measurement")
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    args = ap.parse_args()

    from convergent.config import load_sweep

    counts = job_counts()
    cache: dict[str, dict] = {}
    report = {}
    for preset in PRESETS:
        config = yaml.safe_load((REPO / "configs" / f"{preset}.yaml").read_text())
        sweep = load_sweep(config)   # fills the schema's defaults into config too
        sizes = dict(CIFAR) if config["sweep"]["datasets"] == ["cifar10"] else dict(config["data"]["shapes32"])
        rows, totals = [], {"train": 0.0, "extract": 0.0, "lmc": 0.0, "rotation": 0.0}
        for exp in sweep.experiments:
            tr = exp.training.as_dict()
            n_extract = min(exp.extract.max_samples or 10**9,
                            sizes["n_test"] if exp.extract.split == "test" else sizes["n_train"])
            for width in exp.widths:
                key = json.dumps([exp.arch, width, exp.model, tr.get("batch_size", 64)], sort_keys=True)
                if key not in cache:
                    cache[key] = measure(exp.arch, width, exp.model, int(tr.get("batch_size", 64)),
                                         args.train_images, args.eval_images)
                    print(json.dumps(cache[key]), flush=True)
                m = cache[key]
                epochs = int(tr["epochs"])
                train_job = (epochs * (sizes["n_train"] * m["train_img"] + sizes["n_test"] * m["eval_img"])
                             + (sizes["n_train"] + sizes["n_test"]) * m["eval_img"])
                extract_job = 2 * n_extract * m["extract_img"]
                runs = sum(1 for r in sweep.runs() if (r.arch, r.width) == (exp.arch, width))
                cross = sum(1 for p in sweep.pairs() if (p.arch, p.width, p.control) == (exp.arch, width, "cross"))
                order = sum(1 for p in sweep.pairs() if (p.arch, p.width, p.control) == (exp.arch, width, "data_order"))
                lmc_job = lmc_order = rot_job = 0.0
                if config["lmc"]["enabled"]:
                    lmc_job = lmc_images(config["lmc"], sizes["n_train"], sizes["n_test"]) * m["eval_auto_img"]
                    # a data-order pair's LMC runs the naive variant only
                    lmc_order = lmc_images({**config["lmc"], "variants": ["naive"]}, sizes["n_train"],
                                           sizes["n_test"]) * m["eval_auto_img"]
                if config["rotation"]["enabled"]:
                    rot = config["rotation"]
                    n_layers = m["layers"] if rot["layers"] == "all" else len(rot["layers"])
                    n_tr, n_te = sizes["n_train"], sizes["n_test"]
                    n_rows = n_layers * len(rot["strengths"]) * 2
                    diag = rot["diagnostic_samples"]
                    d_tr, d_te = (n_tr, n_te) if diag is None else (min(diag, n_tr), min(diag, n_te))
                    rot_job = (n_rows * (int(rot["retrain_epochs"]) * n_tr * m["train_img"] + (d_tr + n_te + d_te)
                                      * m["eval_auto_img"])
                               + n_layers * 2 * (n_tr + n_te) * m["eval_auto_img"] + epochs * n_tr * m["train_img"])
                rows.append({"arch": exp.arch, "width": width, "runs": runs, "cross_pairs": cross,
                             "data_order_pairs": order, "lmc_data_order_job_s": round(lmc_order),
                             "train_epoch_s": round(sizes["n_train"] * m["train_img"], 1),
                             "train_job_s": round(train_job), "extract_job_s": round(extract_job),
                             "lmc_job_s": round(lmc_job), "rotation_job_s": round(rot_job)})
                totals["train"] += runs * train_job
                totals["extract"] += runs * extract_job
                totals["lmc"] += cross * lmc_job + order * lmc_order
                totals["rotation"] += (1 if config["rotation"]["enabled"] else 0) * rot_job
        report[preset] = {"sizes": sizes, "jobs": counts[preset], "per_width": rows,
                          "cpu_hours": {k: round(v / 3600, 2) for k, v in totals.items()}}
        print(preset, json.dumps(report[preset]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"measured": list(cache.values()), "presets": report}, indent=1))


if __name__ == "__main__":
    main()
