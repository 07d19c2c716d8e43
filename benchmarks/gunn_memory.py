"""GUNN training memory and speed: Algorithm 2 (recompute) vs plain autodiff vs SUNN vs a ResNet.

    python benchmarks/gunn_memory.py [--batch 64] [--size 32] [--steps 5] [--network small|gunn15]

Every variant runs in a fresh subprocess (peak memory is a per-process high-water mark):
build the network, trace the training step without running it (`get_concrete_function`), read
the peak memory as the baseline, run `warmup + steps` SGD steps, and report

    peak_mb          training-time peak above the baseline: ru_maxrss on a CPU, or
                     tf.config.experimental.get_memory_info("GPU:0")["peak"] on a GPU
    examples_per_s   batch / median step time, measured in one more process that builds every
                     variant and interleaves their steps for `--rounds` rounds (the ratios use
                     these; `examples_per_s_alone` is the memory process's own timing)
    flops            forward FLOPs at batch 1 (benchmarks/common.py forward_flops)

Variants: the scaled GUNN-15 of configs/gunn/gunn15_small_fashion_mnist.yaml at twice the width
(stem 16, N = 48/60/72, P = 4/5/6, K = 2; 12-channel segments as GUNN-15) with `reconstruct`,
`recompute` and `autodiff` backprop, SUNN (same weights and FLOPs), and a CIFAR pre-activation
ResNet-20 whose width multiplier gives about the same FLOPs. `--network gunn15` measures the thesis' GUNN-15
itself (N = 240/300/360, P = 20/25/30): the activation memory autodiff keeps grows with P, so the
trade-off at the paper's P is not the one at P = 4-6. Writes
benchmarks/results/gunn_memory[_gunn15].json and the marked section of docs/results/gunn.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

GUNN_ARGS = dict(num_classes=10, stem_width=16, widths=(48, 60, 72), segments=(4, 5, 6), expansion=2,
                 final_width=72)
# The thesis' GUNN-15 (Table 4-I) at paper scale, 10 classes.
GUNN15_ARGS = dict(num_classes=10, stem_width=64, widths=(240, 300, 360), segments=(20, 25, 30), expansion=2,
                   final_width=360)
NETWORKS = {"small": GUNN_ARGS, "gunn15": GUNN15_ARGS}
VARIANTS = {
    "gunn_reconstruct": dict(mode="gunn", backprop="reconstruct"),
    "gunn_recompute": dict(mode="gunn", backprop="recompute"),
    "gunn_autodiff": dict(mode="gunn", backprop="autodiff"),
    "sunn": dict(mode="sunn", backprop="autodiff"),
    "resnet20": None,  # width multiplier chosen for equal FLOPs in the parent
}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kilobytes


def _build(variant: str, resnet_width: float, network: str = "small"):
    from garden.methods.gunn.models import GUNNNet
    from garden.nn import resnet

    if variant == "resnet20":
        return resnet.resnet20(width_multiplier=resnet_width, num_classes=10)
    return GUNNNet(**NETWORKS[network], **VARIANTS[variant])


def _training_step(variant: str, resnet_width: float, network: str, size: int):
    """The variant's model and a traced SGD training step (the same for memory and speed)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = _build(variant, resnet_width, network)
    model.build((None, size, size, 3))
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    optimizer.build(model.trainable_variables)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return model, step


def _batch(batch: int, size: int):
    import tensorflow as tf

    return tf.random.normal([batch, size, size, 3]), tf.random.uniform([batch], 0, 10, tf.int32)


def speed_child(variants, batch: int, size: int, rounds: int, resnet_width: float, network: str) -> dict:
    """Examples/s of every variant in one process, their steps interleaved round by round.

    Separate processes measured minutes apart on a shared (virtualised) CPU disagreed by up to
    40% run to run; interleaving exposes every variant to the same load, so the ratios hold.
    """
    import numpy as np

    x, y = _batch(batch, size)
    steps = {}
    for variant in variants:
        steps[variant] = _training_step(variant, resnet_width, network, size)[1]
        steps[variant](x, y).numpy()  # trace and warm up
    times = {variant: [] for variant in variants}
    for _ in range(rounds):
        for variant in variants:
            start = time.perf_counter()
            steps[variant](x, y).numpy()
            times[variant].append(time.perf_counter() - start)
    return {variant: round(batch / float(np.median(t)), 2) for variant, t in times.items()}


def child(variant: str, batch: int, size: int, steps: int, warmup: int, resnet_width: float,
          network: str = "small") -> dict:
    import numpy as np
    import tensorflow as tf

    from benchmarks.common import forward_flops

    gpu = bool(tf.config.list_physical_devices("GPU"))
    model, step = _training_step(variant, resnet_width, network, size)
    flops = forward_flops(model, (size, size, 3))
    x, y = _batch(batch, size)

    start = time.process_time()
    step.get_concrete_function(x, y)  # trace only: graph memory goes into the baseline
    trace_cpu = time.process_time() - start
    if gpu:
        tf.config.experimental.reset_memory_stats("GPU:0")
        baseline = tf.config.experimental.get_memory_info("GPU:0")["current"] / 2**20
    else:
        baseline = _rss_mb()
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        step(x, y).numpy()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    peak = (tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20 if gpu else _rss_mb())
    median = float(np.median(times))
    return {"variant": variant, "params": int(model.count_params()), "flops": flops, "batch": batch,
            "input": [size, size, 3], "peak_mb": round(peak - baseline, 1), "baseline_mb": round(baseline, 1),
            "median_step_s": round(median, 4), "examples_per_s": round(batch / median, 2),
            "trace_cpu_s": round(trace_cpu, 1), "device": "GPU" if gpu else "CPU", "timed_steps": steps}


