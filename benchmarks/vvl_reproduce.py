"""Small-scale reproduction of visual variation learning (seed 000) on toyworld:objects.

    GARDEN_DATA_DIR=/tmp/garden_data python benchmarks/vvl_reproduce.py [--groups central ...]

Every run is `configs/vvl/alexnet_pose_objects.yaml` (or `alexnet_triplet_objects.yaml` for the
embedding heads) with `--set` overrides, trained through `garden.trainer.train_and_evaluate`
(best validation checkpoint, evaluated on the instance-disjoint test split, no export). Test
probabilities are kept per run, so each variant also gets the paper's ensemble (sum of the
seeds' softmax scores, specs/seeds_000_001.md A.3) and error reduction relative to I_0.

Writes benchmarks/results/vvl_reproduce.json after every run (a partial grid is still a
result) and the tables of docs/results/vvl.md (section `vvl-reproduce`). Each finished run is
also kept in --cache-dir (test metrics and probabilities), so a grid cut short resumes where it
stopped when started again with the same arguments.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import machine, markdown_table, update_markdown_section, write_result  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POSE_CONFIG = os.path.join(REPO, "configs", "vvl", "alexnet_pose_objects.yaml")
TRIPLET_CONFIG = os.path.join(REPO, "configs", "vvl", "alexnet_triplet_objects.yaml")
RESULT_NAME = "vvl_reproduce"
DOC = os.path.join(REPO, "docs", "results", "vvl.md")

BASELINE = ["model.variations={}", "task.variations={}", "task.alpha=0.0"]
POSE = ["model.variations={pose: 30}", "task.variations={pose: [azimuth, elevation]}"]
LIGHT = ["model.variations={lighting: 5}", "task.variations={lighting: [lighting]}"]
BOTH = ["model.variations={pose: 30, lighting: 5}",
        "task.variations={pose: [azimuth, elevation], lighting: [lighting]}"]
SPARSE_1 = ["data.options.variations_per_instance=1"]

# group -> [(variant name, config, overrides)]; the paper's settings (A.5 tables) at small scale.
GROUPS = {
    "central": [("I_0", POSE_CONFIG, BASELINE), ("I_[5]+P", POSE_CONFIG, POSE)],
    "lighting": [("I_[5]+L", POSE_CONFIG, LIGHT), ("I_[5]+LP", POSE_CONFIG, BOTH + ["task.alpha=0.6667"])],
    "alpha": [(f"alpha={a}", POSE_CONFIG, POSE + [f"task.alpha={a}"]) for a in (0.2, 0.8)],
    "sparse": [("n_VPI=1 I_0", POSE_CONFIG, BASELINE + SPARSE_1), ("n_VPI=1 I_[5]", POSE_CONFIG, POSE + SPARSE_1)],
    "placement": [(f"I_[{i}]", POSE_CONFIG, POSE + [f"model.injections=[{i}]"]) for i in (1, 2, 3, 4)]
                 + [("I_[12345]", POSE_CONFIG, POSE + ["model.injections=[1, 2, 3, 4, 5]"])],
    "embedding": [("Triplet", TRIPLET_CONFIG, []),
                  ("Siamese", TRIPLET_CONFIG, ["task.embedding_loss=contrastive"])],
}


def run_one(config_path: str, overrides: list[str], seed: int, epochs: int, workdir: str) -> dict:
    import keras
    import tensorflow as tf

    from garden.config import load_config
    from garden.data.pipeline import build_dataset
    from garden.trainer import load_task, train_and_evaluate

    config = load_config(config_path, overrides + [f"trainer.seed={seed}", f"trainer.epochs={epochs}",
                                                    "trainer.tensorboard.enabled=false", "export.enabled=false"])
    started = time.perf_counter()
    cpu_started = time.process_time()
    metrics = train_and_evaluate(config, workdir, export=False)
    train_wall = time.perf_counter() - started
    task, _ = load_task(config, workdir)
    probabilities, labels = [], []
    for features, y in build_dataset(config.data, config.data.test_split, training=False, batch_size=200):
        logits = task(features, training=False)["logits"]
        probabilities.append(keras.ops.convert_to_numpy(tf.nn.softmax(logits)))
        labels.append(np.asarray(y["label"]).reshape(-1))
    return {"seed": seed, "test": metrics["test"], "train_seconds": metrics.get("train_seconds"),
            "wall_seconds": round(train_wall, 1), "cpu_seconds": round(time.process_time() - cpu_started, 1),
            "probabilities": np.concatenate(probabilities), "labels": np.concatenate(labels)}


def save_run(path: str, result: dict) -> None:
    """Atomically keep one finished run: its arrays, and everything else as JSON."""
    meta = {k: v for k, v in result.items() if k not in ("probabilities", "labels")}
    tmp = path + ".tmp.npz"
    np.savez(tmp, probabilities=result["probabilities"], labels=result["labels"], meta=json.dumps(meta))
    os.replace(tmp, path)


def load_run(path: str) -> dict:
    with np.load(path) as saved:
        return {**json.loads(str(saved["meta"])), "probabilities": saved["probabilities"],
                "labels": saved["labels"]}


def summarise(variant: str, runs: list[dict], baseline: dict | None) -> dict:
    accs = np.array([100.0 * r["test"]["accuracy"] for r in runs])
    labels = runs[0]["labels"]
    ensemble = 100.0 * float(np.mean(np.argmax(sum(r["probabilities"] for r in runs), axis=1) == labels))
    row = {"variant": variant, "seeds": ",".join(str(r["seed"]) for r in runs),
           "per_seed": " ".join(f"{a:.1f}" for a in accs), "mean": float(accs.mean()),
           "se": float(accs.std(ddof=1) / math.sqrt(len(accs))) if len(accs) > 1 else float("nan"),
           "ensemble": ensemble, "cpu_s": float(sum(r["cpu_seconds"] for r in runs))}
    aux = [k for k in runs[0]["test"] if k.endswith("_accuracy") and k not in ("accuracy", "top5_accuracy")]
    row["aux_acc"] = " ".join(f"{k[:-9]} {100 * np.mean([r['test'][k] for r in runs]):.1f}" for k in aux)
    if baseline is not None:
        row["d_mean"] = row["mean"] - baseline["mean"]
        row["d_ens"] = row["ensemble"] - baseline["ensemble"]
        # Error reduction on the ensemble, floored to a whole percent as the paper does (A.3).
        row["err_red"] = f"{math.floor(100 * row['d_ens'] / (100 - baseline['ensemble']))}%"
    return row


def table(rows: list[dict]) -> str:
    cols = ["variant", "seeds", "per_seed", "mean", "se", "ensemble", "d_mean", "d_ens", "err_red", "aux_acc", "cpu_s"]
    out = []
    for r in rows:
        r = dict(r)
        for k in ("mean", "se", "ensemble", "d_mean", "d_ens", "cpu_s"):
            if isinstance(r.get(k), float):
                r[k] = f"{r[k]:+.2f}" if k.startswith("d_") else f"{r[k]:.2f}" if k != "cpu_s" else f"{r[k]:.0f}"
        out.append(r)
    return markdown_table(out, cols)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", nargs="+", default=list(GROUPS), choices=list(GROUPS))
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..n-1 per variant")
    parser.add_argument("--ensemble-seeds", type=int, default=5, help="seeds of I_0 and I_[5]+P (the ensemble)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/results/vvl.md")
    parser.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "vvl_reproduce"),
                        help="finished runs are kept here; a rerun with the same epochs skips them")
    args = parser.parse_args(argv)

    # Priority order, so that a run cut short still holds the central claims: 3 seeds of the
    # central pair, the ensemble seeds, then 3 seeds of each ablation, cheapest first; the
    # embedding heads (three forward passes per example) and alpha=0.2 come last.
    variants = {v: (g, c, o) for g in args.groups for v, c, o in GROUPS[g]}
    tiers = [(["I_0", "I_[5]+P"], range(args.seeds)),
             (["I_0", "I_[5]+P"], range(args.seeds, args.ensemble_seeds)),
             (["I_[5]+L", "I_[5]+LP", "n_VPI=1 I_0", "n_VPI=1 I_[5]"], range(args.seeds)),
             (["I_[1]", "I_[12345]", "alpha=0.8", "Triplet"], range(args.seeds)),
             (["alpha=0.2", "Siamese", "I_[2]", "I_[3]", "I_[4]"], range(args.seeds))]
    plan = [(variants[v][0], v, variants[v][1], variants[v][2], s)
            for names, seeds in tiers for s in seeds for v in names if v in variants]

    runs: dict[str, list[dict]] = {}
    groups_of: dict[str, str] = {}
    started = time.time()
    root = tempfile.mkdtemp(prefix="vvl_repro_")
    os.makedirs(args.cache_dir, exist_ok=True)
    for i, (group, variant, config, overrides, seed) in enumerate(plan):
        slug = f"{variant.replace(' ', '_').replace('/', '_')}_s{seed}"
        cached = os.path.join(args.cache_dir, f"{slug}_e{args.epochs}.npz")
        print(f"[{i + 1}/{len(plan)}] {variant} seed {seed}", flush=True)
        if os.path.exists(cached):
            result = load_run(cached)
        else:
            result = run_one(config, overrides, seed, args.epochs, os.path.join(root, slug))
            save_run(cached, result)
        print(f"  -> test accuracy {result['test']['accuracy']:.4f} ({result['cpu_seconds']} CPU s)", flush=True)
        runs.setdefault(variant, []).append(result)
        groups_of[variant] = group
        report(runs, groups_of, args, time.time() - started, write_doc=not args.no_doc)
    return 0


def report(runs, groups_of, args, elapsed, *, write_doc=True):
    base = summarise("I_0", runs["I_0"], None) if "I_0" in runs else None
    sparse_base = summarise("n_VPI=1 I_0", runs["n_VPI=1 I_0"], None) if "n_VPI=1 I_0" in runs else None
    rows = []
    for variant, rs in runs.items():
        reference = sparse_base if variant.startswith("n_VPI=1") else base
        rows.append({"group": groups_of[variant],
                     **summarise(variant, rs, None if variant in ("I_0", "n_VPI=1 I_0") else reference)})
    payload = {
        "benchmark": RESULT_NAME, "machine": machine(), "epochs": args.epochs,
        "elapsed_wall_seconds": round(elapsed, 1),
        "command": "GARDEN_DATA_DIR=/tmp/garden_data python benchmarks/vvl_reproduce.py "
                   f"--groups {' '.join(args.groups)} --seeds {args.seeds} --ensemble-seeds {args.ensemble_seeds} "
                   f"--epochs {args.epochs}",
        "rows": rows,
        "runs": {v: [{k: r[k] for k in ("seed", "test", "train_seconds", "wall_seconds", "cpu_seconds")} for r in rs]
                 for v, rs in runs.items()},
    }
    write_result(RESULT_NAME, payload)
    if write_doc:
        body = (f"Command: `{payload['command']}`  \n"
                f"Machine: {payload['machine']['cpu_count']} shared CPU cores, TensorFlow "
                f"{payload['machine']['tensorflow']}; {args.epochs} epochs per run; total wall clock "
                f"{elapsed / 60:.1f} min, CPU {sum(r['cpu_s'] for r in rows) / 60:.1f} min (this process).\n\n"
                + table(rows))
        update_markdown_section(DOC, "vvl-reproduce", body)
    print(json.dumps({r["variant"]: round(r["mean"], 2) for r in rows}), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
