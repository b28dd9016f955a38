"""Each LMC approximation alone against the full computation, on a finished sweep's checkpoints.

For every cross-seed pair of a finished sweep (an export kept by ``bench_weights_cost.py
--keep``, run on ``--config``), :func:`convergent.weights.lmc.lmc_pair` runs with the
config's variants under several :class:`~convergent.weights.lmc.EvalOptions`:

* ``full``: every image, BatchNorm reset / REPAIR on the whole training split, every α;
* ``calib``: only ``calib_samples`` from the defaults; ``train``: only ``train_samples``;
* ``defaults``: the pipeline's defaults (:class:`convergent.settings.LMCSettings` from the config's ``lmc``);
* ``--test-samples M ...``: ``testM`` (only the test split on a seeded subset of M images) and
  ``defaults+testM`` (the defaults and that), what it would take to cut the test split too;
* on a ``--fine`` grid (default 25 α, brown's): ``fine_full`` against ``fine_coarse``
  (``coarse_alphas`` only), since the config's own grid may be too small for it to act.

Per option: CPU seconds (``time.process_time``, one thread: robust to a busy machine) summed
over pairs, and for every (pair, variant, split, loss/error) barrier ``diff = option − full``,
``diff / se`` (the option's barrier SE) and whether ``|diff| ≤ max(se, 0.01)``.
Writes bench/out/lmc_ablation.json.

    .venv/bin/python bench/bench_lmc_ablation.py EXPORT_ROOT [--config bench/paper_shaped.yaml]
        [--fine 25] [--archs cnn resnet18 wrn] [--test-samples 750 500]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]


def compare(option, full) -> list[dict]:
    rows = []
    a = option.set_index(["variant", "split"])
    b = full.set_index(["variant", "split"])
    for key in a.index:
        if not bool(a.loc[key, "applicable"]):
            continue
        for q in ("loss", "error"):
            d = float(a.loc[key, f"{q}_barrier"]) - float(b.loc[key, f"{q}_barrier"])
            se = float(a.loc[key, f"{q}_barrier_se"])
            rows.append({"variant": key[0], "split": key[1], "quantity": q, "diff": d, "se": se,
                         "diff_over_se": d / se if se > 0 else (0.0 if d == 0 else math.inf),
                         "agrees": abs(d) <= max(se if math.isfinite(se) else 0.0, 0.01) + 1e-12})
    return rows


def summary(rows: list[dict]) -> dict:
    if not rows:
        return {}
    return {"agree": sum(r["agrees"] for r in rows), "of": len(rows),
            "max_abs_diff": max(abs(r["diff"]) for r in rows),
            "median_abs_diff_over_se": float(np.median([abs(r["diff_over_se"]) for r in rows])),
            "max_abs_diff_over_se": max(abs(r["diff_over_se"]) for r in rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path, help="a finished sweep (its results/ and data/)")
    ap.add_argument("--config", default=str(REPO / "bench" / "paper_shaped.yaml"))
    ap.add_argument("--fine", type=int, default=25, help="α points of the grid for the coarse_alphas test (0: skip)")
    ap.add_argument("--archs", nargs="*", default=None)
    ap.add_argument("--test-samples", nargs="*", type=int, default=[],
                    help="also subsample the test split to each of these sizes (options testM, defaults+testM)")
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / "lmc_ablation.json"))
    args = ap.parse_args()

    import torch

    from convergent.nets.data import load_dataset
    from convergent.nets.models import build_model
    from convergent.nets.train import load_state, set_determinism
    from convergent.settings import LMCSettings
    from convergent.weights.lmc import EvalOptions, default_alphas, lmc_pair

    config = yaml.safe_load(Path(args.config).read_text())
    lmc = LMCSettings.from_mapping(config.get("lmc")).as_dict()
    defaults = EvalOptions.from_params(lmc)
    full = EvalOptions(eval_batch_size=defaults.eval_batch_size, calib_batch_size=defaults.calib_batch_size)
    options = {"full": full,
               "calib": dataclasses.replace(full, calib_samples=defaults.calib_samples),
               "train": dataclasses.replace(full, train_samples=defaults.train_samples),
               "defaults": defaults}
    for m in args.test_samples:
        options[f"test{m}"] = dataclasses.replace(full, test_samples=m)
        options[f"defaults+test{m}"] = dataclasses.replace(defaults, test_samples=m)
    sweep = config["sweep"]
    dataset = sweep["datasets"][0]
    data = load_dataset(dataset, data_dir=str(args.root / config.get("data_dir", "data")),
                        options=(config.get("data") or {}).get(dataset))
    seeds = sweep["seeds"]
    pairs = [(a, b) for i, a in enumerate(seeds) for b in seeds[i + 1:]]
    result = {"root": str(args.root), "config": args.config, "options": {k: dataclasses.asdict(v)
                                                                       for k, v in options.items()},
              "pairs": [], "cpu_s": {}, "agreement": {}}
    per_option_rows: dict[str, list] = {}
    torch.set_num_threads(1)
    for arch in args.archs or sweep["archs"]:
        for width in sweep["widths"]:
            for frozen in sweep["frozen_k"]:
                run = args.root / "results" / "runs" / dataset / arch / f"w{width}" / f"f{frozen}"
                for sa, sb in pairs:
                    pa, pb = run / f"s{sa}" / "model.pt", run / f"s{sb}" / "model.pt"
                    if not (pa.exists() and pb.exists()):
                        continue
                    set_determinism(int(sa), 1)
                    model = build_model(arch, int(width), data.input_shape, data.num_classes,
                                        sweep["model"].get(arch, {}))
                    state_a, state_b = load_state(pa), load_state(pb)
                    grids = {"": default_alphas(int(lmc["alphas"]))}
                    runs = [(name, opt, "") for name, opt in options.items()]
                    if args.fine:
                        grids["fine_"] = default_alphas(args.fine)
                        runs += [("fine_full", full, "fine_"),
                                 ("fine_coarse", dataclasses.replace(full, coarse_alphas=defaults.coarse_alphas),
                                  "fine_")]
                    bars = {}
                    for name, opt, grid in runs:
                        t0 = time.process_time()
                        _, bars[name], _ = lmc_pair(model, state_a, state_b, data, grids[grid], lmc["variants"],
                                                    seed=int(sa), options=opt)
                        cpu = time.process_time() - t0
                        result["cpu_s"][name] = result["cpu_s"].get(name, 0.0) + cpu
                        ref = bars["fine_full" if grid else "full"]
                        rows = compare(bars[name], ref)
                        per_option_rows.setdefault(name, []).extend(
                            {**r, "arch": arch, "frozen_k": frozen, "pair": f"{sa}-{sb}"} for r in rows)
                        print(f"{arch} f{frozen} s{sa}-s{sb} {name}: {cpu:.1f} CPU s, {summary(rows)}", flush=True)
                    result["pairs"].append(f"{arch}/w{width}/f{frozen}/s{sa}-s{sb}")
    result["agreement"] = {k: summary(v) for k, v in per_option_rows.items()}
    result["rows"] = per_option_rows
    c = result["cpu_s"]
    result["cpu_saved_vs_full"] = {k: round(1 - v / c["fine_full" if k.startswith("fine") else "full"], 3)
                                   for k, v in c.items()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    for k in c:
        print(f"{k:<12} CPU {c[k]:8.1f} s  saved {result['cpu_saved_vs_full'][k]:6.1%}  {result['agreement'].get(k)}")
    print(f"written {out}")


if __name__ == "__main__":
    main()
