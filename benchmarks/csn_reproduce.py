"""Reproduce Table 3.1 (and a Table 3.2-style off-task probe) of CSN at CPU scale.

    GARDEN_DATA_DIR=/tmp/garden_data python benchmarks/csn_reproduce.py            # train + report
    python benchmarks/csn_reproduce.py --report-only                                # rebuild the report

Data: toyworld:attributes at 32x32 (3,500 / 500 / 1,000 images, the variant's default splits);
notions shape, colour and texture (each a condition); the size attribute is held out for the
off-task probe. Every run starts from configs/csn/csn_learned_attributes.yaml with the
OVERRIDES below and the variant's own overrides; for each seed (trainer.seed and the triplets'
data.options.seed):

    csn_learned     CSN, learned masks ReLU(beta), beta ~ N(0.9, 0.7)
    csn_fixed       CSN, fixed disjoint masks (22/21/21 of the 64 dimensions)
    triplet         standard triplet network: no masks, the triplets of all notions pooled
    specialists     one standard triplet net per notion, each trained on its notion's triplets
                    alone (the same triplets and epochs; together they see what the others see)

Each run trains in this process through garden.trainer.train_and_evaluate (export off: export
parity is covered by the tests and the small configs), and its best validation snapshot is
evaluated on the test triplets (Sec. 3.4). Then the frozen trunk of every non-specialist run
(and of an untrained net, the reference) is probed on the held-out size attribute.

Writes benchmarks/results/csn_reproduce_seed<N>_<part>.json per seed and part (variants,
specialists) and, from all of them, the generated section of docs/results/csn.md. Seeds and parts
can run in parallel processes (`--seeds 1 --parts specialists`), then `--report-only` merges them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import machine, markdown_table, update_markdown_section, write_result  # noqa: E402

BASE_CONFIG = "configs/csn/csn_learned_attributes.yaml"
NOTIONS = ["shape", "color", "texture"]
HELD_OUT = "size"
OVERRIDES = [
    f"data.options.notions={json.dumps(NOTIONS)}",
    "model.num_conditions=3",
    "data.options.triplets_per_notion={train: 1000, validation: 200, test: 500}",
    "trainer.epochs=2",
    "trainer.tensorboard.enabled=false",
]
VARIANTS = {
    "csn_learned": ["model.masks=learned"],
    "csn_fixed": ["model.masks=fixed"],
    "triplet": ["model.masks=none"],
}
LABELS = {"csn_learned": "CSN, learned masks", "csn_fixed": "CSN, fixed disjoint masks",
          "triplet": "Standard triplet network", "specialists": "Set of specialist triplet networks"}
PAPER = {"triplet": 23.72, "specialists": 11.35, "csn_fixed": 10.79, "csn_learned": 10.73}
PAPER_PROBE = {"triplet": 49.08, "csn_learned": 53.67, "untrained": None}
RESULT = "csn_reproduce"
REPORT = REPO / "docs" / "results" / "csn.md"


def _config(seed: int, extra: list[str]):
    from garden.config import load_config

    return load_config(REPO / BASE_CONFIG, OVERRIDES + extra + [f"trainer.seed={seed}", f"data.options.seed={seed}"])


def _train(config, workdir: Path) -> dict:
    from garden.trainer import train_and_evaluate

    started = time.process_time(), time.perf_counter()
    metrics = train_and_evaluate(config, workdir, export=False)
    return {"test": metrics["test"], "cpu_seconds": round(time.process_time() - started[0], 1),
            "wall_seconds": round(time.perf_counter() - started[1], 1), "train_seconds": metrics.get("train_seconds")}


def _probe(config, workdir: Path | None, seed: int) -> float:
    """Held-out-attribute accuracy of the frozen trunk (workdir None: an untrained net)."""
    import keras

    from garden.methods.csn.data import notion_labels
    from garden.methods.csn.probe import probe_accuracy, trunk_features
    from garden.trainer import build_task, load_task

    probe_data = config.data.model_copy(update={"options": {**config.data.options, "notions": [HELD_OUT]}})
    train_images, train_labels = notion_labels(probe_data, "train")
    test_images, test_labels = notion_labels(probe_data, "test")
    if workdir is None:
        keras.utils.set_random_seed(seed)
        task = build_task(config, {"image_shape": [3, 32, 32, 3], "label_names": {"condition": NOTIONS}})
        task({"image": np.zeros((1, 3, 32, 32, 3), np.float32)})
    else:
        task, _ = load_task(config, workdir)
    features = [trunk_features(task.model, x, mean=task.mean, std=task.std) for x in (train_images, test_images)]
    return probe_accuracy(features[0], train_labels[HELD_OUT], features[1], test_labels[HELD_OUT], seed=seed)


def _mask_stats(config, workdir: Path) -> dict:
    from garden.trainer import load_task

    task, _ = load_task(config, workdir)
    matrix = np.asarray(task.model.mask_matrix())
    active = matrix > 0.1 * matrix.max()
    return {"matrix": np.round(matrix, 4).tolist(), "fraction_zero": float(np.mean(matrix <= 1e-6)),
            "fraction_active": float(np.mean(active)),
            "dims_shared_by_2plus": int(np.sum(active.sum(0) >= 2)), "dims_unused": int(np.sum(active.sum(0) == 0))}


def run_seed(seed: int, workroot: Path, part: str) -> dict:
    """Train and probe the variants (`part` "variants") or the specialists ("specialists") of one seed."""
    results: dict = {"runs": {}, "probe": {}, "masks": {}}
    if part == "specialists":
        return _specialists(seed, workroot, results)
    for variant, extra in VARIANTS.items():
        config = _config(seed, extra)
        workdir = workroot / f"{variant}_s{seed}"
        results["runs"][f"{variant}/{seed}"] = _train(config, workdir)
        results["probe"][f"{variant}/{seed}"] = _probe(config, workdir, seed)
        if variant == "csn_learned":
            results["masks"][str(seed)] = _mask_stats(config, workdir)
        print(f"csn_reproduce: {variant} seed {seed}: {results['runs'][f'{variant}/{seed}']}", flush=True)
    results["probe"][f"untrained/{seed}"] = _probe(_config(seed, VARIANTS["csn_learned"]), None, seed)
    return results


def _specialists(seed: int, workroot: Path, results: dict) -> dict:
    per_notion = {}
    for notion in NOTIONS:
        # One standard triplet net trained on this notion's triplets only.
        config = _config(seed, ["model.masks=none", "model.num_conditions=1", f"data.options.notions=[{notion}]"])
        per_notion[notion] = _train(config, workroot / f"specialist_{notion}_s{seed}")
    results["runs"][f"specialists/{seed}"] = {
        "test": {"triplet_error": float(np.mean([r["test"]["triplet_error"] for r in per_notion.values()])),
                 **{f"triplet_error_{n}": r["test"]["triplet_error"] for n, r in per_notion.items()}},
        "cpu_seconds": round(sum(r["cpu_seconds"] for r in per_notion.values()), 1),
        "wall_seconds": round(sum(r["wall_seconds"] for r in per_notion.values()), 1),
    }
    print(f"csn_reproduce: specialists seed {seed}: {results['runs'][f'specialists/{seed}']}", flush=True)
    return results


def merged() -> dict:
    """Every per-seed result file (benchmarks/results/csn_reproduce_seed<N>.json) in one payload."""
    payload: dict = {"runs": {}, "probe": {}, "masks": {}, "seeds": [], "total_cpu_minutes": 0.0,
                     "total_wall_minutes": 0.0}
    for path in sorted((REPO / "benchmarks" / "results").glob(f"{RESULT}_seed*.json")):
        part = json.loads(path.read_text())
        for key in ("runs", "probe", "masks"):
            payload[key].update(part[key])
        payload["seeds"] = sorted(set(payload["seeds"]) | set(part["seeds"]))
        payload["total_cpu_minutes"] += part["cpu_minutes"]
        payload["total_wall_minutes"] = max(payload["total_wall_minutes"], part["wall_minutes"])
        payload["machine"] = part["machine"]
    return payload


def _mean_std(values: list[float]) -> str:
    values = np.asarray(values) * 100
    return f"{values.mean():.1f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.1f}"


def report(payload: dict) -> str:
    runs, seeds = payload["runs"], payload["seeds"]
    rows = []
    for variant in ("triplet", "specialists", "csn_fixed", "csn_learned"):
        keys = [f"{variant}/{s}" for s in seeds if f"{variant}/{s}" in runs]
        if not keys:
            continue
        row = {"method": LABELS[variant], "paper error % (Zappos, Table 3.1)": f"{PAPER[variant]:.2f}",
               "ours: test triplet error % (mean ± sd)": _mean_std([runs[k]["test"]["triplet_error"] for k in keys])}
        for notion in NOTIONS:
            row[notion] = _mean_std([runs[k]["test"][f"triplet_error_{notion}"] for k in keys])
        row["per seed"] = ", ".join(f"{100 * runs[k]['test']['triplet_error']:.1f}" for k in keys)
        row["CPU s / seed"] = f"{np.mean([runs[k]['cpu_seconds'] for k in keys]):.0f}"
        rows.append(row)
    table = markdown_table(rows, list(rows[0]))
    probe_rows = []
    for variant in ("untrained", "triplet", "csn_fixed", "csn_learned"):
        keys = [f"{variant}/{s}" for s in seeds if f"{variant}/{s}" in payload["probe"]]
        if keys:
            values = [payload["probe"][k] for k in keys]
            probe_rows.append({"trunk": LABELS.get(variant, "untrained net (random init)"),
                               f"{HELD_OUT} accuracy % (mean ± sd)": _mean_std(values),
                               "per seed": ", ".join(f"{100 * v:.1f}" for v in values)})
    masks = payload.get("masks", {})
    mask_lines = [f"- seed {s}: {100 * m['fraction_zero']:.0f}% of the mask entries are exactly 0; "
                  f"{m['dims_shared_by_2plus']} of 64 dimensions are active (> 10% of the largest entry) in "
                  f"2+ notions, {m['dims_unused']} in none" for s, m in masks.items()]
    return "\n".join([
        f"Generated by `python benchmarks/csn_reproduce.py` (seeds {', '.join(map(str, seeds))}; "
        f"{payload['total_cpu_minutes']:.1f} CPU-minutes of training and probing in all, "
        f"{payload['total_wall_minutes']:.0f} min wall clock per seed at most; machine: {payload['machine']['cpu_count']} "
        f"CPU cores, shared with other jobs; TensorFlow {payload['machine']['tensorflow']}).",
        "",
        "**Test triplet prediction error** (lower is better, chance 50%), notions shape, colour, texture:",
        "",
        table,
        "",
        f"**Off-task probe** on the held-out `{HELD_OUT}` attribute (3 bins, chance ≈ 33%): frozen trunk, "
        "one hidden layer (64) + softmax trained on the 3,500 training images, tested on 1,000:",
        "",
        markdown_table(probe_rows, list(probe_rows[0])) if probe_rows else "(no probe results)",
        "",
        "**Learned masks** (ReLU(β) after training):",
        "",
        *mask_lines,
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workroot", default="/tmp/csn_repro")
    parser.add_argument("--parts", nargs="+", choices=["variants", "specialists"], default=["variants", "specialists"])
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from the per-seed JSONs")
    args = parser.parse_args()
    if not args.report_only:
        for seed in args.seeds:  # seeds and parts may also run in parallel processes
            for part in args.parts:
                started = time.process_time(), time.perf_counter()
                results = run_seed(seed, Path(args.workroot), part)
                write_result(f"{RESULT}_seed{seed}_{part}", {
                    "command": f"python benchmarks/csn_reproduce.py --seeds {seed} --parts {part}",
                    "base_config": BASE_CONFIG, "overrides": OVERRIDES, "variants": VARIANTS, "notions": NOTIONS,
                    "held_out": HELD_OUT, "seeds": [seed], "machine": machine(),
                    "cpu_minutes": (time.process_time() - started[0]) / 60,
                    "wall_minutes": (time.perf_counter() - started[1]) / 60, **results})
    payload = merged()
    if payload["seeds"]:
        update_markdown_section(str(REPORT), "csn-reproduce", report(payload))
        print(report(payload))


if __name__ == "__main__":
    main()
