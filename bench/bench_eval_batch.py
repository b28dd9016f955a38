"""Eval-mode CPU cost per image against the batch size, and what ``auto_batch_size`` picks.

LMC and the rotation test are mostly eval-mode passes (README "What LMC and the rotation test
cost"), and on a CPU their cost per image depends on the batch size through the caches:
:func:`convergent.weights.evaluation.auto_batch_size` picks the largest power of two whose largest
activation fits a byte budget. This measures, per architecture at the paper shape (3 × 32 × 32,
width 4, one thread, deterministic algorithms, ``time.process_time``), the CPU ms per image of
every batch size in ``--batches``, interleaved over ``--repeats`` rounds so that a slow spell of
a shared machine hits every size alike, best round reported; then the size the budget picks and
its cost relative to the cheapest size measured (1.00: the budget picks the best). The outputs
are per image, so only speed depends on the batch size (rounding aside). Run:

    .venv/bin/python bench/bench_eval_batch.py [--archs wrn resnet18 cnn] [--batches 4 8 16 32 64 128 256 512]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
#: each architecture's options at the paper shape, from the sweep that times it (bench_weights_cost.py)
OPTIONS = yaml.safe_load((REPO / "bench" / "paper_shaped.yaml").read_text())["sweep"]["model"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", nargs="*", default=list(OPTIONS))
    ap.add_argument("--width", type=int, default=4)
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--batches", nargs="*", type=int, default=[4, 8, 16, 32, 64, 128, 256, 512])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import torch

    from convergent.nets.models import build_model
    from convergent.weights.evaluation import CPU_BATCH_BUDGET, auto_batch_size

    torch._C._set_deterministic_algorithms(True)
    torch.set_num_threads(1)
    for arch in args.archs:
        torch.manual_seed(0)
        model = build_model(arch, args.width, (3, 32, 32), 10, OPTIONS.get(arch, {})).eval()
        x = torch.randn(args.images, 3, 32, 32)
        best = {b: float("inf") for b in args.batches}
        with torch.no_grad():
            for b in args.batches:
                model(x[:b])   # warm-up
            for _ in range(args.repeats):
                for b in args.batches:
                    t0 = time.process_time()
                    for s in range(0, args.images, b):
                        model(x[s:s + b])
                    best[b] = min(best[b], 1000 * (time.process_time() - t0) / args.images)
        auto = auto_batch_size(model, (3, 32, 32))
        cheapest = min(best, key=best.get)
        auto_ms = best.get(auto)
        line = "  ".join(f"{b}: {ms:.2f}" for b, ms in best.items())
        rel = f"{auto_ms / best[cheapest]:.2f}× the cheapest ({cheapest})" if auto_ms else "not measured"
        print(f"{arch} ms/image  {line}\n  auto ({CPU_BATCH_BUDGET >> 20} MiB budget) = {auto}: {rel}", flush=True)


if __name__ == "__main__":
    main()
