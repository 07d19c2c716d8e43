"""Shared blocks of garden/nn/layers.py."""

import inspect

import keras
import numpy as np
import pytest

from garden.nn.layers import BNAct, ChannelPReLU, Conv, ConvBN, DenseBN, make_variant
from garden.nn.resnet import ResNet
from tests import invariants as inv

LAYERS = {
    "conv_stride2": (lambda **kw: Conv(8, 3, strides=2, **kw), (9, 9, 4)),
    "conv_valid_grouped": (
        lambda **kw: Conv(8, 5, groups=2, padding="valid", use_bias=True, **kw),
        (9, 9, 4),
    ),
    "conv_bn_prelu": (
        lambda **kw: ConvBN(8, 3, dilation_rate=2, activation="prelu", **kw),
        (9, 9, 3),
    ),
    "conv_relu_no_bn": (lambda **kw: ConvBN(8, 1, strides=2, use_bn=False, **kw), (9, 9, 3)),
    "bn_act": (lambda **kw: BNAct(zero_gamma=True, **kw), (5, 5, 3)),
    "dense_bn_prelu": (lambda **kw: DenseBN(6, activation="prelu", dropout=0.5, **kw), (7,)),
    "prelu": (lambda **kw: ChannelPReLU(**kw), (4, 4, 3)),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_invariants(name):
    factory, shape = LAYERS[name]
    layer = factory()
    x = inv.random_inputs(shape)
    inv.check_symbolic_matches_eager(layer, shape, inputs=x)
    inv.check_config_round_trip(layer)
    inv.check_train_step(layer, x, lambda out: keras.ops.mean(keras.ops.square(out - 1.0)))
    inv.check_mixed_precision(factory, x, via="argument")


def test_fixed_padding_aligns_strided_3x3_with_1x1():
    """A 3x3/2 convolution whose kernel is zero but at its centre equals the 1x1/2 projection
    beside it: both sample pixels 0, 2, 4, ... (TF's "same" would sample 1, 3, 5, ...)."""
    x = inv.random_inputs((8, 8, 3), batch_size=1)
    three, one = Conv(4, 3, strides=2), Conv(4, 1, strides=2)
    three.build(x.shape), one.build(x.shape)
    kernel = np.zeros((3, 3, 3, 4), "float32")
    kernel[1, 1] = np.random.default_rng(0).standard_normal((3, 4))
    three.kernel.assign(kernel), one.kernel.assign(kernel[1:2, 1:2])
    np.testing.assert_allclose(three(x).numpy(), one(x).numpy(), atol=1e-6)
    assert tuple(Conv(4, 3, strides=2).compute_output_shape((None, 7, 7, 3))) == (None, 4, 4, 4)


def test_he_normal_fan_out_and_prelu_init():
    conv = Conv(256, 3)
    conv.build((None, 8, 8, 64))
    std = float(np.std(conv.kernel.numpy()))
    assert std == pytest.approx(np.sqrt(2.0 / (3 * 3 * 256)), rel=0.05)
    prelu = ChannelPReLU()
    out = prelu(np.array([[-2.0, 3.0]], "float32")).numpy()
    np.testing.assert_allclose(out, [[-0.5, 3.0]])
    assert tuple(prelu.alpha.shape) == (2,)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="activation"):
        ConvBN(4, activation="gelu")
    with pytest.raises(ValueError, match="padding"):
        Conv(4, padding="causal")
    with pytest.raises(ValueError, match="dilation"):
        Conv(4, strides=2, dilation_rate=2)


def test_variant_signature():
    factory = make_variant("variant", ResNet, fixed={"stem": "cifar"}, defaults={"num_classes": 7})
    params = inspect.signature(factory).parameters
    assert "stem" not in params and params["num_classes"].default == 7
    assert all(p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD) for p in params.values())
    with pytest.raises(TypeError, match="fixed"):
        factory(stem="imagenet")
    with pytest.raises(TypeError, match="no argument"):
        make_variant("bad", ResNet, fixed={"depth": 3})


def test_grouped_conv_equals_keras_grouped_conv2d():
    x = inv.random_inputs((6, 6, 4), batch_size=1)
    ours = Conv(6, 3, groups=2)
    reference = keras.layers.Conv2D(6, 3, groups=2, padding="same", use_bias=False)
    ours.build(x.shape), reference.build(x.shape)
    assert tuple(ours.kernel.shape) == tuple(reference.kernel.shape) == (3, 3, 2, 6)
    reference.kernel.assign(ours.kernel)
    np.testing.assert_allclose(ours(x).numpy(), reference(x).numpy(), atol=1e-5)
