"""Reproduce the lesion study (Veit thesis, ch. 4) at CPU scale and write docs/results/lesion.

    python benchmarks/lesion_reproduce.py                  # train every run, study it, report
    python benchmarks/lesion_reproduce.py --report-only    # rebuild the report from the JSONs

For each (config, seed) of RUNS: `run.py` trains it (export off: the study needs only the
checkpoint; export parity is covered by the tests and the small configs), then
`python -m garden.methods.lesion` studies it with STUDY_ARGS. The per-run lesion.json files
are copied to docs/results/lesion/<experiment>_seed<seed>.json; the report aggregates them
over seeds into docs/results/lesion/summary.json, overlay PNGs (docs/images/lesion_*.png) and
the generated section of docs/results/lesion.md (between the markers).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RESULTS = REPO / "docs" / "results" / "lesion"
IMAGES = REPO / "docs" / "images"
REPORT = REPO / "docs" / "results" / "lesion.md"
BEGIN, END = "<!-- lesion-reproduce:begin -->", "<!-- lesion-reproduce:end -->"

# (config, seeds): Fashion-MNIST with three seeds is the headline; toyworld one seed.
RUNS = [
    ("configs/lesion/resnet110_fashion_mnist.yaml", (0, 1, 2)),
    ("configs/lesion/vgg15_fashion_mnist.yaml", (0, 1, 2)),
    ("configs/lesion/resnet110_toyworld.yaml", (0,)),
    ("configs/lesion/vgg15_toyworld.yaml", (0,)),
]
# Sized for a 2-core CPU shared with other jobs (the thesis: the 10k CIFAR test images, 1,000
# gradient measurements per length).
STUDY_ARGS = ["--examples", "300", "--draws", "2", "--ks", "0,1,2,5,10,20",
              "--swap-ks", "0,2,8,16", "--grad-samples", "1", "--grad-batch", "16"]


def _experiment(config: str) -> str:
    return Path(config).stem


def _run(cmd: list[str], log) -> float:
    started = time.perf_counter()
    log.write("$ " + " ".join(cmd) + "\n")
    log.flush()
    subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - started


def train_and_study(workroot: Path, log, only: str | None = None) -> None:
    """Train and study every run of RUNS whose experiment name contains `only` (default: all).
    A run whose workdir already holds metrics.json is not trained again, one with
    lesion/lesion.json not studied again."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    # Fashion-MNIST (the three-seed headline) before toyworld, seed by seed, so that a cut-short
    # reproduction still has the headline.
    order = sorted(((seed, config) for config, seeds in RUNS for seed in seeds),
                   key=lambda t: ("toyworld" in t[1], t[0]))
    for seed, config in order:
        name = f"{_experiment(config)}_seed{seed}"
        if only and only not in name:
            continue
        workdir = workroot / name
        train_s = 0.0
        if not (workdir / "metrics.json").is_file():
            train_s = _run([sys.executable, "run.py", "--config", config, "--workdir", str(workdir), "--overwrite",
                            "--set", f"trainer.seed={seed}", "export.enabled=false"], log)
        study_json = workdir / "lesion" / "lesion.json"
        if not study_json.is_file():
            _run([sys.executable, "-m", "garden.methods.lesion", "--workdir", str(workdir),
                  "--seed", str(seed), "--no-tensorboard", *STUDY_ARGS], log)
        result = json.loads(study_json.read_text())
        study_s = result["times"]["total_s"]
        metrics = json.loads((workdir / "metrics.json").read_text())
        result["training"] = {"config": config, "seed": seed, "wall_seconds_train_run": round(train_s, 1) or None,
                              "wall_seconds_study": round(study_s, 1), "train_seconds": metrics.get("train_seconds"),
                              "test_metrics": metrics.get("test"), "epochs": metrics.get("epochs"),
                              "steps_per_epoch": metrics.get("steps_per_epoch")}
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1))


# ----------------------------------------------------------------------------------------------
# report


def _load_results() -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for path in sorted(RESULTS.glob("*_seed*.json")):
        result = json.loads(path.read_text())
        groups.setdefault(result["experiment"], []).append(result)
    return groups


def _mean_std(values) -> str:
    values = np.asarray(values, np.float64)
    if values.size == 1:
        return f"{values[0]:.3f}"
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"


