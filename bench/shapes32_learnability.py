"""shapes32: generation time, and how learnable it is (README, "shapes32").

Measures, on the default size (10,000 / 2,000):

* generation time of :func:`convergent.nets.data.generate_shapes32` (no cache), median of repeats;
* a small CNN (``cnn``, width 16, depth 4, BatchNorm; the sweep's default training settings:
  SGD lr 0.05, momentum 0.9, weight decay 5e-4, batch 64, cosine over ``--epochs``): test
  accuracy after each epoch;
* two linear baselines on the standardised data: multinomial logistic regression
  (scikit-learn, lbfgs) on the three per-channel image means (is the class in the mean
  colour?), and a ridge classifier (closed form, penalty chosen by leave-one-out over a
  grid) on all 3,072 pixels (is the task linearly easy?).

Chance is 10 %. Run: ``PYTHONPATH=. python bench/shapes32_learnability.py [--epochs 3] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3, help="generation-time repeats")
    ap.add_argument("--skip-cnn", action="store_true")
    args = ap.parse_args()

    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression, RidgeClassifierCV

    from convergent.nets.data import generate_shapes32, load_dataset
    from convergent.nets.train import TrainConfig, init_model, set_determinism, train

    times, cpu = [], []
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        generate_shapes32()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    # CPU seconds are the stable number on a shared machine; wall time is what a user waits
    out: dict = {"generate_wall_s_median": round(statistics.median(times), 2),
                 "generate_cpu_s_median": round(statistics.median(cpu), 2),
                 "generate_wall_s": [round(t, 2) for t in times]}
    print(out, flush=True)

    data = load_dataset("shapes32")
    xtr, xte = data.x_train.numpy(), data.x_test.numpy()
    ytr, yte = data.y_train.numpy(), data.y_test.numpy()
    for name, ftr, fte in (("mean_colour", xtr.mean(axis=(2, 3)), xte.mean(axis=(2, 3))),
                           ("pixels", xtr.reshape(len(xtr), -1), xte.reshape(len(xte), -1))):
        t0 = time.perf_counter()
        if name == "mean_colour":
            clf = LogisticRegression(max_iter=1000).fit(ftr, ytr)
        else:  # lbfgs on 3,072 features takes many minutes; the ridge classifier is closed form
            clf = RidgeClassifierCV(alphas=np.logspace(-1, 5, 7)).fit(ftr, ytr)
        out[f"linear_{name}"] = {"train_acc": round(float(clf.score(ftr, ytr)), 4),
                                 "test_acc": round(float(clf.score(fte, yte)), 4),
                                 "seconds": round(time.perf_counter() - t0, 1)}
        if name == "pixels":
            out[f"linear_{name}"]["alpha"] = float(clf.alpha_)
        print(name, out[f"linear_{name}"], flush=True)

    if not args.skip_cnn:
        set_determinism(0, args.threads)
        model = init_model("cnn", args.width, data, {"depth": args.depth, "batchnorm": True}, seed=0)
        cfg = TrainConfig(epochs=args.epochs)  # the sweep's defaults otherwise
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "log.csv"
            metrics = train(model, data, cfg, seed=0, frozen_k=0, log_path=log,
                            log=lambda s: print(s, flush=True))
            rows = pd.read_csv(log)
        out["cnn"] = {"width": args.width, "depth": args.depth, "epochs": args.epochs, "threads": args.threads,
                      "test_acc_per_epoch": [round(float(a), 4) for a in rows["test_acc"]],
                      "seconds_per_epoch": [round(float(s), 1) for s in rows["seconds"]],
                      "final_train_acc": round(float(metrics["train_acc"]), 4)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
