"""VGG: exact parameter counts, batch norm, heads and output stride."""

import keras
import pytest

from garden.nn import vgg
from garden.nn.vgg import VGG
from garden.registry import MODELS
from tests import invariants as inv

IMAGENET = (224, 224, 3)
CONV16 = 14_714_688  # VGG-16's 13 convolutions, weights and biases

# name -> (count_params() at 224x224 with 1000 classes, trainable). No BN: the two are equal.
# Simonyan & Zisserman 2015 Table 2 (133M, 133M, 138M, 144M); keras.applications VGG16 and
# VGG19 and torchvision vgg11/vgg13 have exactly these counts.
PAPER_COUNTS = {
    "vgg11": (132_863_336, "133M"),
    "vgg13": (133_047_848, "133M"),
    "vgg16": (138_357_544, "138M"),
    "vgg19": (143_667_240, "144M"),
}
SLOW = {"vgg11", "vgg13", "vgg19"}  # each initialises >130M random weights


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in PAPER_COUNTS]
)
def test_paper_parameter_counts(name):
    total, figure = PAPER_COUNTS[name]
    inv.check_param_count(MODELS.get(name)(), total, IMAGENET, trainable=total)
    assert f"{total / 1e6:.0f}M" == figure


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vgg16", "vgg19"])
def test_same_count_as_keras_applications(name):
    reference = getattr(keras.applications, name.upper())(weights=None)
    assert reference.count_params() == PAPER_COUNTS[name][0]


def test_batch_norm_and_gap_head_counts():
    # GAP head (e.g. CIFAR VGGs): the convolutions and a 512 -> 10 classifier.
    head = 512 * 10 + 10
    gap = vgg.vgg16(head="gap", num_classes=10)
    inv.check_param_count(gap, CONV16 + head, (32, 32, 3))
    assert gap.num_features == 512 and vgg.vgg16(fc_width=64).num_features == 64
    # BN replaces the 4,224 conv biases by 13 BNs (2 x 4,224 trainable + 2 x 4,224 moving
    # statistics). With the classic head: 138,361,768 trainable; torchvision's vgg16_bn keeps
    # the biases and has 138,365,992 = that + 4,224.
    bn = vgg.vgg16(batch_norm=True, head="gap", num_classes=10)
    counts = inv.check_param_count(bn, CONV16 + 3 * 4_224 + head, (32, 32, 3))
    assert counts["trainable"] == CONV16 + 4_224 + head
    assert PAPER_COUNTS["vgg16"][0] + 4_224 + 4_224 == 138_365_992


def test_features_and_output_stride():
    model = vgg.vgg16(width_multiplier=0.125, include_top=False)
    assert [i["key"] for i in model.feature_info] == ["C1", "C2", "C3", "C4", "C5"]
    assert [i["stride"] for i in model.feature_info] == [2, 4, 8, 16, 32]
    inv.check_feature_info(model, (64, 64, 3))
    # DeepLab-LargeFOV (NDDR-CNN, seed 001): pool4 and pool5 at stride 1, conv5 dilated by 2.
    os8 = VGG(width_multiplier=0.125, output_stride=8, pool_size=3, include_top=False)
    assert [i["stride"] for i in os8.feature_info] == [2, 4, 8, 8, 8]
    assert [c.conv.dilation_rate[0] for c in os8.convs] == [1] * 10 + [2] * 3
    assert [p.strides[0] for p in os8.pools] == [2, 2, 2, 1, 1]
    inv.check_feature_info(os8, (64, 64, 3))


def test_invalid_arguments():
    with pytest.raises(ValueError, match="head"):
        VGG(head="mlp")
    with pytest.raises(ValueError, match="output_stride"):
        VGG(output_stride=6)
