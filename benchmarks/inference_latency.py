"""Serving latency of an exported model: TensorFlow SavedModel vs ONNX Runtime, batch 1 and 32.

    python run.py --config configs/quickstart.yaml          # produces runs/quickstart/export
    python benchmarks/inference_latency.py [--export-dir runs/quickstart/export] [--repeats 50]

Both artifacts are loaded the way a server would load them (tf.saved_model.load alone;
onnxruntime.InferenceSession on the CPU provider) and fed the same random uint8 images.
Writes benchmarks/results/inference_latency.json and its section of docs/results/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks.common import machine, markdown_table, median_seconds, update_markdown_section, write_result  # noqa: E402

PERFORMANCE_MD = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "docs", "results", "performance.md")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export-dir", default="runs/quickstart/export")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--batches", default="1,32")
    args = parser.parse_args(argv)
    manifest_path = os.path.join(args.export_dir, "manifest.json")
    if not os.path.exists(manifest_path):
        sys.exit(f"error: no manifest at {manifest_path}; run `python run.py --config configs/quickstart.yaml` first")
    manifest = json.load(open(manifest_path))
    import onnxruntime as ort
    import tensorflow as tf

    (input_name, spec), = manifest["inputs"].items()
    signature = tf.saved_model.load(os.path.join(args.export_dir, manifest["artifacts"]["saved_model"])
                                    ).signatures["serving_default"]
    session = ort.InferenceSession(os.path.join(args.export_dir, manifest["artifacts"]["onnx"]),
                                   providers=["CPUExecutionProvider"])
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        x = np.random.default_rng(0).integers(0, 256, size=(batch, *spec["shape"][1:])).astype(spec["dtype"])
        tensor = tf.constant(x)
        saved_model_s = median_seconds(lambda: signature(**{input_name: tensor}), warmup=5, repeats=args.repeats)
        onnx_s = median_seconds(lambda: session.run(None, {input_name: x}), warmup=5, repeats=args.repeats)
        rows.append(dict(batch=batch, saved_model_ms=saved_model_s * 1e3, onnx_runtime_ms=onnx_s * 1e3,
                         onnx_speedup=saved_model_s / onnx_s))
    command = "python benchmarks/inference_latency.py " + " ".join(argv if argv is not None else sys.argv[1:])
    payload = {"command": command.strip(), "machine": machine(), "model": manifest["name"],
               "input": spec, "rows": rows}
    write_result("inference_latency", payload)
    table = markdown_table(rows, ["batch", "saved_model_ms", "onnx_runtime_ms", "onnx_speedup"])
    body = (f"### Inference latency\n\n`{payload['command']}` on {machine()['cpu_count']} CPU cores, model "
            f"`{manifest['name']}` (input {spec['shape']} {spec['dtype']}); median of {args.repeats} calls "
            f"after 5 warm-up calls.\n\n" + table)
    update_markdown_section(PERFORMANCE_MD, "inference_latency", body)
    print(table)


if __name__ == "__main__":
    main()
