"""Cost of one ConvNet-AIG gate decision at batch 1, as `Gate.fast_decision` writes it, against
the textbook form that TensorFlow fuses (MatMul + BiasAdd + Relu -> one oneDNN MatMul).

    python benchmarks/aig_gate_forms.py [--channels 16] [--size 32] [--rounds 7]

A chain of 50 gates in one tf.function, each on its own [1, S, S, C] input (default 32 x 32 x 16,
Adanet-110's first stage; a per-gate add keeps them apart, timed alone as `no_gate`), one TF
thread, float32. Per gate: the time above
`no_gate`, in microseconds, median over rounds; all forms are timed in the same rounds.
Writes benchmarks/results/aig_gate_forms.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402

from benchmarks.common import machine, write_result  # noqa: E402
from garden.methods.aig.gate import Gate  # noqa: E402

GATES = 50


def fused_decision(inputs, folded):
    """The same decision with the bias added after the matmul (remapper-fused) and matvec."""
    kernel, bias, w, threshold = folded
    hidden = tf.nn.relu(tf.nn.bias_add(tf.matmul(tf.reduce_mean(inputs, axis=[1, 2]), kernel), bias[0]))
    return tf.linalg.matvec(hidden, w[:, 0]) > threshold


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--size", type=int, default=32, help="height and width of the gate input")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=200, help="calls of the chain per form and round")
    args = parser.parse_args(argv)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((1, args.size, args.size, args.channels)).astype(np.float32))
    folds = []
    for _ in range(GATES):
        gate = Gate()
        gate.build((None, args.size, args.size, args.channels))
        gate.fc2.kernel.assign(rng.standard_normal(gate.fc2.kernel.shape).astype(np.float32))
        # A trained gate's folded bias is not zero (a zero add is deleted by TF's optimiser).
        gate.fc1.bias.assign(rng.standard_normal(gate.fc1.bias.shape).astype(np.float32))
        folds.append([t.numpy() for t in gate.fold(tf.float32)])

    def chain(decide):
        @tf.function
        def run(x):
            return tf.stack([tf.reshape(decide(x + float(i), folds[i]), []) for i in range(GATES)])
        return run

    forms = {"no_gate": chain(lambda x, folded: x[0, 0, 0, 0] > 0.0),
             # Given its folded weights, any Gate instance decides alike: the last one built.
             "fast_decision": chain(gate.fast_decision),
             "fused": chain(fused_decision)}
    np.testing.assert_array_equal(forms["fast_decision"](x).numpy(), forms["fused"](x).numpy())
    seconds = {name: [] for name in forms}
    for fn in forms.values():
        fn(x)
    for _ in range(args.rounds):
        for name, fn in forms.items():
            start = time.perf_counter()
            for _ in range(args.calls):
                fn(x)
            seconds[name].append((time.perf_counter() - start) / args.calls / GATES)
    base = np.asarray(seconds["no_gate"])
    per_gate = {name: float(np.median(np.asarray(v) - base) * 1e6) for name, v in seconds.items() if name != "no_gate"}
    report = {
        "command": "python " + " ".join([os.path.relpath(__file__)] + (argv or sys.argv[1:])),
        "channels": args.channels,
        "size": args.size,
        "microseconds_per_gate": per_gate,
        "fused_over_fast": per_gate["fused"] / per_gate["fast_decision"],
        "machine": machine(),
    }
    write_result("aig_gate_forms", report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
