"""Cost of one pair's full linear-mode-connectivity analysis, relative to one evaluation.

For each (arch, width): train two seeds briefly on digits, time one eval-mode pass of a
single network over train+test (median of 5), then :func:`lmc_pair` with every variant
on 11 α, and print the ratio plus a per-component breakdown. Run:

    .venv/bin/python bench/bench_lmc.py [--epochs 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from convergent.nets.data import load_dataset
from convergent.nets.models import build_model
from convergent.nets.train import TrainConfig, evaluate, set_determinism, train
from convergent.weights.lmc import VARIANTS, default_alphas, lmc_pair

CASES = [("mlp", {"depth": 3}, 128), ("cnn", {"depth": 4, "batchnorm": False}, 16),
         ("cnn", {"depth": 4, "batchnorm": True}, 16)]


def eval_pass(model, data, batch_size: int) -> float:
    t0 = time.perf_counter()
    for split in ("train", "test"):
        evaluate(model, *data.split(split), batch_size)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=1024)
    args = ap.parse_args()
    data = load_dataset("digits")
    alphas = default_alphas(11)
    print(f"digits n_train={data.n_train} n_test={data.n_test}, 11 α, variants: {', '.join(VARIANTS)}")
    print(f"{'arch':<22}{'eval s':>9}{'LMC s':>9}{'ratio':>8}  breakdown (s)")
    for arch, opts, width in CASES:
        states = []
        with tempfile.TemporaryDirectory() as tmp:
            for seed in (0, 1):
                set_determinism(seed, threads=args.threads)
                model = build_model(arch, width, data.input_shape, data.num_classes, opts)
                train(model, data, TrainConfig(epochs=args.epochs), seed=seed, frozen_k=0,
                      log_path=Path(tmp) / f"{seed}.csv", log=lambda s: None)
                states.append({k: v.clone() for k, v in model.state_dict().items()})
        model.load_state_dict(states[0])
        eval_pass(model, data, args.batch_size)  # warm-up
        t_eval = statistics.median(eval_pass(model, data, args.batch_size) for _ in range(5))
        t0 = time.perf_counter()
        _, bar, timings = lmc_pair(model, states[0], states[1], data, alphas, batch_size=args.batch_size)
        t_lmc = time.perf_counter() - t0
        name = f"{arch}{'-bn' if opts.get('batchnorm') else ''} w{width}"
        brk = " ".join(f"{k}={v:.2f}" for k, v in timings.items())
        print(f"{name:<22}{t_eval:>9.4f}{t_lmc:>9.2f}{t_lmc / t_eval:>8.0f}  {brk}")
        test = bar[(bar.split == "test") & bar.applicable]
        print("    test error barrier: " + ", ".join(
            f"{v}={b:.3f}" for v, b in zip(test.variant, test.error_barrier)))


if __name__ == "__main__":
    main()
