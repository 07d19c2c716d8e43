"""Wide ResNets (Zagoruyko & Komodakis 2016): WRN-28-10's count from the architecture."""

import pytest

from garden.nn import wide_resnet
from garden.nn.wide_resnet import WideResNet
from tests import invariants as inv


def wrn_trainable(depth, k, num_classes, in_channels=3):
    """Trainable parameters of WRN-depth-k (Zagoruyko & Komodakis 2016, Table 1): 3x3 conv
    3 -> 16; per group of N = (depth - 4) / 6 blocks, BN-ReLU-conv3x3-BN-ReLU-conv3x3 with a
    1x1 projection in the first block (the width changes in every group); BN, classifier."""
    n = (depth - 4) // 6
    total = 9 * in_channels * 16
    c_in = 16
    for width in (16 * k, 32 * k, 64 * k):
        for block in range(n):
            c = c_in if block == 0 else width
            total += 2 * c + 9 * c * width + 2 * width + 9 * width * width
            if block == 0:
                total += c_in * width
        c_in = width
    return total + 2 * c_in + c_in * num_classes + num_classes


def test_wrn_28_10_parameter_count():
    trainable = wrn_trainable(28, 10, 10)
    assert trainable == 36_479_194 and f"{trainable / 1e6:.1f}M" == "36.5M"
    # BN moving statistics: two per channel of each BN (inputs of each block + final).
    model = wide_resnet.wide_resnet28_10()
    inv.check_param_count(model, 36_497_146, (32, 32, 3), trainable=trainable)
    assert model.num_features == 640
    assert [i["channels"] for i in model.feature_info] == [160, 320, 640]


def test_small_configs_follow_the_formula():
    model = WideResNet(depth=16, widen_factor=2, num_classes=100)
    inv.check_param_count(model, None, (32, 32, 3), trainable=wrn_trainable(16, 2, 100))


def test_options_round_trip():
    model = wide_resnet.wide_resnet28_10(dropout=0.3, stage_strides=(2, 2, 2), width_multiplier=0.1)
    assert all(b.dropout == 0.3 for b in model.blocks)
    assert [i["stride"] for i in model.feature_info] == [2, 4, 8]
    config = inv.check_config_round_trip(model).get_config()
    assert (config["depth"], config["widen_factor"], config["dropout"]) == (28, 10, 0.3)
    with pytest.raises(ValueError, match="6N \\+ 4"):
        WideResNet(depth=27)
