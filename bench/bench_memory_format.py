"""NCHW against channels_last for a conv network on CPU: eval and training CPU seconds per image.

One thread, ``time.process_time``; WRN-10-4 (or ``--arch/--width/--depth``) on random
3 × 32 × 32 inputs: an eval-mode pass in batches of ``--eval-batch`` and a training pass
(forward, backward, SGD step with lr 0, so the weights stay put) in batches of
``--train-batch``, each from a copy of the same network. The eval logits of the two layouts
are compared (float32: they differ by rounding only). Run:

    PYTHONPATH=. .venv/bin/python bench/bench_memory_format.py [--images 512]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from convergent.nets.models import build_model


def evaluate(model: torch.nn.Module, x: torch.Tensor, batch: int) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[s:s + batch]) for s in range(0, len(x), batch)])


def train_pass(model: torch.nn.Module, x: torch.Tensor, batch: int) -> None:
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    y = torch.zeros(len(x), dtype=torch.long)
    for s in range(0, len(x), batch):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[s:s + batch]), y[s:s + batch]).backward()
        opt.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="wrn")
    ap.add_argument("--width", type=int, default=4)
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--eval-batch", type=int, default=32)
    ap.add_argument("--train-batch", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    base = build_model(args.arch, args.width, (3, 32, 32), 10, {"depth": args.depth})
    x = torch.randn(args.images, 3, 32, 32)
    logits = {}
    for name, fmt in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
        model, xx = copy.deepcopy(base).to(memory_format=fmt), x.contiguous(memory_format=fmt)
        evaluate(model, xx[:args.eval_batch], args.eval_batch)   # warm-up
        t0 = time.process_time()
        logits[name] = evaluate(model, xx, args.eval_batch)
        t_eval = time.process_time() - t0
        t0 = time.process_time()
        train_pass(model, xx, args.train_batch)
        t_train = time.process_time() - t0
        print(f"{name}: eval {1000 * t_eval / len(x):.2f} ms/image, train {1000 * t_train / len(x):.2f} ms/image",
              flush=True)
    print(f"max |logit difference| {(logits['nchw'] - logits['channels_last']).abs().max().item():.2e}")


if __name__ == "__main__":
    main()
