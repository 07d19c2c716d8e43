"""Training examples/s of the garden's ResNets against keras.applications and plain functional twins.

    python benchmarks/train_throughput.py [--steps 5] [--rounds 2] [--cases resnet50,resnet56]

Cases, each with and without `jit_compile`, all timed in one process with interleaved rounds so
that machine drift hits every model alike:
  resnet50  224x224, batch 16: garden `resnet50` (subclassed) vs `keras.applications.ResNet50`
            vs a functional model of exactly the garden architecture (stride on the 3x3, no conv bias)
  resnet56  32x32, batch 128: garden `resnet56` (pre-activation CIFAR, 1x1 projection shortcuts at
            stage entries) vs its functional twin
Reports examples/s, the ratio garden / reference, and achieved training FLOP/s (3x the forward
FLOPs from TF's graph profiler) as a fraction of this machine's measured fp32 matmul peak.
Writes benchmarks/results/train_throughput.json and its section of docs/results/performance.md.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

from benchmarks.common import (forward_flops, machine, markdown_table, matmul_peak_flops, median_seconds,  # noqa: E402
                               update_markdown_section, write_result)

PERFORMANCE_MD = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "docs", "results", "performance.md")


def _bn(x):
    return layers.BatchNormalization(epsilon=1e-5, momentum=0.9)(x)


def functional_resnet50(num_classes: int = 1000) -> keras.Model:
    """ResNet-50 v1.5 in the functional API, the same graph as the garden's subclassed model."""
    inputs = keras.Input((224, 224, 3))
    x = layers.Conv2D(64, 7, strides=2, padding="same", use_bias=False)(inputs)
    x = layers.ReLU()(_bn(x))
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    for stage, (width, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3))):
        for block in range(blocks):
            strides = 2 if stage > 0 and block == 0 else 1
            shortcut = x
            if block == 0:
                shortcut = _bn(layers.Conv2D(width * 4, 1, strides=strides, use_bias=False)(x))
            y = layers.ReLU()(_bn(layers.Conv2D(width, 1, use_bias=False)(x)))
            y = layers.ReLU()(_bn(layers.Conv2D(width, 3, strides=strides, padding="same", use_bias=False)(y)))
            y = _bn(layers.Conv2D(width * 4, 1, use_bias=False)(y))
            x = layers.ReLU()(layers.Add()([shortcut, y]))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(num_classes)(x), name="functional_resnet50")


def functional_preact_cifar_resnet(depth: int = 56, num_classes: int = 10) -> keras.Model:
    """Pre-activation CIFAR ResNet (He et al. 2016b) with 1x1 projection shortcuts, functional API."""
    n = (depth - 2) // 6
    inputs = keras.Input((32, 32, 3))
    x = layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    for stage, width in enumerate((16, 32, 64)):
        for block in range(n):
            strides = 2 if stage > 0 and block == 0 else 1
            pre = layers.ReLU()(_bn(x))
            shortcut = x
            if strides != 1 or x.shape[-1] != width:
                shortcut = layers.Conv2D(width, 1, strides=strides, use_bias=False)(pre)
            y = layers.Conv2D(width, 3, strides=strides, padding="same", use_bias=False)(pre)
            y = layers.Conv2D(width, 3, padding="same", use_bias=False)(layers.ReLU()(_bn(y)))
            x = layers.Add()([shortcut, y])
    x = layers.GlobalAveragePooling2D()(layers.ReLU()(_bn(x)))
    return keras.Model(inputs, layers.Dense(num_classes)(x), name=f"functional_resnet{depth}")


def garden_model(name: str, num_classes: int, **kwargs) -> keras.Model:
    from garden.registry import MODELS, import_all

    import_all()
    return MODELS.get(name)(num_classes=num_classes, **kwargs)


CASES = {
    "resnet50": dict(shape=(224, 224, 3), batch=16, classes=1000, reference="keras_applications",
                     models={"garden": lambda: garden_model("resnet50", 1000),
                             "keras_applications": lambda: keras.applications.ResNet50(weights=None, classifier_activation=None),
                             "functional": functional_resnet50}),
    "resnet56": dict(shape=(32, 32, 3), batch=128, classes=10, reference="functional",
                     models={"garden": lambda: garden_model("resnet56", 10, shortcut="projection"),
                             "functional": functional_preact_cifar_resnet}),
}


def train_step_fn(model, x, y, jit: bool):
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=jit)
    return lambda: model.train_on_batch(x, y)


def run_case(name: str, spec: dict, steps: int, rounds: int) -> list[dict]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(spec["batch"], *spec["shape"])).astype(np.float32)
    y = rng.integers(0, spec["classes"], size=(spec["batch"],))
    entries = []
    for label, factory in spec["models"].items():
        for jit in (False, True):
            model = factory()
            model(x[:1])
            entries.append(dict(case=name, model=label, jit_compile=jit, model_obj=model,
                                step=train_step_fn(model, x, y, jit), times=[],
                                flops=forward_flops(model, spec["shape"])))
    for _ in range(rounds):  # interleaved: each round times every entry once
        for e in entries:
            e["times"].append(median_seconds(e["step"], warmup=2, repeats=steps))
    rows = []
    for e in entries:
        seconds = float(np.median(e["times"]))
        rows.append(dict(case=name, model=e["model"], jit_compile=e["jit_compile"], batch=spec["batch"],
                         step_seconds=seconds, examples_per_s=spec["batch"] / seconds,
                         forward_gflops_per_example=e["flops"] / 1e9,
                         train_flops_per_s=3 * e["flops"] * spec["batch"] / seconds,
                         params=int(sum(np.prod(w.shape) for w in e["model_obj"].trainable_weights))))
    for row in rows:
        ref = next(r for r in rows if r["model"] == spec["reference"] and r["jit_compile"] == row["jit_compile"])
        row["ratio_vs_reference"] = row["examples_per_s"] / ref["examples_per_s"]
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args(argv)
    peak = matmul_peak_flops()
    rows = []
    for name in args.cases.split(","):
        rows.extend(run_case(name, CASES[name], args.steps, args.rounds))
    for row in rows:
        row["fraction_of_matmul_peak"] = row["train_flops_per_s"] / peak
    command = "python benchmarks/train_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:])
    payload = {"command": command.strip(), "machine": machine(), "matmul_peak_flops": peak, "rows": rows}
    write_result("train_throughput", payload)
    table = markdown_table(rows, ["case", "model", "jit_compile", "batch", "examples_per_s", "ratio_vs_reference",
                                  "forward_gflops_per_example", "fraction_of_matmul_peak"])
    body = (f"### Training throughput\n\n`{payload['command']}` on {machine()['cpu_count']} CPU cores "
            f"(TensorFlow {machine()['tensorflow']}); fp32 matmul peak measured at {peak / 1e9:.1f} GFLOP/s. "
            f"Ratio: examples/s over the case's reference (keras.applications for ResNet-50, the functional "
            f"twin for ResNet-56), same process, interleaved rounds, median of {args.rounds}x{args.steps} steps.\n\n"
            + table)
    update_markdown_section(PERFORMANCE_MD, "train_throughput", body)
    print(table)


if __name__ == "__main__":
    main()