def _resnet_width_for(flops_target: float, size: int) -> float:
    """The ResNet-20 width multiplier (in steps of 0.05) whose FLOPs are closest to the target."""
    from benchmarks.common import forward_flops
    from garden.nn import resnet

    base = forward_flops(resnet.resnet20(num_classes=10), (size, size, 3))
    width = round(20 * (flops_target / base) ** 0.5) / 20  # FLOPs grow with width squared
    return max(width, 0.05)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--network", default="small", choices=list(NETWORKS),
                        help="small: the scaled GUNN-15 (default); gunn15: the thesis' GUNN-15")
    parser.add_argument("--rounds", type=int, default=10,
                        help="interleaved speed rounds: every variant steps once per round")
    parser.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--speed-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--resnet-width", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.speed_child:
        print("RESULT " + json.dumps(speed_child(args.variants, args.batch, args.size, args.rounds,
                                                 args.resnet_width, args.network)), flush=True)
        return 0
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args.batch, args.size, args.steps, args.warmup,
                                           args.resnet_width, args.network)), flush=True)
        return 0

    from benchmarks.common import forward_flops, machine, update_markdown_section, write_result
    from benchmarks.gunn_reproduce import MARKDOWN
    from garden.methods.gunn.models import GUNNNet

    gunn = GUNNNet(**NETWORKS[args.network], **VARIANTS["gunn_recompute"])
    gunn.build((None, args.size, args.size, 3))
    resnet_width = _resnet_width_for(forward_flops(gunn, (args.size, args.size, 3)), args.size)
    rows = []
    started = time.time()
    for variant in args.variants:
        command = [sys.executable, os.path.abspath(__file__), "--child", variant, "--batch", str(args.batch),
                   "--size", str(args.size), "--steps", str(args.steps), "--warmup", str(args.warmup),
                   "--resnet-width", str(resnet_width), "--network", args.network]
        out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO).stdout
        row = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[len("RESULT "):])
        if variant == "resnet20":
            row["width_multiplier"] = resnet_width
        print(json.dumps(row), flush=True)
        rows.append(row)
    command = [sys.executable, os.path.abspath(__file__), "--speed-child", "--variants", *args.variants,
               "--batch", str(args.batch), "--size", str(args.size), "--rounds", str(args.rounds),
               "--resnet-width", str(resnet_width), "--network", args.network]
    out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO).stdout
    speeds = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[len("RESULT "):])
    for row in rows:  # the interleaved figure is the one the ratios use; the lone one stays for reference
        row["examples_per_s_alone"] = row["examples_per_s"]
        row["examples_per_s"] = speeds[row["variant"]]
    print(json.dumps(speeds), flush=True)
    by = {r["variant"]: r for r in rows}
    ratios = {}
    gunns = [v for v in VARIANTS if v.startswith("gunn_") and v in by]
    if "sunn" in by:
        for v in gunns:
            ratios[f"{v}_over_sunn_speed"] = by[v]["examples_per_s"] / by["sunn"]["examples_per_s"]
    if "resnet20" in by:
        for v in gunns:
            ratios[f"{v}_over_resnet20_speed"] = by[v]["examples_per_s"] / by["resnet20"]["examples_per_s"]
    payload = {"command": "python benchmarks/gunn_memory.py " + " ".join(argv or sys.argv[1:]),
               "machine": machine(), "wall_seconds": round(time.time() - started, 1), "rows": rows,
               "ratios": {k: round(v, 3) for k, v in ratios.items()}}
    name = "gunn_memory" if args.network == "small" else f"gunn_memory_{args.network}"
    path = write_result(name, payload)
    lines = ["| variant | params | forward FLOPs | peak training memory above baseline (MB) | examples/s (interleaved) "
             "| examples/s (alone) |", "|---|---|---|---|---|---|"]
    for r in rows:
        label = r["variant"] + (f" (width {r['width_multiplier']})" if "width_multiplier" in r else "")
        lines.append(f"| {label} | {r['params']:,} | {r['flops'] / 1e6:.1f} M | {r['peak_mb']:.0f} | "
                     f"{r['examples_per_s']:.1f} | {r['examples_per_s_alone']:.1f} |")
    lines += ["", "Ratios: " + ", ".join(f"{k} = {v:.2f}" for k, v in payload["ratios"].items()),
              "", f"Command: `{payload['command']}` (batch {args.batch}, {args.size}x{args.size}x3 inputs, "
              f"memory: {args.steps} timed steps after {args.warmup} warm-up steps, one fresh process per variant; "
              f"speed: {args.rounds} interleaved rounds in one process); "
              f"device: {rows[0]['device']}, {payload['machine']['cpu_count']} CPU cores shared with other jobs; "
              f"raw numbers: `{os.path.relpath(path, REPO)}`."]
    update_markdown_section(MARKDOWN, name.replace("_", "-"), "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
