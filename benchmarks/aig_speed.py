"""Wall-clock savings of ConvNet-AIG's skipped blocks against the theoretical MAC saving.

    python benchmarks/aig_speed.py [--model aig_resnet110] [--rate 0.7] [--rounds 5]

One network, two ways of running it at inference (batch 1 and batch 32, tf.function, float32,
on random 32x32 inputs): with its gates (blocks whose gate is off are not computed,
`inference_gates="deterministic"`) and with every block executed (`inference_gates="all"`, the
same weights, no gates evaluated). Both are traced inside `model.frozen_weights()`, the form
the exported model runs (BatchNorm folded once), so they differ only in the gating, and both
are traced for the batch size timed, as a serving signature with `export.batch_size` set is
(at batch 1 a gated block is then one cond). `aig_any_batch` is the gated network traced for
any batch size, as the default serving signature (`export.batch_size: null`).
`all_gates_on_keras` is the plain network as the Keras layers run it (BN unfolded), for
reference.

The network stands in for a trained one. Its batch-norm statistics and affine parameters are
random, as after training (a freshly built network's fold to zero biases, whose adds
TensorFlow's optimiser deletes). The gates are set, not trained: each gate's last layer gets a
random kernel (so decisions differ per image) and a bias that opens it for a fraction `--rate`
of the `--images` random test images, counted on the inputs it sees when the gates before it
skip as they decide: every gated block runs at that rate, as in a trained AIG at target t.
The same is timed in onnxruntime on the exported graphs at batch 1.

Theoretical saving = 1 - expected MACs / MACs with every block (flops.py), over the test
images; realised share = wall-clock saving / theoretical saving (goal at batch 1: >= 0.6).
Every timed call takes the next batch of those test images, so the blocks executed are the
ones counted. The modes take turns of `--burst` calls, so that the machine's changing load
hits all alike; the median of `--rounds` rounds is reported, with the load average
(os.getloadavg) before and after. Writes benchmarks/results/aig_speed.json.
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
from garden.methods.aig.gate import Gate  # noqa: E402
from garden.registry import MODELS, import_all  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "aig_speed.json")


def calibrate_gates(model, images, rate, seed=0):
    """Random gate kernels and biases so that each gate opens for a fraction `rate` of `images`,
    on the inputs it sees when the gates before it skip as they decide."""
    rng = np.random.default_rng(seed)
    x = model.forward_stem(images)
    for index, block in enumerate(model.blocks):
        gate_index = model._gate_of.get(index)
        if gate_index is None:
            x = block(x, training=False)
            continue
        gate = model.gates[gate_index]
        kernel = rng.standard_normal(gate.fc2.kernel.shape).astype(np.float32)
        gate.fc2.kernel.assign(kernel)
        gate.fc2.bias.assign(np.zeros(2, np.float32))
        logits = np.asarray(gate(x, training=False))
        margin = logits[:, 1] - logits[:, 0]
        # Execute where margin > q: q the (1 - rate) quantile of the margins.
        gate.fc2.bias.assign(np.array([np.quantile(margin, 1.0 - rate), 0.0], np.float32))
        execute = np.asarray(Gate.decide(gate(x, training=False)), bool)[:, None, None, None]
        x = np.where(execute, block(x, training=False), block.combine(block.shortcut(x)))


def randomise_batch_norm(model, seed=0):
    """Batch-norm statistics and affine parameters as a trained network has them (a freshly
    built one has mean 0, variance 1, scale 1 and offset 0: its folded biases are all zero, and
    TensorFlow's graph optimiser deletes adds of zero constants, an op no trained network saves)."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0.0, 0.1, n).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, n).astype(np.float32))
            if layer.gamma is not None:
                layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype(np.float32))
            if layer.beta is not None:
                layer.beta.assign(rng.normal(0.0, 0.1, n).astype(np.float32))


def time_rounds(fns, batches, rounds, seconds, burst=4):
    """{name: [examples/s per round]}. In every round the modes take turns, `burst` calls at a
    time, until each has run for about `seconds`; the calls cycle through `batches` (so that the
    blocks executed are those of the whole test set, not of one image). Turns of a few calls
    expose every mode alike to this shared machine's changing load: rounds of whole seconds per
    mode differed by up to 30% here."""
    size = int(batches[0].shape[0])
    rates = {name: [] for name in fns}
    for fn in fns.values():  # warm-up (tracing)
        fn(batches[0])
    for _ in range(rounds):
        spent, calls = dict.fromkeys(fns, 0.0), dict.fromkeys(fns, 0)
        while min(spent.values()) < seconds:
            for name, fn in fns.items():
                start = time.perf_counter()
                for _ in range(burst):
                    fn(batches[calls[name] % len(batches)])
                    calls[name] += 1
                spent[name] += time.perf_counter() - start
        for name in fns:
            rates[name].append(calls[name] * size / spent[name])
    return rates


