"""The lesion experiments of the Veit thesis, ch. 4, on a trained classifier.

    single_deletions   error with each block deleted in turn (Fig. 4.3)
    random_deletions   error with k random blocks deleted, several draws per k (Fig. 4.5a)
    random_swaps       error with k random pairs of compatible blocks swapped, against the
                       Kendall tau of the block order (Fig. 4.5b)
    path_gradients     gradient magnitude per path length by the thesis' sampling, the
                       total gradient by length and the effective paths (Fig. 4.6)
    path_statistics    the closed forms: Binomial(n, 1/2) path lengths and Eq. 4.8 (Fig. 4.7)

Every function takes the model (a garden ResNet or plain VGG with its trained weights), the
evaluation data as numpy arrays of *normalised* inputs, and a `numpy.random.Generator`, and
returns JSON-able dicts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from garden.errors import GardenError
from garden.methods.lesion import paths
from garden.methods.lesion.surgery import block_infos, is_residual, lesioned_logits, path_gradient_norm

__all__ = [
    "error_rate",
    "path_gradients",
    "path_statistics",
    "random_deletions",
    "random_swaps",
    "single_deletions",
]


def error_rate(model, images, labels, *, deleted=(), order=None, batch_size: int = 500) -> float:
    """Top-1 error of the lesioned model on (images, labels), in batches (eager: each plan is
    a different graph, and eager dispatch is cheap beside the convolutions)."""
    wrong = 0
    for start in range(0, len(images), batch_size):
        logits = lesioned_logits(model, images[start:start + batch_size], deleted=deleted, order=order)
        predicted = np.argmax(np.asarray(logits), axis=-1)
        wrong += int(np.sum(predicted != labels[start:start + batch_size]))
    return wrong / max(len(images), 1)


def single_deletions(model, images, labels, *, batch_size: int = 500) -> dict:
    """Fig. 4.3: the error with no block deleted, then with each deletable block deleted."""
    infos = block_infos(model)
    rows = [
        {"index": info.index, "name": info.name, "stage": info.stage, "downsampling": info.downsampling,
         "error": error_rate(model, images, labels, deleted=[info.index], batch_size=batch_size)}
        for info in infos
        if info.deletable
    ]
    return {"baseline_error": error_rate(model, images, labels, batch_size=batch_size), "blocks": rows}


def random_deletions(model, images, labels, ks: Sequence[int], draws: int, rng: np.random.Generator,
                     *, batch_size: int = 500) -> dict:
    """Fig. 4.5a: for each k, `draws` random sets of k deletable blocks (any stage, downsampling
    blocks included: the thesis samples among all n modules, Eq. 4.8), the error of each."""
    candidates = [info.index for info in block_infos(model) if info.deletable]
    rows = []
    for k in ks:
        if k > len(candidates):
            raise GardenError(f"cannot delete {k} blocks: the model has {len(candidates)} deletable blocks")
        errors, sets = [], []
        for _ in range(draws if k else 1):
            chosen = sorted(int(i) for i in rng.choice(candidates, size=k, replace=False))
            sets.append(chosen)
            errors.append(error_rate(model, images, labels, deleted=chosen, batch_size=batch_size))
        rows.append({"k": int(k), "errors": errors, "mean_error": float(np.mean(errors)),
                     "std_error": float(np.std(errors)), "deleted": sets})
    return {"num_deletable": len(candidates), "rows": rows}


def _swap_pairs(infos, k: int, rng: np.random.Generator) -> list[int]:
    """A block order after swapping k random pairs of compatible blocks (same swap key),
    downsampling blocks excluded (Sec. 4.3.2). Pairs are drawn one after another, so a block
    may move more than once, as in repeated random swaps."""
    groups: dict[int, list[int]] = {}
    for info in infos:
        if info.swap_key is not None:
            groups.setdefault(info.swap_key, []).append(info.index)
    groups = {key: members for key, members in groups.items() if len(members) >= 2}
    if not groups:
        raise GardenError("the model has no two compatible blocks to swap")
    keys = sorted(groups)
    # A group is picked in proportion to its number of pairs, so every pair is equally likely.
    weights = np.array([len(groups[g]) * (len(groups[g]) - 1) for g in keys], np.float64)
    order = list(range(len(infos)))
    for _ in range(k):
        members = groups[keys[rng.choice(len(keys), p=weights / weights.sum())]]
        a, b = rng.choice(members, size=2, replace=False)
        order[a], order[b] = order[b], order[a]
    return order


def random_swaps(model, images, labels, ks: Sequence[int], draws: int, rng: np.random.Generator,
                 *, batch_size: int = 500) -> dict:
    """Fig. 4.5b: for each k, `draws` orders made by k random swaps; error and Kendall tau."""
    infos = block_infos(model)
    rows = []
    for k in ks:
        for _ in range(draws if k else 1):
            order = _swap_pairs(infos, k, rng)
            rows.append({"k": int(k), "kendall_tau": paths.kendall_tau(order), "order": order,
                         "error": error_rate(model, images, labels, order=order, batch_size=batch_size)})
    return {"rows": rows}


def path_gradients(model, batches, samples_per_length: int, rng: np.random.Generator,
                   lengths: Sequence[int] | None = None, mass: float = 0.9) -> dict:
    """Fig. 4.6b/c: for each path length k, `samples_per_length` measurements of the gradient
    norm at the input of the first block through a random path entering k residual modules,
    each on the next batch of `batches` (a list of (images, labels), training data as in the
    thesis). One traced function serves every mask."""
    if not is_residual(model):
        raise GardenError(f"{type(model).__name__} has no skip connections: no path analysis")
    n = len(model.blocks)
    lengths = list(range(n + 1)) if lengths is None else [int(k) for k in lengths]
    measure = tf.function(lambda x, y, m: path_gradient_norm(model, x, y, m), reduce_retracing=True)
    means, stds, all_norms = [], [], []
    step = 0
    for k in lengths:
        norms = []
        for _ in range(samples_per_length):
            mask = np.zeros(n, np.float32)
            mask[rng.choice(n, size=k, replace=False)] = 1.0
            x, y = batches[step % len(batches)]
            step += 1
            norms.append(float(measure(tf.constant(x), tf.constant(y), tf.constant(mask))))
        all_norms.append(norms)
        means.append(float(np.mean(norms)))
        stds.append(float(np.std(norms)))
    share = paths.total_gradient_by_length(n, lengths, means)
    lo, hi = paths.effective_window(lengths, share, mass)
    pmf = paths.path_length_distribution(n)
    return {
        "n": n,
        "lengths": lengths,
        "mean_gradient_norm": means,
        "std_gradient_norm": stds,
        "gradient_norms": all_norms,
        "total_gradient_share": share.tolist(),
        "effective_mass": mass,
        "effective_lengths": [lo, hi],
        "paths_in_effective_range": float(pmf[lo:hi + 1].sum()),
        "mode_of_total_gradient": int(lengths[int(np.argmax(share))]),
    }


def path_statistics(n: int, deleted: Sequence[int] = (1, 10, 20)) -> dict:
    """Fig. 4.6a and Fig. 4.7: path-length distribution and Eq. 4.8 for n modules."""
    pmf = paths.path_length_distribution(n)
    lo, hi = int(round(n * 19 / 54)), int(round(n * 35 / 54))
    return {
        "n": n,
        "path_length_pmf": pmf.tolist(),
        "mean_length": n / 2,
        # Sec. 4.4.1 for n = 54: "more than 95% of paths go through 19 to 35 modules".
        "central_range": [lo, hi],
        "share_in_central_range": float(pmf[lo:hi + 1].sum()),
        "remaining_fraction": {str(d): paths.remaining_path_fraction(n, d).tolist() for d in deleted if d <= n},
    }
