"""Small-scale reproduction of NDDR-CNN (spec seeds_000_001.md B.7) on toyworld:scenes.

    python benchmarks/nddr_reproduce.py                      # every variant x seeds 0, 1, 2
    python benchmarks/nddr_reproduce.py --variants nddr single_segmentation --seeds 0
    python benchmarks/nddr_reproduce.py --report-only        # rebuild the tables from the JSON

Every variant is configs/nddr/nddr_toyworld_small.yaml with the overrides of VARIANTS (the
same data, backbone, optimiser, schedule and number of steps: an equal training budget), trained
in this process through garden.trainer.train_and_evaluate with export and TensorBoard off (the
tests and the small config cover export). Claims (spec B.7): N1 NDDR-CNN beats single-task,
shared-bottom and cross-stitch on both tasks; N2 diagonal init beats Xavier; N3 x100 NDDR
learning rate beats x1. Results: benchmarks/results/nddr_reproduce.json (every run) and the
generated tables of docs/results/nddr.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import machine, markdown_table, update_markdown_section, write_result  # noqa: E402

CONFIG = REPO / "configs" / "nddr" / "nddr_toyworld_small.yaml"
REPORT = REPO / "docs" / "results" / "nddr.md"
RESULT_NAME = "nddr_reproduce"
NDDR_LR = ["trainer.lr_multipliers=[{pattern: nddr, multiplier: 100.0}, {pattern: fc8, multiplier: 10.0}]"]
FC8_LR = ["trainer.lr_multipliers=[{pattern: fc8, multiplier: 10.0}]"]
SEG_ONLY = ["model.tasks={segmentation: 13}", "model.fusion=none", "task.heads=[segmentation]",
            "task.loss_weights={segmentation: 1.0}", "data.label_keys=[segmentation]"]
# The official code scales the single-task normal loss by 10 (20 in the multi-task nets).
NORMALS_ONLY = ["model.tasks={normals: 3}", "model.fusion=none", "task.heads=[normals]",
                "task.loss_weights={normals: 10.0}", "data.label_keys=[normals]"]

VARIANTS = {
    "single_segmentation": SEG_ONLY + FC8_LR,
    "single_normals": NORMALS_ONLY + FC8_LR,
    "shared_bottom": ["model.fusion=none", "model.shared_stages=5"] + FC8_LR,
    "cross_stitch": ["model.fusion=cross_stitch",
                     "trainer.lr_multipliers=[{pattern: cross_stitch, multiplier: 100.0}, "
                     "{pattern: fc8, multiplier: 10.0}]"],
    "nddr": NDDR_LR,
    "nddr_xavier": ["model.nddr_init=xavier"] + NDDR_LR,
    "nddr_lr_x1": ["trainer.lr_multipliers=[{pattern: fc8, multiplier: 10.0}]"],
}
# NDDR-CNN's own protocol (spec B.3, Table 3): both towers start from the trained single-task
# runs of the same seed. Its budget is the single-task runs' plus its own, so it is reported
# apart from the equal-budget comparison.
TWO_STAGE = "nddr_from_single_task"
VARIANTS[TWO_STAGE] = NDDR_LR
# Its control: each single-task network trained for the two-stage run's total number of steps
# on its task (148 + 148), so the fused network's gain is not just the longer training.
VARIANTS["single_segmentation_x2"] = VARIANTS["single_segmentation"] + ["trainer.epochs=8"]
VARIANTS["single_normals_x2"] = VARIANTS["single_normals"] + ["trainer.epochs=8"]
COMMON = ["export.enabled=false", "trainer.tensorboard.enabled=false"]
SEG_METRICS = ["segmentation_miou", "segmentation_pixel_accuracy"]
NORMAL_METRICS = ["normals_mean_angle", "normals_median_angle", "normals_within_11_25", "normals_within_22_5",
                  "normals_within_30"]


def run_one(variant: str, seed: int, workroot: Path, extra: list[str]) -> dict:
    import keras

    from garden.config import dump_config, load_config
    from garden.trainer import train_and_evaluate

    overrides = VARIANTS[variant] + COMMON + [f"trainer.seed={seed}"] + extra
    if variant == TWO_STAGE:
        overrides.append("model.init_checkpoints={segmentation: %s, normals: %s}" % (
            workroot / f"single_segmentation_seed{seed}", workroot / f"single_normals_seed{seed}"))
    config = load_config(CONFIG, overrides)
    workdir = workroot / f"{variant}_seed{seed}"
    workdir.mkdir(parents=True, exist_ok=True)
    dump_config(config, workdir / "config.yaml")  # as run.py does: init_checkpoints reads it back
    keras.backend.clear_session()
    # A workdir with a finished run is only re-tested: its CPU time is not a training cost.
    resumed = (workdir / "metrics.json").exists()
    cpu, wall = time.process_time(), time.perf_counter()
    metrics = train_and_evaluate(config, workdir, export=False)
    return {"variant": variant, "seed": seed, "overrides": overrides, "test": metrics["test"], "resumed": resumed,
            "global_step": metrics["global_step"], "train_seconds": metrics.get("train_seconds"),
            "wall_seconds": round(time.perf_counter() - wall, 1), "cpu_seconds": round(time.process_time() - cpu, 1)}


def _trained(workdir: Path) -> bool:
    return (workdir / "config.yaml").exists() and (workdir / "checkpoints" / "best.weights.h5").exists()


def _with_prerequisites(variants: list[str], seed: int, workroot: Path) -> list[str]:
    """The two-stage variant starts from this seed's single-task runs: train those first when
    the workroot does not hold them yet."""
    plan = []
    for variant in variants:
        if variant == TWO_STAGE:
            plan += [v for v in ("single_segmentation", "single_normals")
                     if v not in plan and not _trained(workroot / f"{v}_seed{seed}")]
        if variant not in plan:
            plan.append(variant)
    return plan


def _load(name: str) -> dict:
    path = REPO / "benchmarks" / "results" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {"runs": []}


def _load_all() -> dict:
    """Every run of every result file (parallel processes write one file each, --result-name)."""
    merged = {"runs": []}
    for path in sorted((REPO / "benchmarks" / "results").glob(f"{RESULT_NAME}*.json")):
        payload = json.loads(path.read_text())
        merged.update({k: v for k, v in payload.items() if k != "runs"})
        merged["runs"] += payload["runs"]
    # One run per (variant, seed): a later file's record replaces an earlier one, except that a
    # record that only re-tested a finished run never replaces the one that trained it.
    cells = {}
    for r in merged["runs"]:
        old = cells.get((r["variant"], r["seed"]))
        if old is None or not r.get("resumed") or old.get("resumed"):
            cells[(r["variant"], r["seed"])] = r
    merged["runs"] = list(cells.values())
    merged["runs"].sort(key=lambda r: (list(VARIANTS).index(r["variant"]), r["seed"]))
    return merged


def _summary(runs: list[dict]) -> list[dict]:
    rows = []
    for variant in VARIANTS:
        mine = [r for r in runs if r["variant"] == variant]
        if not mine:
            continue
        row = {"variant": variant, "seeds": ",".join(str(r["seed"]) for r in mine)}
        for key in SEG_METRICS + NORMAL_METRICS:
            values = [r["test"][key] for r in mine if key in r["test"]]
            if values:
                scale = 100.0 if key in SEG_METRICS else 1.0
                row[key] = f"{scale * np.mean(values):.2f} ± {scale * np.std(values):.2f}"
            else:
                row[key] = "–"
        trained = [r["cpu_seconds"] for r in mine if not r.get("resumed")]
        row["cpu s/run"] = f"{np.mean(trained):.0f}" if trained else "–"
        rows.append(row)
    return rows


def report(payload: dict) -> None:
    rows = _summary(payload["runs"])
    columns = ["variant", "seeds"] + SEG_METRICS + NORMAL_METRICS + ["cpu s/run"]
    body = ("Generated by `python benchmarks/nddr_reproduce.py` (mean ± std over seeds; mIoU and pixel accuracy "
            "in %, angles in degrees, within-x in % of valid pixels; test split, 200 images). Machine: "
            f"{payload.get('machine', {}).get('platform', '?')}, {payload.get('machine', {}).get('cpu_count', '?')} "
            f"CPUs shared with other jobs. Total CPU time {sum(r['cpu_seconds'] for r in payload['runs']) / 60:.1f} "
            f"min for {len(payload['runs'])} runs (cpu s/run: the runs that trained; a rerun that found a "
            "finished run in its workdir only re-tested it).\n\n" + markdown_table(rows, columns))
    update_markdown_section(str(REPORT), "nddr-reproduce", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--workroot", default="/tmp/nddr_reproduce")
    parser.add_argument("--set", nargs="*", default=[], dest="extra", help="more config overrides for every run")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--result-name", default=RESULT_NAME,
                        help=f"results file benchmarks/results/<name>.json; must start with {RESULT_NAME} "
                             "(one per process when seeds run in parallel processes)")
    args = parser.parse_args()
    if not args.result_name.startswith(RESULT_NAME):
        parser.error(f"--result-name must start with {RESULT_NAME}")
    payload = _load(args.result_name)
    if not args.report_only:
        payload["machine"] = machine()
        payload["config"] = str(CONFIG.relative_to(REPO))
        for seed in args.seeds:  # seed-major: a cut-short run still covers every variant
            for variant in _with_prerequisites(args.variants, seed, Path(args.workroot)):
                result = run_one(variant, seed, Path(args.workroot), list(args.extra))
                result["extra"] = list(args.extra)
                payload["runs"] = [r for r in payload["runs"]
                                   if (r["variant"], r["seed"]) != (variant, seed)] + [result]
                write_result(args.result_name, payload)
                print(json.dumps({k: result[k] for k in ("variant", "seed", "cpu_seconds", "wall_seconds")}),
                      flush=True)
    merged = _load_all()
    if merged["runs"]:
        report(merged)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