def onnx_session(model, mode, shape, workdir, batch=None):
    """An onnxruntime session of the frozen network in `mode`, written by the export stage's
    `write_onnx` for batch size `batch` (None: any batch, the default serving signature)."""
    import onnxruntime as ort

    from export.onnx_model import write_onnx

    signature = {"x": tf.TensorSpec([batch, *shape], tf.float32, name="x")}
    fn = tf.function(lambda inputs: _forward(model, mode, inputs["x"], frozen=True), input_signature=[signature])
    path = os.path.join(workdir, f"{mode}_{batch}.onnx")
    write_onnx(fn, signature, path)
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
    parser.add_argument("--images", type=int, default=256,
                        help="random test images: the gates are set on them, and every timed call takes the next")
    parser.add_argument("--burst", type=int, default=4, help="calls per turn when the modes alternate")
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
    randomise_batch_norm(model)

    count = count_macs(model, shape[:2])
    test = rng.standard_normal((max(args.images, max(args.batches)), *shape)).astype(np.float32)
    # Set on the timed images themselves, so that each gate runs for `--rate` of them.
    calibrate_gates(model, test, args.rate)
    model.inference_gates = "deterministic"
    rates = np.asarray(model(test, training=False)["gates"]).mean(axis=0)
    theoretical = 1.0 - expected_macs(count, rates) / count.plain

    load_before = os.getloadavg()
    results, profiles = {}, None
    for batch in args.batches:
        batches = [tf.constant(test[i:i + batch]) for i in range(0, len(test) - batch + 1, batch)]

        # Each mode is traced once (the mode is read at trace time), for this batch size: a
        # static batch of one takes conditional.py's one-cond path. `aig_any_batch` is traced
        # for any batch size, as the export stage's default serving signature.
        fns = {name: tf.function(lambda x, _m=mode, _f=frozen: _forward(model, _m, x, _f))
               for name, mode, frozen in (("aig", "deterministic", True), ("all_gates_on", "all", True),
                                          ("all_gates_on_keras", "all", False))}
        fns["aig_any_batch"] = tf.function(lambda x: _forward(model, "deterministic", x, True),
                                           input_signature=[tf.TensorSpec([None, *shape], tf.float32)])
        timed = time_rounds(fns, batches, args.rounds, args.seconds, args.burst)
        results[f"tensorflow_batch{batch}"] = _summary(timed, theoretical)
        if args.profile and batch == 1:
            profiles = {name: op_profile(fn, (batches[0],)) for name, fn in fns.items()}
    with tempfile.TemporaryDirectory() as tmp:
        # The batch-1 graph (export.batch_size: 1) and the any-batch graph, both at batch 1.
        sessions = {"aig": onnx_session(model, "deterministic", shape, tmp, batch=1),
                    "all_gates_on": onnx_session(model, "all", shape, tmp, batch=1),
                    "aig_any_batch": onnx_session(model, "deterministic", shape, tmp)}
        timed = time_rounds(sessions, [test[i:i + 1] for i in range(len(test))], args.rounds, args.seconds,
                            args.burst)
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
    """Medians over the rounds. The saving is the median of each round's own saving (time per
    example: 1/aig against 1/every-gate-on, measured in the same round), so a round in which
    the whole machine ran slower does not skew it."""
    summary = {f"examples_per_second_{name}": float(np.median(rates)) for name, rates in timed.items()}
    summary.update({f"rounds_{name}": [round(float(v), 2) for v in rates] for name, rates in timed.items()})
    full = np.asarray(timed["all_gates_on"])
    for name in [n for n in timed if n.startswith("aig")]:
        saving = float(np.median(1.0 - full / np.asarray(timed[name])))
        suffix = name[len("aig"):]
        summary[f"wall_clock_saving{suffix}"] = saving
        summary[f"realised_share_of_theoretical{suffix}"] = saving / theoretical
    return summary


if __name__ == "__main__":
    main()
