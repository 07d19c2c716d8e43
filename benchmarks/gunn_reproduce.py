"""Small-scale reproduction of the thesis' central GUNN ablation (Table 4-IV) on Fashion-MNIST.

    python benchmarks/gunn_reproduce.py [--seeds 0 1 2] [--variants gunn sunn nores]
        [--config configs/gunn/gunn15_small_fashion_mnist.yaml] [--set KEY=VALUE ...]

Trains the scaled GUNN-15 of the config as GUNN, SUNN (the same network and weights, updated
simultaneously: equal parameters and FLOPs) and GUNN-NoRes, once per seed, with the config's
data pipeline, task, optimiser and schedule (see `train_variant`). Each run writes
`docs/results/gunn/<variant>_seed<k>.json` (final-epoch test error, per-epoch training loss,
wall and CPU time); the summary (mean +- sample std of the test error
per variant) goes to `docs/results/gunn/summary.json` and to the marked section of
`docs/results/gunn.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time

import keras

VARIANTS = {
    "gunn": ["model.mode=gunn", "model.residual=true"],
    "sunn": ["model.mode=sunn", "model.residual=true"],
    "nores": ["model.mode=gunn", "model.residual=false"],
}
LABELS = {"gunn": "GUNN", "sunn": "SUNN", "nores": "GUNN-NoRes"}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.common import update_markdown_section  # noqa: E402

DEFAULT_CONFIG = os.path.join(REPO, "configs", "gunn", "gunn15_small_fashion_mnist.yaml")
RESULTS = os.path.join(REPO, "docs", "results", "gunn")
MARKDOWN = os.path.join(REPO, "docs", "results", "gunn.md")
SECTION = "gunn-reproduction"


def _info_with_shape(info, features) -> dict:
    from garden.tasks.base import info_dict

    out = info_dict(info)
    out["image_shape"] = [int(d) for d in features["image"].shape[1:]]
    return out


def train_variant(config_path: str, variant: str, seeds: list[int], overrides: list[str],
                  results: str = RESULTS) -> list[dict]:
    """Train one variant once per seed; return (and write) one record per seed.

    The garden's own pieces (config, data pipeline, task, optimiser and schedule) in a lean loop
    that traces the training step once per variant and re-initialises the weights and the
    optimiser for every seed: tracing the unrolled GUNN layers costs as much CPU as training
    this small network, and the machine is a shared 2-core CPU. The error reported is the
    final-epoch test error (no checkpoint selection).
    """
    import numpy as np
    import tensorflow as tf

    from garden import optim
    from garden.config import load_config
    from garden.data.pipeline import build_dataset
    from garden.data.sources import source_info
    from garden.trainer import build_task

    items = [*VARIANTS[variant], *overrides]
    config = load_config(config_path, items)
    data, tcfg = config.data, config.trainer
    info = source_info(data)
    train_size = info.split_size(data.train_split)
    steps_per_epoch = train_size // data.batch_size
    test = build_dataset(data, data.test_split, batch_size=100, training=False)
    sample = next(iter(test))[0]
    info = _info_with_shape(info, sample)

    def fresh_task(seed):
        keras.utils.set_random_seed(seed)
        task = build_task(config, info)
        task(sample, training=False)
        return task

    cpu = time.process_time()
    task = fresh_task(seeds[0])
    optimizer = optim.build_optimizer(tcfg, steps_per_epoch=steps_per_epoch, variables=task.trainable_variables)
    optimizer.build(task.trainable_variables)

    @tf.function
    def train_step(features, labels):
        with tf.GradientTape() as tape:
            logits = task(features, training=True)
            loss = task.compute_loss(y=labels, y_pred=logits)
        optimizer.apply_gradients(zip(tape.gradient(loss, task.trainable_variables), task.trainable_variables))
        return loss

    @tf.function
    def predict(features):
        return tf.argmax(task(features, training=False), axis=-1)

    records = []
    for k, seed in enumerate(seeds):
        wall, cpu = time.perf_counter(), (cpu if k == 0 else time.process_time())
        if k:
            task.set_weights(fresh_task(seed).get_weights())  # new initial weights, BN statistics
        for v in optimizer.variables:  # momentum buffers and the step counter (the schedule)
            v.assign(tf.zeros_like(v))
        stream = iter(build_dataset(data, data.train_split, training=True, seed=seed).repeat())
        epochs = []
        for epoch in range(tcfg.epochs):
            losses = [float(train_step(*next(stream))) for _ in range(steps_per_epoch)]
            epochs.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses))})
        correct = total = 0
        for features, labels in test:
            predicted = predict(features).numpy()
            truth = np.reshape(labels["label"].numpy(), -1)
            correct += int(np.sum(predicted == truth))
            total += int(truth.size)
        accuracy = correct / total
        record = {
            "variant": variant, "label": LABELS[variant], "seed": seed, "config": os.path.relpath(config_path, REPO),
            "overrides": items, "test_examples": total, "test_accuracy": accuracy,
            "test_error_pct": 100.0 * (1.0 - accuracy), "epochs": epochs,
            "trainable_params": int(sum(int(np.prod(v.shape)) for v in task.model.trainable_variables)),
            "wall_seconds": round(time.perf_counter() - wall, 1),
            "cpu_seconds": round(time.process_time() - cpu, 1),
            "includes_tracing": k == 0,
        }
        os.makedirs(results, exist_ok=True)
        with open(os.path.join(results, f"{variant}_seed{seed}.json"), "w") as f:
            json.dump(record, f, indent=2)
        records.append(record)
    return records


def summarise(records: list[dict]) -> dict:
    out = {}
    for variant in VARIANTS:
        errors = [r["test_error_pct"] for r in records if r["variant"] == variant]
        if not errors:
            continue
        first_loss = [r["epochs"][0]["train_loss"] for r in records if r["variant"] == variant and r["epochs"]]
        out[variant] = {
            "label": LABELS[variant], "seeds": [r["seed"] for r in records if r["variant"] == variant],
            "test_error_pct": errors, "mean": statistics.mean(errors),
            "std": statistics.stdev(errors) if len(errors) > 1 else 0.0,
            "epoch1_train_loss_mean": statistics.mean(first_loss) if first_loss else None,
            "final_train_loss_mean": statistics.mean(
                r["epochs"][-1]["train_loss"] for r in records if r["variant"] == variant and r["epochs"]),
            "params": [r["trainable_params"] for r in records if r["variant"] == variant][0],
            "wall_seconds": sum(r["wall_seconds"] for r in records if r["variant"] == variant),
            "cpu_seconds": sum(r["cpu_seconds"] for r in records if r["variant"] == variant),
        }
    return out


def markdown(summary: dict, command: str, machine: dict) -> str:
    lines = ["| variant | seeds | test error % (mean ± std) | per seed | train loss, epoch 1 | train loss, last epoch | wall / CPU time |",
             "|---|---|---|---|---|---|---|"]
    for s in summary.values():
        per_seed = ", ".join(f"{e:.2f}" for e in s["test_error_pct"])
        lines.append(f"| {s['label']} | {', '.join(map(str, s['seeds']))} | {s['mean']:.2f} ± {s['std']:.2f} | {per_seed} "
                     f"| {s['epoch1_train_loss_mean']:.3f} | {s['final_train_loss_mean']:.3f} "
                     f"| {s['wall_seconds'] / 60:.1f} / {s['cpu_seconds'] / 60:.1f} min |")
    lines += ["", f"Command: `{command}`. Machine: {machine['cpu_count']} CPU cores ({machine['platform']}), "
              f"TensorFlow {machine['tensorflow']}, shared with other jobs (wall times are inflated by the load; "
              "CPU time is user + system of the run's process)."]
    return "\n".join(lines)


def write_summary(command: str, machine: dict, results: str = RESULTS, section: str = SECTION) -> dict:
    """Summarise every run record in `results` (variants may run in separate processes)."""
    records = []
    for name in sorted(os.listdir(results)):
        if name.endswith(".json") and "_seed" in name:
            with open(os.path.join(results, name)) as f:
                records.append(json.load(f))
    summary = summarise(records)
    with open(os.path.join(results, "summary.json"), "w") as f:
        json.dump({"command": command, "machine": machine, "summary": summary}, f, indent=2)
    update_markdown_section(MARKDOWN, section, markdown(summary, command, machine))
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--summarise-only", action="store_true",
                        help="only rewrite the summary from the run records in docs/results/gunn/")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[],
                        help="config overrides for every run, e.g. trainer.epochs=2")
    parser.add_argument("--tag", default="",
                        help="a second setting (e.g. a longer run): records in docs/results/gunn/<tag>/, "
                             "its own table in docs/results/gunn.md")
    args = parser.parse_args(argv)
    if args.tag and not args.tag.replace("_", "").isalnum():
        parser.error(f"--tag must be letters, digits and underscores, got {args.tag!r}")
    results = os.path.join(RESULTS, args.tag) if args.tag else RESULTS
    section = f"{SECTION}-{args.tag}" if args.tag else SECTION

    import tensorflow as tf

    machine = {"cpu_count": os.cpu_count(), "platform": platform.platform(), "tensorflow": tf.__version__}
    command = "python benchmarks/gunn_reproduce.py " + shlex.join(
        ["--seeds", *map(str, args.seeds), "--variants", *args.variants]
        + (["--tag", args.tag] if args.tag else [])
        + (["--set", *args.overrides] if args.overrides else []))
    if args.summarise_only:
        args.variants = []
        summary = write_summary(command, machine, results, section)
    for variant in args.variants:
        for record in train_variant(args.config, variant, args.seeds, args.overrides, results):
            print(f"{record['label']} seed {record['seed']}: test error {record['test_error_pct']:.2f}% "
                  f"({record['wall_seconds']:.0f} s wall, {record['cpu_seconds']:.0f} s CPU)", flush=True)
        summary = write_summary(command, machine, results, section)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
