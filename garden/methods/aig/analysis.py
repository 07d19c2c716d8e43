"""Execution rates per block and class (thesis Fig. 5.4) and per-image layer counts (Fig. 5.6).

    python -m garden.methods.aig rates --config configs/aig/X.yaml --workdir runs/X \
        --out docs/images/aig_rates.png [--json rates.json] [--split test]

loads the best checkpoint of a trained AIG run, runs the chosen split with the model's gates
(deterministic unless the config says otherwise), and writes a heatmap of the fraction of images
of each class that execute each block, plus a JSON with the rates, the executed-block histogram
and the expected MACs.
"""

from __future__ import annotations

import json
import os

import numpy as np

__all__ = ["collect_gates", "rates_by_class", "plot_rates", "rate_report"]


def collect_gates(task, dataset, label_key="label"):
    """(gates [N, blocks] float 0/1, labels [N] int, correct [N] bool) over a (features, labels)
    dataset, with the task's model at inference."""
    gates, labels, correct = [], [], []
    for features, targets in dataset:
        out = task(features, training=False)
        y = np.asarray(targets[label_key]).reshape(-1)
        gates.append(np.asarray(out["gates"]))
        labels.append(y)
        correct.append(np.argmax(np.asarray(out["logits"]), axis=-1) == y)
    return np.concatenate(gates), np.concatenate(labels).astype(np.int64), np.concatenate(correct)


def rates_by_class(gates, labels, num_classes):
    """[num_classes, blocks]: the fraction of each class' images that execute each block (a
    class without images gets NaN)."""
    gates = np.asarray(gates, np.float64)
    onehot = np.eye(num_classes)[np.asarray(labels)]  # [N, classes]
    counts = onehot.sum(axis=0)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (onehot.T @ gates) / counts


def rate_report(gates, labels, num_classes, block_names, gated_mask, count=None):
    """A JSON-able summary: overall and per-class rates per block, executed-block histogram,
    expected MACs (with a flops.MacCount)."""
    from garden.methods.aig.flops import expected_macs

    gated = np.asarray(gated_mask, bool)
    executed = np.asarray(gates)[:, gated].sum(axis=1)
    overall = np.asarray(gates).mean(axis=0)
    report = {
        "num_images": int(len(labels)),
        "blocks": list(block_names),
        "gated": [bool(g) for g in gated],
        "rate_per_block": [float(r) for r in overall],
        "rate_per_class_and_block": [[float(v) for v in row] for row in rates_by_class(gates, labels, num_classes)],
        "executed_gated_blocks": {"mean": float(executed.mean()), "std": float(executed.std()),
                                  "of": int(gated.sum()),
                                  "histogram": np.bincount(executed.astype(int), minlength=int(gated.sum()) + 1).tolist()},
    }
    if count is not None:
        report["macs_expected"] = expected_macs(count, overall)
        report["macs_all_blocks"] = count.plain
    return report


def plot_rates(rates, block_names, class_names, gated_mask, path, title=None):
    """A heatmap PNG: rows = classes, columns = blocks, colour = execution rate (Fig. 5.4)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = np.asarray(rates, np.float64)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.28 * rates.shape[1] + 2.5), 0.35 * rates.shape[0] + 2.2))
    image = ax.imshow(rates, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    ax.set_yticks(range(len(class_names)), class_names, fontsize=8)
    labels = [name.replace("stage", "s").replace("_block", "b") + ("" if g else "*")
              for name, g in zip(block_names, gated_mask)]
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_xlabel("residual block (* = always executed: no gate)")
    fig.colorbar(image, ax=ax, label="execution rate")
    ax.set_title(title or "ConvNet-AIG execution rate per block and class")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def rates_from_run(config, workdir, split=None):
    """(report dict, task) for the best checkpoint of a trained run on `split` (default: test)."""
    from garden.data.pipeline import build_dataset
    from garden.methods.aig.flops import count_macs
    from garden.trainer import load_task, setup_runtime

    with setup_runtime(config.trainer):
        task, _ = load_task(config, workdir)
        split = split or config.data.test_split
        data = build_dataset(config.data, split, batch_size=config.data.batch_size, training=False)
        gates, labels, correct = collect_gates(task, data, task.label_key)
        model = task.model
        num_classes = int(task.data_info.get("num_classes") or labels.max() + 1)
        count = count_macs(model, task.image_shape[:2])
        report = rate_report(gates, labels, num_classes, model.block_names, model.gated_mask, count)
        report.update(split=split, error=float(1.0 - correct.mean()),
                      class_names=task.data_info.get("class_names") or [str(c) for c in range(num_classes)])
    return report


def main(argv=None):
    import argparse

    from garden.config import load_config

    parser = argparse.ArgumentParser(prog="python -m garden.methods.aig",
                                     description="ConvNet-AIG analysis: execution rates per block and class.")
    sub = parser.add_subparsers(dest="command", required=True)
    rates = sub.add_parser("rates", help="execution-rate heatmap (thesis Fig. 5.4) of a trained run")
    rates.add_argument("--config", required=True)
    rates.add_argument("--workdir", required=True)
    rates.add_argument("--out", required=True, help="PNG path")
    rates.add_argument("--json", help="also write the rates as JSON here")
    rates.add_argument("--split", help="data split (default: the config's test split)")
    rates.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args(argv)

    config = load_config(args.config, args.set)
    report = rates_from_run(config, args.workdir, args.split)
    plot_rates(report["rate_per_class_and_block"], report["blocks"], report["class_names"], report["gated"],
               args.out, title=f"{config.experiment}: execution rate per block and class ({report['split']})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    print(f"wrote {args.out}: {report['num_images']} images, error {report['error']:.4f}, executed gated blocks "
          f"{report['executed_gated_blocks']['mean']:.2f} +- {report['executed_gated_blocks']['std']:.2f} "
          f"of {report['executed_gated_blocks']['of']}")
    return 0
