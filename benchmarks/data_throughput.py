"""Input-pipeline throughput beside the rate at which a small ResNet trains on the same batches.

    python benchmarks/data_throughput.py                   # both setups, defaults below
    python benchmarks/data_throughput.py --only objects --num-examples 512 --batches 40

For each setup the real source is loaded (`load_source`, generated and cached on first use under
$GARDEN_DATA_DIR or `--data-dir`), fed through `garden.data.pipeline.build_dataset` with the
training augmentation, and timed after one warm-up epoch (so the in-memory cache is full):

- `objects`: `toyworld:objects` at 64x64, classification; augmentation: 4-pixel padded crop,
  horizontal flip, colour jitter 0.4.
- `scenes`: `toyworld:scenes` at 128x128 with every dense label (segmentation, instance map,
  depth, normals, mask, boxes); augmentation: dense-aware flip and scale jitter (0.75, 1.33).

The training rate is that of `model.fit` of a pre-activation ResNet-20 (`garden.nn.resnet`,
CIFAR layout: 16/32/64 channels) classifying the batch images (scenes: the class of the first
box), on batches taken from the pipeline once and held in memory, timed after a warm-up fit.
The goal is a pipeline at least 3x faster than training consumes. Both rates are measured one
after the other on the same machine (on a CPU-only machine they would share its cores in a
real run). Results: `benchmarks/results/data_throughput.json` and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from garden.data import augment, pipeline  # noqa: E402
from garden.data.config import AugmentConfig, DataConfig  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "data_throughput.json")

SETUPS = {
    "objects": dict(
        name="toyworld:objects", image_size=(64, 64), label_keys=["label"],
        augment=AugmentConfig(crop_padding=4, horizontal_flip=True, color_jitter=0.4)),
    "scenes": dict(
        name="toyworld:scenes", image_size=(128, 128), label_keys=None,
        augment=AugmentConfig(horizontal_flip=True, scale_jitter=(0.75, 1.33))),
}


def make_config(setup: str, num_examples: int, batch_size: int, data_dir: str | None) -> DataConfig:
    s = SETUPS[setup]
    options = {"image_size": list(s["image_size"]), "num_train": num_examples, "num_validation": 0,
               "num_test": 0}
    return DataConfig(name=s["name"], options=options, data_dir=data_dir, label_keys=s["label_keys"],
                      batch_size=batch_size, image_size=s["image_size"], augment=s["augment"])


def pipeline_rate(ds: tf.data.Dataset, warmup: int, batches: int) -> tuple[float, float, list]:
    """Examples/s and CPU ms per example (all threads of this process) over `batches` batches
    after `warmup` batches; also returns a few batches. The CPU cost is the steadier number on
    a shared machine: cores / cost estimates the rate on a machine of that many free cores."""
    it = iter(ds.repeat())
    kept = []
    for _ in range(warmup):
        batch = next(it)
        if len(kept) < 4:
            kept.append(batch)
    count = 0
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        features, _ = next(it)
        count += int(features["image"].shape[0])
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return count / wall, 1e3 * cpu / count, kept


def build_model(image_shape, num_classes: int) -> keras.Model:
    from garden.nn.resnet import resnet20

    inputs = keras.Input(image_shape)
    model = keras.Model(inputs, resnet20(num_classes=num_classes)(augment.normalize(inputs)), name="classifier")
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model, "garden.nn.resnet.resnet20"


def train_rate(batches: list, target_fn, num_classes: int, steps: int) -> tuple[float, str]:
    """Examples/s of `model.fit` on the given batches, held in memory and repeated."""
    images = tf.concat([b[0]["image"] for b in batches], 0)
    targets = tf.concat([target_fn(b[1]) for b in batches], 0)
    batch_size = int(batches[0][0]["image"].shape[0])
    data = tf.data.Dataset.from_tensor_slices((images, targets)).batch(batch_size, drop_remainder=True)
    data = data.cache().repeat()
    model, name = build_model(images.shape[1:], num_classes)
    model.fit(data, steps_per_epoch=2, epochs=1, verbose=0)  # trace, compile, warm up
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * batch_size / (time.perf_counter() - start), name


def first_box_class(labels, num_classes):
    return tf.clip_by_value(labels["box_labels"][:, 0], 0, num_classes - 1)


def run_setup(setup: str, args) -> dict:
    from garden.data.sources import load_source, source_info

    batch_size = args.batch_size or (128 if setup == "objects" else 32)
    config = make_config(setup, args.num_examples or (1024 if setup == "objects" else 256), batch_size,
                         args.data_dir)
    t0 = time.perf_counter()
    examples = load_source(config, config.train_split)
    num = int(examples.cardinality()) if examples.cardinality() >= 0 else sum(1 for _ in examples)
    source_seconds = time.perf_counter() - t0
    ds = pipeline.build_from_examples(examples, config, training=True, seed=0)
    warmup = math.ceil(num / batch_size) + 2  # one full epoch fills the cache
    rate, cpu_ms, kept = pipeline_rate(ds, warmup, args.batches)
    if setup == "objects":
        num_classes = source_info(config).num_classes or 1 + max(int(tf.reduce_max(b[1]["label"])) for b in kept)
        target = lambda labels: labels["label"]  # noqa: E731
    else:
        num_classes = 16
        target = lambda labels: first_box_class(labels, num_classes)  # noqa: E731
    train, model_name = train_rate(kept, target, num_classes, args.train_steps)
    spec = ds.element_spec
    return {
        "source": config.name,
        "image_size": list(config.image_size),
        "batch_size": batch_size,
        "num_examples": num,
        "source_prepare_seconds": round(source_seconds, 2),
        "augment": config.augment.model_dump(exclude_defaults=True),
        "label_keys": sorted(spec[1]),
        "pipeline_examples_per_s": round(rate, 1),
        "pipeline_cpu_ms_per_example": round(cpu_ms, 3),
        "train_model": model_name,
        "train_examples_per_s": round(train, 1),
        "ratio": round(rate / train, 2),
    }


def markdown(results: dict) -> str:
    lines = ["| setup | image | batch | pipeline ex/s | pipeline CPU ms/ex | ResNet-20 train ex/s | ratio (goal >= 3) |",
             "|---|---|---|---|---|---|---|"]
    for setup, r in results["setups"].items():
        h, w = r["image_size"]
        lines.append(f"| {setup} ({r['source']}) | {h}x{w} | {r['batch_size']} | "
                     f"{r['pipeline_examples_per_s']:.0f} | {r['pipeline_cpu_ms_per_example']:.2f} | "
                     f"{r['train_examples_per_s']:.0f} | {r['ratio']:.1f}x |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(SETUPS), action="append", help="run only this setup")
    parser.add_argument("--num-examples", type=int, default=None,
                        help="training examples to generate (default 1024 objects / 256 scenes)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 128 objects / 32 scenes")
    parser.add_argument("--batches", type=int, default=60, help="timed pipeline batches")
    parser.add_argument("--train-steps", type=int, default=10, help="timed training steps")
    parser.add_argument("--data-dir", default=None, help="toyworld cache (default $GARDEN_DATA_DIR)")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args(argv)

    devices = [d.device_type for d in tf.config.list_physical_devices()]
    results = {
        "command": "python benchmarks/data_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "devices": devices,
                    "load_average": [round(x, 2) for x in os.getloadavg()],
                    "tensorflow": tf.__version__, "keras": keras.__version__},
        "setups": {},
    }
    for setup in args.only or sorted(SETUPS):
        results["setups"][setup] = run_setup(setup, args)
        print(f"{setup}: {json.dumps(results['setups'][setup])}", flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    print(markdown(results))
    print(f"wrote {args.out}")
    from benchmarks.common import update_markdown_section

    body = (f"### Input pipeline throughput\n\n`{results['command'].strip()}`: pipeline examples/s (training "
            f"augmentation, after a warm-up epoch fills the cache) beside the examples/s at which ResNet-20 "
            f"trains on the same batches; goal ratio >= 3. {results['machine']['cpu_count']} CPU cores, no GPU.\n\n"
            + markdown(results))
    update_markdown_section(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                         "docs", "results", "data.md"), "data_throughput", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
