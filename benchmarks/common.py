"""Shared measurement helpers for the benchmarks: timing, FLOP counting, matmul peak, reports."""

from __future__ import annotations

import json
import os
import platform
import time

import numpy as np

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def forward_flops(model, input_shape) -> int:
    """Forward-pass FLOPs of `model` at batch 1 (a multiply-add counts 2), from TF's graph profiler.

    The model's call is traced into a graph with its variables frozen to constants so that the
    profiler's per-op FLOP registry (Conv2D, MatMul, ...) sees every layer.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    fn = tf.function(lambda x: model(x, training=False))
    concrete = fn.get_concrete_function(tf.TensorSpec([1, *input_shape], tf.float32))
    frozen = convert_variables_to_constants_v2(concrete)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    stats = tf.compat.v1.profiler.profile(graph=frozen.graph, options=options)
    return int(stats.total_float_ops)


def matmul_peak_flops(size: int = 2048, repeats: int = 10) -> float:
    """This machine's achieved fp32 FLOP/s on a large square matmul (the practical peak)."""
    import tensorflow as tf

    a = tf.random.normal([size, size])
    b = tf.random.normal([size, size])
    matmul = tf.function(lambda a, b: tf.matmul(a, b))
    matmul(a, b).numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        result = matmul(a, b)
    result.numpy()
    return 2.0 * size**3 * repeats / (time.perf_counter() - start)


def median_seconds(fn, *, warmup: int = 2, repeats: int = 10) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def machine() -> dict:
    import tensorflow as tf

    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "gpus": [d.name for d in tf.config.list_physical_devices("GPU")]}


def write_result(name: str, payload: dict) -> str:
    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = os.path.join(RESULTS_DIR, f"{name}.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
    return path


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for c in columns:
            v = row.get(c, "")
            cells.append(f"{v:.3g}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def update_markdown_section(path: str, section: str, body: str) -> None:
    """Replace (or append) the block between `<!-- section -->` markers in a markdown file."""
    begin, end = f"<!-- {section} -->", f"<!-- /{section} -->"
    text = open(path).read() if os.path.exists(path) else ""
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + ("\n\n" if text else "") + block + "\n"
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def op_profile(fn, args, calls: int = 20) -> dict:
    """Per TensorFlow op type: milliseconds and op executions per call of `fn(*args)`.

    Runs `calls` calls under `tf.profiler` and reads the trace (xplane protobuf, shipped with
    TensorFlow), so no TensorBoard plugin is needed. Op durations overlap when ops run in
    parallel, so the times are per-op costs, not a split of the wall time.
    """
    import collections
    import glob
    import tempfile

    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    for _ in range(3):  # trace and warm up outside the profile
        fn(*args)
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(calls):
            result = fn(*args)
            getattr(result, "numpy", lambda: None)()
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        with open(sorted(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True))[-1], "rb") as f:
            space.ParseFromString(f.read())
    ms, count = collections.Counter(), collections.Counter()
    for plane in space.planes:
        names = {key: meta.name for key, meta in plane.event_metadata.items()}
        for line in plane.lines:
            for event in line.events:
                name = names.get(event.metadata_id, "")
                op_type = name.rsplit(":", 1)[-1].strip()
                if ":" in name and not op_type.startswith("__"):  # kernels: "op_name:OpType"
                    ms[op_type] += event.duration_ps / 1e9 / calls
                    count[op_type] += 1 / calls
    return {op: {"ms_per_call": round(ms[op], 3), "ops_per_call": round(count[op], 1)} for op, _ in ms.most_common()}
