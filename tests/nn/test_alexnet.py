"""AlexNet-BN-PReLU of seed 000 (specs/seeds_000_001.md A.2.1): exact count and layout."""

import keras
import pytest

from garden.nn import alexnet
from tests import invariants as inv


def _hand_count(n_classes=15, fc=1024):
    """Trainable parameters, layer by layer, at 224x224: conv/fc weights (no bias: BN
    follows), BN gamma + beta and one PReLU slope per channel; the classifier has a bias."""
    convs = [  # (kernel, input channels per group, output channels)
        (11, 3, 96),
        (5, 96 // 2, 256),
        (3, 256, 384),
        (3, 384 // 2, 384),
        (3, 384 // 2, 256),
    ]
    weights = sum(k * k * c_in * c_out for k, c_in, c_out in convs)
    pool5 = 5 * 5 * 256  # 224 -> conv1 54 -> pool1 26 -> pool2 12 -> pool5 5
    weights += pool5 * fc + fc * fc
    channels = sum(c for _, _, c in convs) + 2 * fc
    classifier = fc * n_classes + n_classes
    return weights + 2 * channels + channels + classifier, 2 * channels


def test_seed_000_parameter_count():
    trainable, moving = _hand_count()
    assert (trainable, moving) == (9_960_527, 6_848)
    assert round(trainable / 1e6) == 10  # the paper's "10M"
    model = alexnet.alexnet_bn()
    inv.check_param_count(model, trainable + moving, (224, 224, 3), trainable=trainable)
    feats = model.features(keras.Input((224, 224, 3)))
    assert tuple(feats["pool5"].shape) == (None, 5, 5, 256)
    assert model.num_features == 1024
    # Caffe's 2 groups, channel-wise PReLU.
    assert tuple(model.convs[1].conv.kernel.shape) == (5, 5, 48, 256)
    assert tuple(model.convs[0].bn.prelu.alpha.shape) == (96,)


def test_small_inputs_layout():
    model = alexnet.alexnet_bn(width_multiplier=0.25, fc_width=32, small_inputs=True)
    assert [i["stride"] for i in model.feature_info] == [1, 2, 2, 4, 4, 4, 4, 8]
    inv.check_feature_info(model, (32, 32, 3))
    assert [i["channels"] for i in model.feature_info][-1] == 64


def test_head_variants_share_the_trunk():
    model = alexnet.alexnet_bn(width_multiplier=0.125, fc_width=16, num_classes=0)
    x = inv.random_inputs((67, 67, 3))
    assert tuple(model(x).shape) == (2, 16)  # fc7
    with pytest.raises(ValueError, match="conv_widths"):
        alexnet.alexnet_bn(conv_widths=(8, 8))


def test_grouped_convolutions_export_to_onnx(tmp_path):
    """Keras' grouped Conv2D runs an XLA function on a TF CPU that tf2onnx cannot convert; the
    garden's `Conv` splits the groups, so the Caffe AlexNet exports (parity ~1e-7)."""
    model = alexnet.alexnet_bn(width_multiplier=0.125, fc_width=16, num_classes=3)
    inv.check_export_parity(model, inv.random_inputs((67, 67, 3)), tmp_path, atol=1e-5)
