"""The overlap-singularity argument of thesis Sec. 4.4 on a toy regression problem.

    python -m garden.methods.gunn.singularity [--steps 400] [--seed 0]

A two-layer linear network x (n) -> h (n) -> out = V h (m) is fitted by gradient descent to a
random linear teacher. The hidden layer is one of (thesis Eq. 4.7-4.9):

    plain      h_i = sum_j w_ij x_j
    residual   h_i = x_i + sum_j w_ij x_j
    gunn       h_i = x_i + sum_{j<i} w_ij h_j + sum_{j>=i} w_ij x_j   (updated in order)

Each starts with hidden neurons p and q = p + 1 *collapsed* (h_p = h_q for every input) and
with equal outgoing weights (V's columns p and q), the overlap singularity:
    plain:    w_q = w_p;
    residual: w_qp = w_pp + 1, w_pq = w_qq + 1, w_qj = w_pj otherwise (the thesis' conditions);
    gunn:     w_qp = 1, w_qq = -1, w_qj = 0 otherwise, so h_q = x_q + h_p - x_q = h_p.
The thesis' claim: plain and residual neurons stay collapsed under gradient descent (their
gradients are equal), while the gradual update breaks the tie (Eq. 4.10: h_p reaches the loss
through h_q as well, so the two receive different gradients). We record the RMS of h_p - h_q
over a batch and the loss every step, and write docs/results/gunn/singularity.json and
docs/images/gunn_singularity.png.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import tensorflow as tf

FORMS = ("plain", "residual", "gunn")


def hidden(form: str, w: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
    """h for a batch x [B, n] (columns are neurons)."""
    if form == "plain":
        return x @ tf.transpose(w)
    if form == "residual":
        return x + x @ tf.transpose(w)
    n = int(x.shape[1])
    columns = []
    for i in range(n):  # n is a handful of neurons: the sequential definition, as written
        state = tf.concat([tf.stack(columns, axis=1), x[:, i:]], axis=1) if columns else x
        columns.append(x[:, i] + tf.linalg.matvec(state, w[i]))
    return tf.stack(columns, axis=1)


def collapsed_init(form: str, n: int, p: int, rng: np.random.Generator) -> np.ndarray:
    w = rng.normal(0.0, np.sqrt(2.0 / n), (n, n))  # N(0, sqrt(2/n)), the thesis' initialisation
    q = p + 1
    if form == "plain":
        w[q] = w[p]
    elif form == "residual":
        w[q] = w[p]
        w[q, p] = w[p, p] + 1.0
        w[p, q] = w[q, q] + 1.0
    else:
        w[q] = 0.0
        w[q, p], w[q, q] = 1.0, -1.0
    return w.astype(np.float32)


def train(form: str, *, n: int = 8, m: int = 4, p: int = 2, steps: int = 400, lr: float = 0.05,
          batch: int = 256, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    teacher = rng.normal(0.0, 1.0 / np.sqrt(n), (m, n)).astype(np.float32)
    x = tf.constant(rng.normal(size=(batch, n)).astype(np.float32))
    target = x @ tf.transpose(teacher)
    w = tf.Variable(collapsed_init(form, n, p, rng))
    v0 = rng.normal(0.0, 1.0 / np.sqrt(n), (m, n)).astype(np.float32)
    v0[:, p + 1] = v0[:, p]  # equal outgoing weights: the two neurons are interchangeable
    v = tf.Variable(v0)
    gaps, losses = [], []
    for _ in range(steps):
        with tf.GradientTape() as tape:
            h = hidden(form, w, x)
            loss = tf.reduce_mean(tf.square(h @ tf.transpose(v) - target))
        gaps.append(float(tf.sqrt(tf.reduce_mean(tf.square(h[:, p] - h[:, p + 1])))))
        losses.append(float(loss))
        for var, g in zip((w, v), tape.gradient(loss, [w, v])):
            var.assign_sub(lr * g)
    return {"form": form, "gap_rms": gaps, "loss": losses}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    runs = [train(form, steps=args.steps, seed=args.seed) for form in FORMS]
    out = os.path.join(repo, "docs", "results", "gunn")
    os.makedirs(out, exist_ok=True)
    summary = {r["form"]: {"gap_at_start": r["gap_rms"][0], "gap_max": max(r["gap_rms"]),
                           "gap_at_end": r["gap_rms"][-1], "loss_at_end": r["loss"][-1]} for r in runs}
    with open(os.path.join(out, "singularity.json"), "w") as f:
        json.dump({"command": "python -m garden.methods.gunn.singularity " + " ".join(argv or []),
                   "summary": summary, "runs": runs}, f)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the plot is optional; the JSON has the numbers
        plt = None
    if plt is not None:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
        for r in runs:
            axes[0].plot(r["gap_rms"], label=r["form"])
            axes[1].plot(r["loss"], label=r["form"])
        axes[0].set(title="RMS of h_p - h_q (collapsed at start)", xlabel="GD step")
        axes[1].set(title="training loss", xlabel="GD step", yscale="log")
        axes[0].legend()
        fig.tight_layout()
        fig.savefig(os.path.join(repo, "docs", "images", "gunn_singularity.png"), dpi=100)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
