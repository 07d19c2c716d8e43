"""Metric-learning pieces shared by the embedding methods: distances, the triplet and
contrastive (Siamese) losses, triplet accuracy, and a seeded triplet sampler.

Users: Conditional Similarity Networks (seed 004, ch. 3: masked distance, triplet loss,
triplet prediction error), the embedding variant of visual-variation learning (seed 000:
Siamese margin 0.5, triplet margin 1 on squared distances) and the multi-triplet loss of
seed 003. The losses return one value per example; the caller reduces (mean over a batch
of triplets, scaled for replicas by a `keras.losses.Loss` or the Task).

Orientation: every function takes (anchor, positive, negative) with *positive* the image
that should be closer to the anchor. CSN's Eq. 3.4 names its triplet {reference, more
distant, closer}, which read literally would pull the far image in; the test rule and the
released code both mean "anchor-close < anchor-far" (specs/seed_004.md, M3), which is what
this module implements.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from garden.errors import ConfigError

__all__ = [
    "contrastive_loss",
    "embedding_distance",
    "sample_condition_triplets",
    "sample_triplets",
    "triplet_correct",
    "triplet_margin_loss",
]

# sqrt is not differentiable at 0 (a pair of identical embeddings): clamp its argument so the
# gradient stays finite. 1e-12 keeps the distance exact to float32 resolution elsewhere.
_SQRT_FLOOR = 1e-12


def embedding_distance(a, b, *, squared: bool = False, mask=None):
    """Row-wise distance ‖m ⊙ (a − b)‖₂ (or its square) between two `(batch, dim)` embeddings.

    `mask` (broadcastable to `a`, e.g. a CSN condition mask per row) weights each dimension
    before the norm: D(x_i, x_j; m) = ‖f(x_i) ⊙ m − f(x_j) ⊙ m‖₂ (seed 004, Eq. 3.3).
    """
    diff = tf.convert_to_tensor(a) - tf.convert_to_tensor(b)
    if mask is not None:
        diff = diff * tf.cast(mask, diff.dtype)
    sq = tf.reduce_sum(tf.square(diff), axis=-1)
    if squared:
        return sq
    return tf.sqrt(tf.maximum(sq, tf.cast(_SQRT_FLOOR, sq.dtype)))


def triplet_margin_loss(anchor, positive, negative, *, margin: float, squared: bool = False, mask=None):
    """max{0, D(a, p) − D(a, n) + margin} per triplet.

    CSN uses the Euclidean distance (Eq. 3.2/3.4, margin 0.2 in the released code); the
    visual-variation triplet head uses the squared distance with margin 1 (seed 000, Sec. 5.2).
    """
    d_pos = embedding_distance(anchor, positive, squared=squared, mask=mask)
    d_neg = embedding_distance(anchor, negative, squared=squared, mask=mask)
    return tf.nn.relu(d_pos - d_neg + tf.cast(margin, d_pos.dtype))


def contrastive_loss(a, b, is_similar, *, margin: float):
    """Siamese loss ½·D² for similar pairs and ½·max{0, m − D}² for dissimilar ones.

    Seed 000 writes it with y = 1 for *dissimilar* pairs: (1−y)·½D² + y·½·max{0, m−D}²; here
    the flag is `is_similar` (1 = similar), which reads the same way at every call site.
    """
    distance = embedding_distance(a, b)
    similar = tf.cast(is_similar, distance.dtype)
    pull = 0.5 * tf.square(distance)
    push = 0.5 * tf.square(tf.nn.relu(tf.cast(margin, distance.dtype) - distance))
    return similar * pull + (1.0 - similar) * push


def triplet_correct(anchor, positive, negative, *, mask=None):
    """1.0 where the positive is strictly closer to the anchor than the negative, else 0.0.

    Triplet prediction error (seed 004, Sec. 3.4) is one minus its mean; chance is 0.5.
    """
    d_pos = embedding_distance(anchor, positive, squared=True, mask=mask)
    d_neg = embedding_distance(anchor, negative, squared=True, mask=mask)
    return tf.cast(d_pos < d_neg, tf.float32)


def sample_triplets(labels, num_triplets: int, *, seed: int) -> np.ndarray:
    """`(num_triplets, 3)` indices (anchor, positive, negative) into `labels`, fixed by `seed`.

    The anchor is uniform over examples whose label has at least two members; the positive is
    uniform over the *other* members of the anchor's label; the negative is uniform over
    examples with any other label. Vectorised: examples are sorted by label once, so each
    draw is an offset into a contiguous run of the sorted order.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ConfigError(f"sample_triplets: labels must be 1-D, got shape {labels.shape}")
    if num_triplets < 1:
        raise ConfigError(f"sample_triplets: num_triplets must be >= 1, got {num_triplets}")
    values, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if len(values) < 2:
        raise ConfigError("sample_triplets: labels need at least 2 distinct values for a negative, "
                          f"got {len(values)}")
    if counts.max() < 2:
        raise ConfigError("sample_triplets: no label has 2 examples, so no positive pair exists")
    rng = np.random.default_rng(seed)
    order = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])

    eligible = np.flatnonzero(counts[inverse] >= 2)
    anchors = eligible[rng.integers(0, len(eligible), num_triplets)]
    group = inverse[anchors]
    # Rank of the anchor inside its group's run of `order`; the positive skips that rank.
    rank_in_group = np.empty(len(labels), dtype=np.int64)
    rank_in_group[order] = np.arange(len(labels)) - starts[inverse[order]]
    offset = rng.integers(0, counts[group] - 1)
    offset = offset + (offset >= rank_in_group[anchors])
    positives = order[starts[group] + offset]
    # Negative: a uniform draw among the n − count(group) examples outside the anchor's run.
    outside = rng.integers(0, len(labels) - counts[group])
    outside = outside + np.where(outside >= starts[group], counts[group], 0)
    negatives = order[outside]
    return np.stack([anchors, positives, negatives], axis=1)


