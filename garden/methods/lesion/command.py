"""`python -m garden.methods.lesion --workdir RUN`: the lesion study of a trained run.

Loads the run's config and best checkpoint (garden.trainer.load_task), takes the first
`--examples` images of the test split (and random training batches for the gradients), runs
the experiments of `study` and writes into `--out` (default `RUN/lesion/`):

    lesion.json              every measurement, the settings, seeds and times
    single_deletion.png      Fig. 4.3      deletions.png     Fig. 4.5a
    swaps.png                Fig. 4.5b     paths.png         Fig. 4.6 (residual models)
    remaining_paths.png      Fig. 4.7 (residual models)

and the same figures as TensorBoard images under `RUN/tensorboard/lesion/`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from garden.errors import GardenError

__all__ = ["main", "run_study"]


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected non-negative integers, got {text!r}")
    return values


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m garden.methods.lesion",
        description="Lesion study (Veit thesis ch. 4) of a trained garden ResNet or plain VGG: "
        "delete and reorder blocks at test time, gradient per path length; writes JSON and PNGs.")
    p.add_argument("--workdir", required=True, help="a trained run (holds config.yaml and checkpoints/)")
    p.add_argument("--config", help="experiment YAML (default: WORKDIR/config.yaml)")
    p.add_argument("--out", help="output folder (default: WORKDIR/lesion)")
    p.add_argument("--examples", type=int, default=1000, help="test images evaluated (default 1000)")
    p.add_argument("--ks", type=_ints, default=None,
                   help="numbers of random deletions, e.g. 0,1,2,5,10 (default: 0..20, capped at n)")
    p.add_argument("--swap-ks", type=_ints, default=None,
                   help="numbers of random swaps (default: 0,1,2,4,6,8,12,16,24,32)")
    p.add_argument("--draws", type=int, default=5, help="random draws per k (default 5)")
    p.add_argument("--grad-samples", type=int, default=4,
                   help="gradient measurements per path length (thesis: 1,000; default 4; 0 skips)")
    p.add_argument("--grad-batch", type=int, default=32, help="training images per gradient measurement")
    p.add_argument("--batch-size", type=int, default=500, help="evaluation batch size")
    p.add_argument("--seed", type=int, default=0, help="seeds the random draws (default 0)")
    p.add_argument("--no-tensorboard", action="store_true", help="do not write the figures to TensorBoard")
    return p


def _load(config_path, workdir):
    from garden.config import load_config
    from garden.trainer import load_task

    path = Path(config_path) if config_path else Path(workdir) / "config.yaml"
    if not path.is_file():
        raise GardenError(f"--config: {str(path)!r} does not exist; pass --config or a trained --workdir")
    config = load_config(path)
    task, _ = load_task(config, workdir)
    return config, task


def _arrays(config, split: str, count: int, batch_size: int):
    """The first `count` (images, labels) of `split`, unaugmented, as numpy arrays."""
    from garden.data.pipeline import build_dataset

    # No cache: the study reads only the first batches, and a partly read cache is discarded.
    data_config = config.data.model_copy(update={"cache": False})
    ds = build_dataset(data_config, split, batch_size=batch_size, training=False)
    images, labels = [], []
    seen = 0
    for features, targets in ds:
        images.append(features["image"].numpy())
        labels.append(targets)
        seen += len(images[-1])
        if seen >= count:
            break
    if not images:
        raise GardenError(f"data: split {split!r} of {config.data.name!r} is empty")
    return np.concatenate(images)[:count], labels


def _labels(task, batches) -> np.ndarray:
    key = getattr(task, "label_key", "label")
    return np.concatenate([np.asarray(b[key]).reshape(-1) for b in batches]).astype(np.int32)


def _inputs(task, images) -> np.ndarray:
    """`images` through the task's own preprocessing (the normalisation the model was trained
    with), ready for the backbone."""
    return np.asarray(task.preprocess(images), np.float32)


def run_study(config, task, options) -> tuple[dict, dict]:
    """All experiments for one trained task; `options` holds the command line's settings
    (examples, ks, swap_ks, draws, grad_samples, grad_batch, batch_size, seed).
    Returns (results, figures {name: Figure})."""
    from garden.methods.lesion import plots, study
    from garden.methods.lesion.surgery import block_infos, is_residual

    rng = np.random.default_rng(options.seed)
    model = task.model
    infos = block_infos(model)
    n = len(infos)
    test_split = config.data.test_split or config.data.validation_split
    images, batches = _arrays(config, test_split, options.examples, options.batch_size)
    labels = _labels(task, batches)[: len(images)]
    inputs = _inputs(task, images)
    num_classes = int(task.data_info.get("num_classes") or model.num_classes)
    chance = 1.0 - 1.0 / num_classes
    deletable = sum(info.deletable for info in infos)
    ks = options.ks if options.ks is not None else list(range(0, min(20, deletable) + 1))
    swap_ks = options.swap_ks if options.swap_ks is not None else [0, 1, 2, 4, 6, 8, 12, 16, 24, 32]
    times = {}

    started = time.perf_counter()
    single = study.single_deletions(model, inputs, labels, batch_size=options.batch_size)
    times["single_deletions_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    deletions = study.random_deletions(model, inputs, labels, [k for k in ks if k <= deletable],
                                       options.draws, rng, batch_size=options.batch_size)
    times["random_deletions_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    swaps = study.random_swaps(model, inputs, labels, swap_ks, options.draws, rng, batch_size=options.batch_size)
    times["random_swaps_s"] = round(time.perf_counter() - started, 1)

    label = f"{config.model.name} ({config.experiment})"
    figures = {
        "single_deletion": plots.single_deletion_figure([(label, single)], chance),
        "deletions": plots.deletions_figure([(label, deletions)], chance),
        "swaps": plots.swaps_figure([(label, swaps)], chance),
    }
    results = {
        "experiment": config.experiment,
        "model": config.model.name,
        "model_kwargs": dict(config.model.kwargs),
        "data": config.data.name,
        "test_split": test_split,
        "num_test_examples": int(len(images)),
        "num_classes": num_classes,
        "chance_error": chance,
        "num_blocks": n,
        "blocks": [dataclasses.asdict(info) for info in infos],
        "residual": is_residual(model),
        "seed": options.seed,
        "draws": options.draws,
        "single_deletions": single,
        "random_deletions": deletions,
        "random_swaps": swaps,
    }
    if is_residual(model):
        statistics = study.path_statistics(n)
        results["path_statistics"] = statistics
        figures["remaining_paths"] = plots.remaining_paths_figure(statistics)
        if options.grad_samples > 0:
            started = time.perf_counter()
            train_images, train_batches = _arrays(config, config.data.train_split,
                                                  options.grad_batch * 8, options.grad_batch)
            train_labels = _labels(task, train_batches)[: len(train_images)]
            train_inputs = _inputs(task, train_images)
            perm = rng.permutation(len(train_inputs))
            grad_batches = [(train_inputs[perm[i:i + options.grad_batch]], train_labels[perm[i:i + options.grad_batch]])
                            for i in range(0, len(perm) - options.grad_batch + 1, options.grad_batch)]
            gradients = study.path_gradients(model, grad_batches, options.grad_samples, rng)
            times["path_gradients_s"] = round(time.perf_counter() - started, 1)
            results["path_gradients"] = gradients
            figures["paths"] = plots.paths_figure([(label, gradients)], statistics)
    results["times"] = times
    return results, figures


def _to_tensorboard(logdir: str, figures: dict, out: Path) -> None:
    """The saved PNGs as TensorBoard images (step 0) under `logdir`."""
    import tensorflow as tf

    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default():
        for name in figures:
            png = tf.io.read_file(str(out / f"{name}.png"))
            tf.summary.image(f"lesion/{name}", tf.expand_dims(tf.io.decode_png(png, channels=3), 0), step=0)
    writer.close()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        for name in ("examples", "draws", "grad_batch", "batch_size"):
            if getattr(args, name) < 1:
                raise GardenError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
        if args.grad_samples < 0:
            raise GardenError(f"--grad-samples must be >= 0, got {args.grad_samples}")
        from garden.methods.lesion import plots

        started = time.perf_counter()
        config, task = _load(args.config, args.workdir)
        results, figures = run_study(config, task, args)
    except GardenError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(args.workdir) / "lesion"
    out.mkdir(parents=True, exist_ok=True)
    for name, fig in figures.items():
        plots.save(fig, out / f"{name}.png")
    results["times"]["total_s"] = round(time.perf_counter() - started, 1)
    results["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count()}
    results["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    results["command"] = "python -m garden.methods.lesion " + " ".join(argv if argv is not None else sys.argv[1:])
    with open(out / "lesion.json", "w") as f:
        json.dump(results, f, indent=1)
    if not args.no_tensorboard:
        _to_tensorboard(os.path.join(args.workdir, "tensorboard", "lesion"), figures, out)
    single = results["single_deletions"]
    worst = max(single["blocks"], key=lambda r: r["error"])
    print(f"lesion: baseline error {single['baseline_error']:.4f}; worst single deletion "
          f"{worst['name']} {worst['error']:.4f}; wrote {out / 'lesion.json'} and {len(figures)} PNGs")
    return 0
