"""NDDR layer and cross-stitch unit: Eq. 3's diagonal init, (1, 0) identity, the cross-stitch
special case, parameter counts (spec seeds_000_001.md B.2.1-B.2.2, B.7 N6)."""

import keras
import numpy as np
import pytest

from garden.methods.nddr.layers import NDDR, CrossStitch, DiagonalFusionInitializer, fusion_blocks
from tests import invariants as inv


def _maps(k=2, channels=4, seed=0):
    rng = np.random.default_rng(seed)
    # Post-ReLU features, as the NDDR layer sees them after a pool.
    return [np.maximum(rng.normal(size=(2, 3, 3, channels)), 0).astype(np.float32) for _ in range(k)]


def test_diagonal_kernel_is_eq3():
    kernel = DiagonalFusionInitializer(0, 2, 0.9, 0.1)((1, 1, 6, 3)).numpy()[0, 0]
    np.testing.assert_allclose(kernel, np.concatenate([0.9 * np.eye(3), 0.1 * np.eye(3)]))
    kernel = DiagonalFusionInitializer(1, 2, 0.9, 0.1)((1, 1, 6, 3)).numpy()[0, 0]
    np.testing.assert_allclose(kernel, np.concatenate([0.1 * np.eye(3), 0.9 * np.eye(3)]))
    # K = 3: beta shared by the two other tasks (our choice for K > 2, spec B.8.9).
    np.testing.assert_allclose(fusion_blocks(1, 3, 0.9, 0.1), [0.05, 0.9, 0.05])
    with pytest.raises(ValueError, match="K\\*C"):
        DiagonalFusionInitializer(0, 2)((1, 1, 5, 3))


def test_alpha_one_beta_zero_is_the_identity_at_inference():
    maps = _maps()
    layer = NDDR(2, alpha=1.0, beta=0.0)
    outputs = layer(maps, training=False)
    for out, x in zip(outputs, maps):
        np.testing.assert_allclose(out.numpy(), x, rtol=1e-6, atol=0)
    # (0.9, 0.1): each task's output is 0.9 x own + 0.1 x other (ReLU of non-negative inputs).
    outputs = NDDR(2)(maps, training=False)
    np.testing.assert_allclose(outputs[0].numpy(), 0.9 * maps[0] + 0.1 * maps[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs[1].numpy(), 0.1 * maps[0] + 0.9 * maps[1], rtol=1e-5, atol=1e-6)


def test_cross_stitch_is_nddr_with_tied_diagonal_blocks():
    maps = [np.random.default_rng(1).normal(size=(2, 3, 3, 4)).astype(np.float32) for _ in range(2)]
    unit = CrossStitch(2)
    unit(maps)
    mixing = np.array([[0.7, 0.2], [-0.3, 1.1]], np.float32)
    unit.mixing.assign(mixing)
    nddr = NDDR(2, batch_norm=False, activation=None)
    nddr(maps)
    for i, conv in enumerate(nddr.convs):
        kernel = np.concatenate([mixing[i, j] * np.eye(4) for j in range(2)])[None, None].astype(np.float32)
        conv.kernel.assign(kernel)
        conv.bias.assign(np.zeros(4, np.float32))
    for a, b in zip(unit(maps), nddr(maps)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("channels, expected_weights", [
    # Two tasks, C = VGG-16's 64/128/256/512/512: sum_l K * (K C_l * C_l) = 2,441,216, half of
    # it (1,220,608) per task: the paper's "1.2M" is one task's projections (spec B.2.2, B.8.6).
    ((64, 128, 256, 512, 512), 2_441_216),
    # ResNet-101 stage outputs 64/256/512/1024/2048: ~22.3M (spec B.2.2).
    ((64, 256, 512, 1024, 2048), 22_298_624),
])
def test_nddr_parameter_counts_of_the_spec(channels, expected_weights):
    kernels, bn = 0, 0
    for c in channels:
        layer = NDDR(2)
        layer.build([(None, 4, 4, c)] * 2)
        kernels += sum(int(np.prod(v.shape)) for v in layer.weights if v.path.endswith("kernel"))
        bn += sum(int(np.prod(v.shape)) for v in layer.weights if not v.path.endswith("kernel"))
        assert not any(v.path.endswith("bias") for v in layer.weights), "NDDR convolutions have no bias"
    assert kernels == expected_weights
    assert kernels // 2 == expected_weights // 2  # per task
    assert bn == 2 * 4 * sum(channels)  # per task: BN gamma, beta, moving mean and variance


def test_layers_round_trip_and_train():
    maps = _maps(k=3)
    for layer in (NDDR(3, init="xavier"), CrossStitch(3)):
        inv.check_config_round_trip(layer)
        with pytest.raises(ValueError):
            type(layer)(1)
        out = layer(maps, training=True)
        assert [tuple(o.shape) for o in out] == [m.shape for m in maps]
    with pytest.raises(ValueError, match="unknown NDDR init 'random'; valid: diagonal, xavier"):
        NDDR(2, init="random")
    model_in = [keras.Input((3, 3, 4)) for _ in range(2)]
    model = keras.Model(model_in, NDDR(2)(model_in))
    inv.check_train_step(model, _maps(), lambda outs: sum(keras.ops.mean(o) for o in outs))