def sample_condition_triplets(labels_per_condition, num_per_condition: int, *, seed: int) -> np.ndarray:
    """`(n_c * num_per_condition, 4)` rows (anchor, positive, negative, condition) for several
    notions of similarity at once, in equal proportions (CSN, seed 004 Sec. 3.4: "for each
    condition in equal proportions"), fixed by `seed`.

    `labels_per_condition[c]` holds every example's label under notion c (1-D, same length for
    all notions); negative labels mean "unknown" and those examples are left out for that
    notion. Rows are interleaved by condition (row i has condition i mod n_c), so any run of
    consecutive rows, e.g. an unshuffled evaluation batch, is balanced over the notions.
    Each notion draws with its own seed derived from (`seed`, c) through `sample_triplets`.
    """
    columns = [np.asarray(labels) for labels in labels_per_condition]
    if not columns:
        raise ConfigError("sample_condition_triplets: need at least one condition")
    lengths = {len(c) for c in columns}
    if len(lengths) != 1 or any(c.ndim != 1 for c in columns):
        raise ConfigError("sample_condition_triplets: every condition needs a 1-D label array of the same length, "
                          f"got shapes {[c.shape for c in columns]}")
    per_condition = []
    for condition, labels in enumerate(columns):
        known = np.flatnonzero(labels >= 0) if np.issubdtype(labels.dtype, np.number) else np.arange(len(labels))
        # SeedSequence mixes (seed, condition) into independent streams.
        sub_seed = int(np.random.SeedSequence([int(seed), condition]).generate_state(1)[0])
        rows = known[sample_triplets(labels[known], num_per_condition, seed=sub_seed)]
        per_condition.append(np.concatenate([rows, np.full((num_per_condition, 1), condition)], axis=1))
    # [n_c, n, 4] -> [n, n_c, 4] -> rows interleaved by condition.
    return np.stack(per_condition, axis=1).reshape(-1, 4).astype(np.int64)
