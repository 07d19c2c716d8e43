"""Distances, triplet/contrastive losses and the triplet sampler, on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from garden.errors import ConfigError
from garden.nn.metric_learning import (
    contrastive_loss,
    embedding_distance,
    sample_triplets,
    triplet_correct,
    triplet_margin_loss,
)

A = np.array([[0.0, 0.0], [1.0, 1.0]], np.float32)
P = np.array([[3.0, 4.0], [1.0, 1.0]], np.float32)   # distances 5 and 0
N = np.array([[0.0, 6.0], [1.0, 3.0]], np.float32)   # distances 6 and 2


def test_distance_plain_squared_and_masked():
    np.testing.assert_allclose(embedding_distance(A, P), [5.0, 1e-6], atol=1e-6)
    np.testing.assert_allclose(embedding_distance(A, P, squared=True), [25.0, 0.0])
    # Mask keeps only the first dimension of row 0 (|3|) and the second of row 1 (0).
    mask = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    np.testing.assert_allclose(embedding_distance(A, P, mask=mask), [3.0, 1e-6], atol=1e-6)


def test_triplet_loss_hand_computed():
    # Margin 2: row 0 gives 5 - 6 + 2 = 1; row 1 gives max(0, 0 - 2 + 2) = 0.
    np.testing.assert_allclose(triplet_margin_loss(A, P, N, margin=2.0), [1.0, 0.0], atol=1e-5)
    np.testing.assert_allclose(triplet_margin_loss(A, P, N, margin=1.0, squared=True),
                               [max(0.0, 25 - 36 + 1), max(0.0, 0 - 4 + 1)])


def test_triplet_loss_gradient_finite_for_identical_embeddings():
    anchor = tf.Variable(A)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(triplet_margin_loss(anchor, P, N, margin=5.0))
    grad = tape.gradient(loss, anchor)
    assert np.all(np.isfinite(grad.numpy()))


def test_contrastive_loss_similar_and_dissimilar():
    # Similar pair at distance 5: ½·25; dissimilar pair at distance 0 with margin 0.5: ½·0.25.
    np.testing.assert_allclose(contrastive_loss(A, P, [1, 0], margin=0.5), [12.5, 0.125], atol=1e-5)
    # Dissimilar beyond the margin costs nothing.
    np.testing.assert_allclose(contrastive_loss(A, P, [0, 1], margin=0.5), [0.0, 0.0], atol=1e-5)


def test_triplet_correct_orientation():
    np.testing.assert_array_equal(triplet_correct(A, P, N), [1.0, 1.0])
    np.testing.assert_array_equal(triplet_correct(A, N, P), [0.0, 0.0])


def test_sampler_respects_labels_and_is_seeded():
    labels = np.array([0, 0, 0, 1, 1, 2, 3, 3, 3, 3])
    t = sample_triplets(labels, 2000, seed=3)
    assert t.shape == (2000, 3)
    a, p, n = t.T
    assert np.all(labels[a] == labels[p]) and np.all(a != p)
    assert np.all(labels[a] != labels[n])
    assert not np.any(labels[a] == 2)  # a singleton label cannot anchor
    np.testing.assert_array_equal(t, sample_triplets(labels, 2000, seed=3))
    assert not np.array_equal(t, sample_triplets(labels, 2000, seed=4))
    # Every eligible example is drawn as anchor, positive and negative at some point.
    assert set(a) == {0, 1, 2, 3, 4, 6, 7, 8, 9}
    assert set(p) == {0, 1, 2, 3, 4, 6, 7, 8, 9}
    assert set(n) == set(range(10))


def test_sampler_is_uniform_over_negatives():
    labels = np.array([0, 0, 1, 1, 1, 1])
    a, _, n = sample_triplets(labels, 60_000, seed=0).T
    from_label0 = n[labels[a] == 0]
    counts = np.bincount(from_label0, minlength=6)[2:]
    assert np.all(np.abs(counts / counts.sum() - 0.25) < 0.02)


@pytest.mark.parametrize("labels, num, match", [
    (np.zeros((2, 2)), 4, "1-D"),
    (np.array([0, 0, 0]), 4, "2 distinct"),
    (np.array([0, 1, 2]), 4, "no label has 2"),
    (np.array([0, 0, 1]), 0, "num_triplets"),
])
def test_sampler_errors(labels, num, match):
    with pytest.raises(ConfigError, match=match):
        sample_triplets(labels, num, seed=0)