def _summary(results: list[dict]) -> dict:
    """Per-experiment aggregates over seeds."""
    out = {"seeds": [r["seed"] for r in results], "model": results[0]["model"],
           "model_kwargs": results[0]["model_kwargs"], "data": results[0]["data"],
           "num_blocks": results[0]["num_blocks"], "chance_error": results[0]["chance_error"],
           "num_test_examples": results[0]["num_test_examples"]}
    baseline, non_down, down, worst, median_rise, harmful = [], [], [], [], [], []
    for r in results:
        single = r["single_deletions"]
        baseline.append(single["baseline_error"])
        rows = single["blocks"]
        non_down.append(np.mean([b["error"] for b in rows if not b["downsampling"]]))
        if any(b["downsampling"] for b in rows):
            down.append(np.mean([b["error"] for b in rows if b["downsampling"]]))
        worst.append(max(b["error"] for b in rows if not b["downsampling"]))
        rises = [b["error"] - single["baseline_error"] for b in rows if not b["downsampling"]]
        median_rise.append(float(np.median(rises)))
        harmful.append(int(sum(rise > 0.05 for rise in rises)))
    out["baseline_error"] = baseline
    out["single_deletion_mean_error_non_downsampling"] = [float(v) for v in non_down]
    out["single_deletion_mean_error_downsampling"] = [float(v) for v in down]
    out["single_deletion_worst_error_non_downsampling"] = [float(v) for v in worst]
    out["single_deletion_median_rise_non_downsampling"] = median_rise
    out["single_deletion_blocks_rising_over_5_points"] = harmful
    out["num_non_downsampling_deletable"] = sum(not b["downsampling"] for b in results[0]["single_deletions"]["blocks"])
    ks = [row["k"] for row in results[0]["random_deletions"]["rows"]]
    out["random_deletions"] = {
        "k": ks,
        "mean_error_per_seed": [[row["mean_error"] for row in r["random_deletions"]["rows"]] for r in results]}
    taus, errors = [], []
    for r in results:
        for row in r["random_swaps"]["rows"]:
            taus.append(row["kendall_tau"])
            errors.append(row["error"])
    out["random_swaps"] = {"kendall_tau": taus, "error": errors,
                           "spearman_error_vs_tau": _spearman(taus, errors)}
    if "path_gradients" in results[0]:
        out["effective_lengths"] = [r["path_gradients"]["effective_lengths"] for r in results]
        out["paths_in_effective_range"] = [r["path_gradients"]["paths_in_effective_range"] for r in results]
        out["mode_of_total_gradient"] = [r["path_gradients"]["mode_of_total_gradient"] for r in results]
        grads = np.array([r["path_gradients"]["mean_gradient_norm"] for r in results])
        lengths = np.array(results[0]["path_gradients"]["lengths"])
        # Exponential decay: slope of log(gradient) against length, fitted per seed.
        # Long paths underflow to 0 in float32: fit where the gradient is positive.
        out["log_gradient_slope_per_module"] = [float(np.polyfit(lengths[g > 0], np.log(g[g > 0]), 1)[0])
                                                for g in grads]
        out["longest_length_with_nonzero_gradient"] = [int(lengths[g > 0].max()) for g in grads]
    out["train_seconds"] = [r["training"]["train_seconds"] for r in results if "training" in r]
    out["study_seconds"] = [r["training"]["wall_seconds_study"] for r in results if "training" in r]
    return out


def _spearman(x, y) -> float:
    rx = np.argsort(np.argsort(x)).astype(np.float64)
    ry = np.argsort(np.argsort(y)).astype(np.float64)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def _figures(groups: dict[str, list[dict]]) -> list[str]:
    from garden.methods.lesion import plots

    written = []
    IMAGES.mkdir(parents=True, exist_ok=True)
    for data in ("fashion_mnist", "toyworld"):
        pair = [(e, rs) for e, rs in sorted(groups.items()) if e.endswith(data)]
        if not pair:
            continue
        chance = pair[0][1][0]["chance_error"]
        runs = [(f"{e} seed {r['seed']}", r) for e, rs in pair for r in rs]
        for name, fig in (
            ("single_deletion", plots.single_deletion_figure([(lb, r["single_deletions"]) for lb, r in runs], chance)),
            ("deletions", plots.deletions_figure([(lb, r["random_deletions"]) for lb, r in runs], chance)),
            ("swaps", plots.swaps_figure([(lb, r["random_swaps"]) for lb, r in runs], chance)),
        ):
            written.append(plots.save(fig, IMAGES / f"lesion_{name}_{data}.png"))
        residual = [(lb, r) for lb, r in runs if "path_gradients" in r]
        if residual:
            stats = residual[0][1]["path_statistics"]
            written.append(plots.save(plots.paths_figure([(lb, r["path_gradients"]) for lb, r in residual], stats),
                                      IMAGES / f"lesion_paths_{data}.png"))
            written.append(plots.save(plots.remaining_paths_figure(stats), IMAGES / "lesion_remaining_paths.png"))
    return written


