"""MAC counting: known layers, the thesis' networks, expected MACs under execution rates."""

import numpy as np
import pytest

from garden.methods.aig.flops import conv_macs, count_macs, expected_macs
from garden.methods.aig.model import aig_resnet50, aig_resnet110
from garden.nn.layers import Conv, ConvBN


def test_conv_macs():
    conv = Conv(16, 3)
    conv.build((None, 32, 32, 16))
    assert conv_macs(conv, 32, 32) == (32 * 32 * 9 * 16 * 16, 32, 32)
    strided = ConvBN(32, 3, strides=2)
    strided.build((None, 32, 32, 16))
    assert conv_macs(strided, 32, 32) == (16 * 16 * 9 * 16 * 32, 16, 16)
    odd = Conv(8, 1, strides=2)
    odd.build((None, 7, 7, 4))
    assert conv_macs(odd, 7, 7) == (4 * 4 * 4 * 8, 4, 4)
    with pytest.raises(TypeError, match="Conv"):
        conv_macs(object(), 1, 1)


@pytest.fixture(scope="module")
def resnet110_count():
    model = aig_resnet110()
    model.build((None, 32, 32, 3))
    return model, count_macs(model, (32, 32))


def test_resnet110_macs(resnet110_count):
    """Stem 32*32*27*16; stage 1: 36 convs 16->16 at 32x32; stages 2 and 3: a strided 1x conv and
    35 convs at 2x the channels on a quarter of the pixels; classifier 64*10. 0.253 G MACs, i.e.
    the thesis' "0.5" GFLOPs for ResNet-110 (Table 5.1) counted as 2 x MACs."""
    _, count = resnet110_count
    per_conv = 32 * 32 * 9 * 16 * 16  # = 16*16*9*32*32 = 8*8*9*64*64
    stage = per_conv // 2 + 35 * per_conv
    assert count.plain == 32 * 32 * 27 * 16 + 36 * per_conv + 2 * stage + 640 == 252_887_680
    assert round(2 * count.plain / 1e9, 1) == 0.5
    # Gates: thesis "0.01% more floating point operations".
    assert sum(count.gates) / count.plain < 2e-4


def test_expected_macs(resnet110_count):
    model, count = resnet110_count
    ones = np.ones(len(model.blocks))
    assert expected_macs(count, ones) == count.total
    assert expected_macs(count, np.zeros(len(model.blocks))) == count.fixed
    half = np.where(model.gated_mask, 0.5, 1.0)
    gated = sum(r for r, g in zip(count.residual, model.gated_mask) if g)
    assert expected_macs(count, half) == pytest.approx(count.total - gated / 2)
    with pytest.raises(ValueError, match="54 per-block rates"):
        expected_macs(count, [1.0])


def test_resnet50_macs():
    """torchvision lists ResNet-50 (v1.5, as ours) at 4.09 GFLOPS (multiply-adds); the thesis'
    3.8 (Table 5.2) is He et al.'s figure for v1 (stride on the first 1x1)."""
    model = aig_resnet50()
    model.build((None, 224, 224, 3))
    count = count_macs(model, (224, 224))
    assert count.plain == pytest.approx(4.09e9, rel=0.01)
