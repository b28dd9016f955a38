"""NCHW against channels_last for the conv networks on CPU: eval and training CPU seconds per image.

One thread, deterministic algorithms on (as every job runs, ``set_determinism``),
``time.process_time``; random 3 × 32 × 32 inputs. Per architecture and layout, in a process of
its own (so a crash of one layout is reported, not fatal to the rest): a warm-up of both
passes, then ``--repeats`` rounds of an eval-mode pass in batches of ``--eval-batch`` and a
training pass (forward, backward, SGD step with lr 0, so the weights stay put) in batches of
``--train-batch``; the best round is reported. The eval logits of the two layouts are compared
(float32: they differ by rounding only).

Measured here (torch 2.14.1, AMD EPYC, one thread) it showed two things the first version of this
script (no warm-up, one process) hid: the warm gain on WRN-10-4 is 1.1–1.2×, not 1.3–1.45×, and
resnet18's channels_last *training* pass dies in the allocator (``free(): invalid next size``, with
or without deterministic algorithms), so the layout is not used by the pipeline. Run:

    .venv/bin/python bench/bench_memory_format.py [--archs wrn resnet18 cnn] [--images 256]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
#: each architecture's options at the paper shape, from the sweep that times it (bench_weights_cost.py)
OPTIONS = yaml.safe_load((REPO / "bench" / "paper_shaped.yaml").read_text())["sweep"]["model"]


def measure(arch: str, layout: str, width: int, images: int, eval_batch: int, train_batch: int,
            repeats: int) -> dict:
    """One (arch, layout) in this process: best CPU ms per image of each pass, and the logits."""
    import torch

    sys.path.insert(0, str(REPO))
    from convergent.nets.models import build_model

    torch._C._set_deterministic_algorithms(True)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    model = build_model(arch, width, (3, 32, 32), 10, OPTIONS.get(arch, {})).to(memory_format=fmt)
    x = torch.randn(images, 3, 32, 32).contiguous(memory_format=fmt)
    y = torch.zeros(images, dtype=torch.long)
    opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9, weight_decay=5e-4)

    def evaluate(n: int) -> torch.Tensor:
        model.eval()
        with torch.no_grad():
            return torch.cat([model(x[s:s + eval_batch]) for s in range(0, n, eval_batch)])

    def train(n: int) -> None:
        model.train()
        for s in range(0, n, train_batch):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[s:s + train_batch]), y[s:s + train_batch]).backward()
            opt.step()

    evaluate(2 * eval_batch), train(2 * train_batch)   # warm-up: allocator, oneDNN primitives
    best_eval = best_train = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        logits = evaluate(images)
        best_eval = min(best_eval, time.process_time() - t0)
        t0 = time.process_time()
        train(images)
        best_train = min(best_train, time.process_time() - t0)
    return {"eval_ms": 1000 * best_eval / images, "train_ms": 1000 * best_train / images,
            "logits": logits.tolist()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", nargs="*", default=list(OPTIONS))
    ap.add_argument("--width", type=int, default=4)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--eval-batch", type=int, default=32)
    ap.add_argument("--train-batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--one", nargs=2, metavar=("ARCH", "LAYOUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(*args.one, args.width, args.images, args.eval_batch, args.train_batch,
                                 args.repeats)))
        return
    import numpy as np

    for arch in args.archs:
        out = {}
        for layout in ("nchw", "channels_last"):
            cmd = [sys.executable, __file__, "--one", arch, layout] + [
                f"--{k}={v}" for k, v in (("width", args.width), ("images", args.images),
                                          ("eval-batch", args.eval_batch), ("train-batch", args.train_batch),
                                          ("repeats", args.repeats))]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                tail = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
                print(f"{arch} {layout}: FAILED (exit {proc.returncode}): {tail}", flush=True)
                continue
            out[layout] = json.loads(proc.stdout.strip().splitlines()[-1])
            r = out[layout]
            print(f"{arch} {layout}: eval {r['eval_ms']:.2f} ms/image, train {r['train_ms']:.2f} ms/image", flush=True)
        if len(out) == 2:
            a, b = out["nchw"], out["channels_last"]
            diff = np.abs(np.asarray(a["logits"]) - np.asarray(b["logits"])).max()
            print(f"{arch}: channels_last speed-up eval {a['eval_ms'] / b['eval_ms']:.2f}x, "
                  f"train {a['train_ms'] / b['train_ms']:.2f}x; max |logit difference| {diff:.1e}", flush=True)


if __name__ == "__main__":
    main()