def _markdown(summaries: dict[str, dict]) -> str:
    lines = ["_Generated by `python benchmarks/lesion_reproduce.py`; do not edit by hand._", ""]
    lines += ["Single deletions (Fig. 4.3), errors on the study's test images, mean ± std over seeds:", "",
              "| run | model | blocks | seeds | error, intact | mean error, one non-downsampling block deleted "
              "| median rise | blocks whose deletion adds > 5 points | worst non-downsampling deletion "
              "| mean error, a downsampling block deleted | chance |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in summaries.items():
        down = _mean_std(s["single_deletion_mean_error_downsampling"]) if s["single_deletion_mean_error_downsampling"] else "—"
        lines.append(f"| {name} | {s['model']} {s['model_kwargs']} | {s['num_blocks']} | {len(s['seeds'])} | "
                     f"{_mean_std(s['baseline_error'])} | {_mean_std(s['single_deletion_mean_error_non_downsampling'])} | "
                     f"{_mean_std(s['single_deletion_median_rise_non_downsampling'])} | "
                     f"{', '.join(map(str, s['single_deletion_blocks_rising_over_5_points']))} of "
                     f"{s['num_non_downsampling_deletable']} | "
                     f"{_mean_std(s['single_deletion_worst_error_non_downsampling'])} | {down} | {s['chance_error']:.2f} |")
    lines += ["", "Error after deleting k random blocks (mean over draws, then mean ± std over seeds):", ""]
    for name, s in summaries.items():
        per_seed = np.array(s["random_deletions"]["mean_error_per_seed"])
        ks = s["random_deletions"]["k"]
        cells = [f"k={k}: {_mean_std(per_seed[:, i])}" for i, k in enumerate(ks)]
        lines.append(f"- **{name}**: " + "; ".join(cells))
    lines += ["", "Reordering: Spearman correlation between error and Kendall τ over all reordered networks "
              "(negative: error grows as τ falls):", ""]
    for name, s in summaries.items():
        taus = s["random_swaps"]["kendall_tau"]
        lines.append(f"- **{name}**: ρ = {s['random_swaps']['spearman_error_vs_tau']:.2f} over {len(taus)} orders, "
                     f"τ from {min(taus):.2f} to {max(taus):.2f}")
    residual = {k: s for k, s in summaries.items() if "effective_lengths" in s}
    if residual:
        lines += ["", "Paths (residual networks, n blocks): fitted decay of the gradient norm per module on a path "
                  "(slope of ln ‖g‖ against path length), the length with the largest total gradient, and the "
                  "shortest range of lengths carrying 90% of the total gradient with the share of all paths in it:",
                  ""]
        for name, s in residual.items():
            n = s["num_blocks"]
            slopes = _mean_std(s["log_gradient_slope_per_module"])
            windows = ", ".join(f"{lo}-{hi}" for lo, hi in s["effective_lengths"])
            shares = ", ".join(f"{100 * p:.3g}%" for p in s["paths_in_effective_range"])
            zero = ", ".join(map(str, s["longest_length_with_nonzero_gradient"]))
            lines.append(f"- **{name}** (n = {n}, mean path length {n / 2:g}): slope {slopes} (the gradient "
                         f"underflows to 0 in float32 beyond length {zero}); mode of the total "
                         f"gradient at length {', '.join(str(m) for m in s['mode_of_total_gradient'])}; 90% window "
                         f"{windows} (per seed), holding {shares} of the 2^{n} paths")
    times = [(k, s["train_seconds"], s["study_seconds"]) for k, s in summaries.items() if s["train_seconds"]]
    if times:
        lines += ["", "Time per run (seconds of wall clock on the shared 2-core CPU): "
                  + "; ".join(f"{k}: training {', '.join(f'{t:.0f}' for t in tr)}, study "
                              f"{', '.join(f'{t:.0f}' for t in st)}" for k, tr, st in times) + "."]
    return "\n".join(lines) + "\n"


def report() -> None:
    groups = _load_results()
    if not groups:
        raise SystemExit(f"no results in {RESULTS}; run without --report-only first")
    summaries = {name: _summary(rs) for name, rs in sorted(groups.items())}
    summaries_json = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
                      "study_args": STUDY_ARGS, "experiments": summaries}
    (RESULTS / "summary.json").write_text(json.dumps(summaries_json, indent=1, default=float))
    _figures(groups)
    section = _markdown(summaries)
    text = REPORT.read_text() if REPORT.exists() else f"# Lesion study\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    REPORT.write_text(head + BEGIN + "\n" + section + END + tail)
    print(section)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--report-only", action="store_true", help="only rebuild the report from existing JSONs")
    p.add_argument("--workroot", default="/tmp/lesion_reproduce", help="where the runs are trained")
    p.add_argument("--log", default=None, help="log file of the subprocesses (default: stdout)")
    p.add_argument("--only", default=None, help="only the runs whose name contains this, e.g. vgg15 or seed0")
    args = p.parse_args()
    if not args.report_only:
        workroot = Path(args.workroot)
        workroot.mkdir(parents=True, exist_ok=True)
        log = open(args.log, "a") if args.log else sys.stdout
        train_and_study(workroot, log, args.only)
    report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
