"""Small-scale reproduction of ConvNet-AIG (thesis Table 5.1) on Fashion-MNIST, several seeds.

    python benchmarks/aig_reproduce.py [--seeds 0 1 2] [--workdir /tmp/aig_repro]

Trains, per seed, the plain half-width post-activation ResNet-20
(configs/aig/resnet20_plain_fashion_mnist.yaml) and the same network with AIG gates at target
rate t (configs/aig/aig_resnet20_fashion_mnist.yaml), with the configs' recipe and splits. For
each AIG run it measures on the test split: the error with the gates (Adanet), the error of
Adanet* (every block, scaled by its running execution rate), the per-block execution rates,
the executed-block histogram and the expected MACs per image. Writes
docs/results/aig/reproduction.json, the execution-rate heatmap of the first seed
(docs/images/aig_rates_fashion_mnist.png, thesis Fig. 5.4) and prints a markdown table.
Runs are resumable: a finished run is only re-evaluated.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from garden.config import load_config  # noqa: E402

AIG_CONFIG = "configs/aig/aig_resnet20_fashion_mnist.yaml"
PLAIN_CONFIG = "configs/aig/resnet20_plain_fashion_mnist.yaml"
OUT_JSON = os.path.join(REPO, "docs", "results", "aig", "reproduction.json")
OUT_PNG = os.path.join(REPO, "docs", "images", "aig_rates_fashion_mnist.png")


def _train(config, workdir):
    from garden.trainer import train_and_evaluate

    started = time.perf_counter()
    cpu = time.process_time()
    metrics = train_and_evaluate(config, workdir, export=False)
    return metrics, time.perf_counter() - started, time.process_time() - cpu


def _plain_macs(config):
    import keras

    from garden.methods.aig.flops import count_macs
    from garden.registry import MODELS, import_all

    import_all()
    model = MODELS.get(config.model.name)(**{**config.model.kwargs, "num_classes": 10})
    model.build((None, 28, 28, 1))
    count = count_macs(model, (28, 28))
    keras.backend.clear_session()
    return count.plain


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workdir", default="/tmp/aig_repro")
    parser.add_argument("--set", nargs="*", default=[], help="overrides for both configs")
    parser.add_argument("--out", default=OUT_JSON, help="the JSON report")
    parser.add_argument("--merge", nargs="+", metavar="JSON",
                        help="only merge the runs of earlier reports (e.g. of parallel --seeds S --kinds K calls)")
    parser.add_argument("--kinds", nargs="+", default=["plain", "aig"], choices=["plain", "aig"],
                        help="which networks (runs of one kind and seed can go in parallel processes)")
    args = parser.parse_args(argv)

    from garden.methods.aig.analysis import plot_rates, rates_from_run

    runs = []
    if args.merge:
        for path in args.merge:
            with open(path) as f:
                runs.extend(json.load(f)["runs"])
        runs.sort(key=lambda r: (r["seed"], r["kind"] != "plain"))
        args.seeds = sorted({r["seed"] for r in runs})
        args.kinds = [k for k in ("plain", "aig") if any(r["kind"] == k for r in runs)]
    for seed in [] if args.merge else args.seeds:
        for kind, path in (("plain", PLAIN_CONFIG), ("aig", AIG_CONFIG)):
            if kind not in args.kinds:
                continue
            overrides = [f"trainer.seed={seed}", *args.set]
            config = load_config(os.path.join(REPO, path), overrides)
            workdir = os.path.join(args.workdir, f"{kind}_seed{seed}")
            load = os.getloadavg()
            metrics, wall, cpu = _train(config, workdir)
            run = {"kind": kind, "seed": seed, "config": path, "overrides": overrides,
                   "test_accuracy": metrics["test"]["accuracy"], "test_error": 1.0 - metrics["test"]["accuracy"],
                   "train_seconds": metrics.get("train_seconds"), "wall_seconds_this_call": round(wall, 1),
                   "cpu_seconds_this_call": round(cpu, 1), "load_average_at_start": list(load)}
            if kind == "plain":
                run["macs"] = _plain_macs(config)
            else:
                report = rates_from_run(config, workdir)
                star = rates_from_run(load_config(os.path.join(REPO, path),
                                                  overrides + ["model.inference_gates=all_scaled"]), workdir)
                run.update(error_adanet=report["error"], error_adanet_star=star["error"],
                           macs=report["macs_expected"], macs_all_blocks=report["macs_all_blocks"],
                           rate_per_block=report["rate_per_block"], gated=report["gated"],
                           executed_gated_blocks=report["executed_gated_blocks"],
                           test_metrics=metrics["test"])
                if seed == 0:
                    plot_rates(report["rate_per_class_and_block"], report["blocks"], report["class_names"],
                               report["gated"], OUT_PNG,
                               title=f"AIG ResNet-20 (t={config.task.kwargs.get('target_rate')}), Fashion-MNIST "
                                     f"test, seed {seed}:\nexecution rate per block and class")
                    run["rate_per_class_and_block"] = report["rate_per_class_and_block"]
                    run["class_names"] = report["class_names"]
            runs.append(run)
            print(json.dumps({k: v for k, v in run.items() if not isinstance(v, list) or k == "overrides"}),
                  flush=True)

    summary = {}
    for kind in args.kinds:
        chosen = [r for r in runs if r["kind"] == kind]
        summary[kind] = {
            "test_error_mean": float(np.mean([r["test_error"] for r in chosen])),
            "test_error_std": float(np.std([r["test_error"] for r in chosen])),
            "macs_mean": float(np.mean([r["macs"] for r in chosen])),
        }
        if kind == "aig":
            summary[kind]["adanet_star_error_mean"] = float(np.mean([r["error_adanet_star"] for r in chosen]))
            summary[kind]["executed_fraction_gated_mean"] = float(np.mean(
                [np.mean(np.asarray(r["rate_per_block"])[np.asarray(r["gated"])]) for r in chosen]))
    for kind in args.kinds:
        chosen = [r for r in runs if r["kind"] == kind]
        summary[kind]["seeds"] = [r["seed"] for r in chosen]
        summary[kind]["test_errors"] = [r["test_error"] for r in chosen]
        summary[kind]["train_seconds"] = [r["train_seconds"] for r in chosen]
    report = {"command": "python benchmarks/aig_reproduce.py " + " ".join(argv or sys.argv[1:]),
              "seeds": args.seeds, "runs": runs, "summary": summary,
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared with other jobs)",
              "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print("| model | test error (%) | MACs / image (M) | Adanet* error (%) |")
    print("|---|---|---|---|")
    for kind in args.kinds:
        s = summary[kind]
        star = f"{100 * s['adanet_star_error_mean']:.2f}" if kind == "aig" else "-"
        print(f"| {kind} | {100 * s['test_error_mean']:.2f} +- {100 * s['test_error_std']:.2f} | "
              f"{s['macs_mean'] / 1e6:.2f} | {star} |")


if __name__ == "__main__":
    main()
