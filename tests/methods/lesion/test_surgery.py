"""Test-time surgery: deletion, reordering and the one-path gradient (spec seed_004 M4)."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from garden.errors import GardenError
from garden.methods.lesion import plain_vgg15
from garden.methods.lesion.surgery import (
    block_infos,
    is_residual,
    lesioned_logits,
    path_gradient,
    path_gradient_norm,
)
from garden.nn import resnet
from tests import invariants as inv

FASHION = (28, 28, 1)


@pytest.fixture(scope="module")
def tiny_resnet():
    model = resnet.resnet20(width_multiplier=0.25, num_classes=10)
    x = inv.random_inputs(FASHION, batch_size=3, seed=2)
    model(x)
    return model, x


def _manual(model, x, steps):
    """stem -> the given per-block callables -> head."""
    h = model.forward_stem(x)
    for step in steps:
        h = step(h)
    if model.final_norm is not None:
        h = model.final_norm(h)
    return model.forward_head(h).numpy()


def test_block_infos_of_resnet110():
    model = resnet.resnet110(width_multiplier=0.25)
    model.build((None, 28, 28, 1))
    infos = block_infos(model)
    assert len(infos) == 54
    assert [i.index for i in infos if i.downsampling] == [18, 36]
    assert all(i.deletable for i in infos)
    assert {i.swap_key for i in infos} == {4, 8, 16, None}
    assert [i.stage for i in infos] == [0] * 18 + [1] * 18 + [2] * 18


def test_no_lesion_is_the_model(tiny_resnet):
    model, x = tiny_resnet
    np.testing.assert_allclose(lesioned_logits(model, x).numpy(), model(x).numpy(), atol=1e-6)


def test_deleting_blocks_uses_their_skip(tiny_resnet):
    model, x = tiny_resnet
    blocks = model.blocks
    deleted = {1, 3}  # an identity block and a downsampling block
    steps = [(b.skip if i in deleted else b) for i, b in enumerate(blocks)]
    np.testing.assert_allclose(
        lesioned_logits(model, x, deleted=deleted).numpy(), _manual(model, x, steps), atol=1e-5
    )
    # A deleted identity block is exactly the identity (Sec. 4.3: y_i = y_{i-1}).
    h = model.forward_stem(x)
    np.testing.assert_array_equal(blocks[1].skip(h).numpy(), h.numpy())


def test_reordering_runs_the_blocks_in_the_given_order(tiny_resnet):
    model, x = tiny_resnet
    blocks = model.blocks
    order = [0, 2, 1, 3, 4, 5, 6, 8, 7]
    steps = [blocks[j] for j in order]
    np.testing.assert_allclose(
        lesioned_logits(model, x, order=order).numpy(), _manual(model, x, steps), atol=1e-5
    )


def test_bad_plans_are_one_line_errors(tiny_resnet):
    model, x = tiny_resnet
    with pytest.raises(GardenError, match="out of range"):
        lesioned_logits(model, x, deleted=[9])
    with pytest.raises(GardenError, match="permutation"):
        lesioned_logits(model, x, order=[0] * 9)
    with pytest.raises(GardenError, match="no lesion hooks"):
        lesioned_logits(keras.Sequential([keras.layers.Dense(2)]), x)


def test_plain_vgg_lesion_and_no_paths():
    model = plain_vgg15(width=4)
    x = inv.random_inputs(FASHION, batch_size=2)
    model(x)
    assert not is_residual(model)
    infos = block_infos(model)
    assert not infos[0].deletable and infos[0].swap_key is None
    assert {i.swap_key for i in infos[1:]} == {4}
    # Deleting layer 5 equals running the layers around it.
    steps = [b for i, b in enumerate(model.blocks)]
    h = x
    for i, block in enumerate(steps):
        if i in (5, 10):
            h = model.pools[0 if i == 5 else 1](h)
        h = h if i == 5 else block(h)
    np.testing.assert_allclose(
        lesioned_logits(model, x, deleted=[5]).numpy(), model.forward_head(h).numpy(), atol=1e-5
    )
    with pytest.raises(GardenError, match="one path"):
        path_gradient_norm(model, x, np.zeros(2, np.int32), np.zeros(15, np.float32))


def test_one_path_forward_is_unchanged_and_full_mask_gradient_flows(tiny_resnet):
    model, x = tiny_resnet
    labels = np.array([0, 1, 2], np.int32)
    mask = tf.constant(np.array([1, 0, 1, 0, 1, 1, 0, 0, 1], np.float32))
    norm = path_gradient_norm(model, x, labels, mask)
    assert np.isfinite(norm.numpy()) and norm.numpy() > 0
    # Traced once, reused for another mask: the same graph serves every path.
    traced = tf.function(lambda m: path_gradient_norm(model, x, labels, m))
    other = tf.constant(np.zeros(9, np.float32))
    traced(mask)
    traced(other)
    assert len(traced._list_all_concrete_functions()) == 1


class LinearBlock(keras.layers.Layer):
    """A residual block with a linear branch, y = x + x W: path gradients are products of
    Jacobians, so they can be computed by hand."""

    def __init__(self, weight, **kwargs):
        super().__init__(**kwargs)
        self.weight = tf.constant(weight)

    def forward_parts(self, x, training=False):
        return x, x @ self.weight

    def combine(self, shortcut, residual=None):
        return shortcut if residual is None else shortcut + residual

    def skip(self, x, training=False):
        return x

    def call(self, x, training=False):
        return self.combine(*self.forward_parts(x))


class LinearResNet(keras.Model):
    def __init__(self, weights, head):
        super().__init__()
        self.blocks = [LinearBlock(w) for w in weights]
        self.head = tf.constant(head)
        self.include_top, self.num_classes = True, head.shape[1]

    def forward_features(self, x, training=False, block_fn=None):
        for i, block in enumerate(self.blocks):
            x = block(x) if block_fn is None else block_fn(i, block, x, training)
        return x

    def forward_head(self, x, training=False):
        return x @ self.head

    def call(self, x, training=False):
        return self.forward_head(self.forward_features(x))


def test_path_gradient_is_the_product_of_the_chosen_jacobians():
    """Spec M4 unit test: in a linear toy net the path gradient equals the analytic product of
    the chosen Jacobians (W_i where the path enters module i, I where it takes the skip); and
    the 2^n path gradients sum to the full gradient (the unraveled view, Eq. 4.6)."""
    rng = np.random.default_rng(0)
    d, n, classes = 4, 3, 3
    weights = [rng.normal(0, 0.5, (d, d)).astype(np.float32) for _ in range(n)]
    head = rng.normal(0, 1, (d, classes)).astype(np.float32)
    model = LinearResNet(weights, head)
    x = rng.normal(0, 1, (2, d)).astype(np.float32)
    labels = np.array([0, 2], np.int32)
    logits = model(x).numpy()
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    dlogits = (probs - np.eye(classes)[labels]) / len(x)  # d mean CE / d logits
    total = np.zeros_like(x)
    for bits in itertools.product([0, 1], repeat=n):
        expected = dlogits @ head.T
        for i in reversed(range(n)):
            expected = expected @ (weights[i].T if bits[i] else np.eye(d))
        got = path_gradient(model, x, labels, tf.constant(np.array(bits, np.float32))).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
        total += got
    with tf.GradientTape() as tape:
        xt = tf.constant(x)
        tape.watch(xt)
        loss = tf.reduce_mean(
            keras.losses.sparse_categorical_crossentropy(labels, model(xt), from_logits=True)
        )
    np.testing.assert_allclose(total, tape.gradient(loss, xt).numpy(), rtol=1e-4, atol=1e-6)
