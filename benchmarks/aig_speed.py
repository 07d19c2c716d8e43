"""Wall-clock savings of ConvNet-AIG's skipped blocks against the theoretical MAC saving.

    python benchmarks/aig_speed.py [--model aig_resnet110] [--rate 0.7] [--rounds 5]

One network, two ways of running it at inference (batch 1 and batch 32, tf.function, float32,
on random 32x32 inputs): with its gates (blocks whose gate is off are not computed,
`inference_gates="deterministic"`) and with every block executed (`inference_gates="all"`, the
same weights, no gates evaluated). Both are traced inside `model.frozen_weights()`, the form
the exported model runs (BatchNorm folded once), so they differ only in the gating. A third
row, `all_gates_on_keras`, is the plain network as the Keras layers run it (BN unfolded), for
reference. The gates are set, not trained: each gate's last layer gets a random kernel (so
decisions differ per image) and a bias that opens it for a fraction `--rate` of random inputs,
so every gated block runs at about that rate, as a trained AIG at target t. The same is timed
in onnxruntime on the exported graph (batch 1).

Theoretical saving = 1 - expected MACs / MACs with every block (flops.py), over the test
images; realised share = wall-clock saving / theoretical saving (goal at batch 1: >= 0.6).
Every timed call takes the next batch of those test images, so the blocks executed are the
ones counted. Timings alternate between the modes in rounds, so that changing load from other
jobs hits all alike; the median round is reported with the load average (os.getloadavg)
before and after. Writes benchmarks/results/aig_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.common import op_profile  # noqa: E402
from garden.methods.aig.flops import count_macs, expected_macs  # noqa: E402
from garden.registry import MODELS, import_all  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "aig_speed.json")


def calibrate_gates(model, images, rate, seed=0):
    """Random gate kernels and biases so that each gate opens for a fraction `rate` of `images`."""
    rng = np.random.default_rng(seed)
    x = model.forward_stem(images)
    for index, block in enumerate(model.blocks):
        gate_index = model._gate_of.get(index)
        if gate_index is not None:
            gate = model.gates[gate_index]
            kernel = rng.standard_normal(gate.fc2.kernel.shape).astype(np.float32)
            gate.fc2.kernel.assign(kernel)
            gate.fc2.bias.assign(np.zeros(2, np.float32))
            logits = np.asarray(gate(x, training=False))
            margin = logits[:, 1] - logits[:, 0]
            # Execute where margin > q: q the (1 - rate) quantile of the margins.
            gate.fc2.bias.assign(np.array([np.quantile(margin, 1.0 - rate), 0.0], np.float32))
        x = block(x, training=False)


def time_rounds(fns, batches, rounds, seconds):
    """{name: [examples/s per round]}: every round runs each fn for about `seconds`, cycling
    through `batches` (so that the blocks executed are those of the whole test set, not of
    one image)."""
    size = int(batches[0].shape[0])
    rates = {name: [] for name in fns}
    for fn in fns.values():  # warm-up (tracing)
        fn(batches[0])
    for _ in range(rounds):
        for name, fn in fns.items():
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                fn(batches[n % len(batches)])
                n += 1
            rates[name].append(n * size / (time.perf_counter() - start))
    return rates


def onnx_session(model, mode, shape, workdir):
    import onnxruntime as ort
    import tf2onnx

    sig = [tf.TensorSpec([None, *shape], tf.float32, name="x")]
    fn = tf.function(lambda x: _forward(model, mode, x, frozen=True), input_signature=sig)
    path = os.path.join(workdir, f"{mode}.onnx")
    tf2onnx.convert.from_function(fn, input_signature=sig, opset=17, output_path=path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"x": x})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="aig_resnet110")
    parser.add_argument("--rate", type=float, default=0.7, help="execution rate of every gated block")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="per mode and round")
    parser.add_argument("--threads", type=int, default=1, help="TF intra-op threads (1: a shared CPU)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--calibration", type=int, default=256, help="random images used to set the gates")
    parser.add_argument("--profile", action="store_true",
                        help="also record per-op-type time and op counts of one batch-1 call per mode")
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args(argv)

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(0)
    import_all()
    shape = (args.image_size, args.image_size, 3)
    model = MODELS.get(args.model)()
    model.build((None, *shape))
    rng = np.random.default_rng(0)
    calibrate_gates(model, rng.standard_normal((args.calibration, *shape)).astype(np.float32), args.rate)

    count = count_macs(model, shape[:2])
    test = rng.standard_normal((max(args.calibration, max(args.batches)), *shape)).astype(np.float32)
    model.inference_gates = "deterministic"
    rates = np.asarray(model(test, training=False)["gates"]).mean(axis=0)
    theoretical = 1.0 - expected_macs(count, rates) / count.plain

    load_before = os.getloadavg()
    results, profiles = {}, None
    for batch in args.batches:
        batches = [tf.constant(test[i:i + batch]) for i in range(0, len(test) - batch + 1, batch)]

        # Each mode is traced once (the mode is read at trace time).
        fns = {name: tf.function(lambda x, _m=mode, _f=frozen: _forward(model, _m, x, _f))
               for name, mode, frozen in (("aig", "deterministic", True), ("all_gates_on", "all", True),
                                          ("all_gates_on_keras", "all", False))}
        timed = time_rounds(fns, batches, args.rounds, args.seconds)
        results[f"tensorflow_batch{batch}"] = _summary(timed, theoretical)
        if args.profile and batch == 1:
            profiles = {name: op_profile(fn, (batches[0],)) for name, fn in fns.items()}
    with tempfile.TemporaryDirectory() as tmp:
        sessions = {"aig": onnx_session(model, "deterministic", shape, tmp),
                    "all_gates_on": onnx_session(model, "all", shape, tmp)}
        timed = time_rounds(sessions, [test[i:i + 1] for i in range(len(test))], args.rounds, args.seconds)
        results["onnxruntime_batch1"] = _summary(timed, theoretical)
    load_after = os.getloadavg()

    report = {
        "command": "python " + " ".join([os.path.relpath(__file__)] + (argv or sys.argv[1:])),
        "model": args.model,
        "image_size": args.image_size,
        "gate_rate_setting": args.rate,
        "mean_execution_rate_gated_blocks": float(rates[model.gated_indices].mean()),
        "macs_all_blocks": count.plain,
        "macs_expected_aig": expected_macs(count, rates),
        "macs_gates": sum(count.gates),
        "theoretical_saving": theoretical,
        "results": results,
        "op_profile_batch1": profiles,
        "threads": args.threads,
        "load_average_before": list(load_before),
        "load_average_after": list(load_after),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "tensorflow": tf.__version__,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))


def _forward(model, mode, x, frozen):
    model.inference_gates = mode
    if not frozen:
        return model(x, training=False)["logits"]
    with model.frozen_weights():
        return model(x, training=False)["logits"]


def _summary(timed, theoretical):
    summary = {f"examples_per_second_{name}": float(np.median(rates)) for name, rates in timed.items()}
    summary.update({f"rounds_{name}": [round(float(v), 2) for v in rates] for name, rates in timed.items()})
    aig, full = summary["examples_per_second_aig"], summary["examples_per_second_all_gates_on"]
    saving = 1.0 - full / aig  # time per example: 1/aig vs 1/full
    summary.update(wall_clock_saving=float(saving), realised_share_of_theoretical=float(saving / theoretical))
    return summary


if __name__ == "__main__":
    main()
