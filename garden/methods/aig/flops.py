"""Analytic multiply-accumulate (MAC) counts of a (gated) ResNet, and expected MACs per image.

Counted: convolutions (H_out * W_out * k * k * C_in / groups * C_out) and fully connected layers
(C_in * C_out), the usual convention of the ResNet papers. BatchNorm, ReLU, additions, pooling
and the zero-padding shortcuts are not counted (they are < 1% of a ResNet's MACs).

Conventions differ between the thesis' tables (spec M5 sec. 8): Table 5.1 gives ResNet-110 as
0.5 GFLOPs, which is 2 x its ~0.25 G MACs (a multiply and an add counted apart), while Table 5.2
gives ResNet-50 as 3.8 G, He et al.'s MAC count. We report MACs and say which is compared.

Expected MACs of an AIG network for execution rates r_l (thesis Sec. 5.4, "FLOPs (10^9)"):
    fixed + sum_l r_l * residual_l,
where `fixed` is the stem, the shortcuts, the gates and the classifier, and residual_l the
branch of block l (r_l = 1 for blocks without a gate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from garden.nn.layers import Conv, ConvBN
from garden.nn.resnet import BasicBlock, BottleneckBlock

__all__ = ["MacCount", "conv_macs", "count_macs", "expected_macs"]


@dataclass(frozen=True)
class MacCount:
    """MACs per image. `residual[l]`: the branch of block l; `fixed`: everything else."""

    stem: int
    residual: tuple[int, ...]
    shortcut: tuple[int, ...]
    gates: tuple[int, ...]
    head: int

    @property
    def fixed(self) -> int:
        return self.stem + sum(self.shortcut) + sum(self.gates) + self.head

    @property
    def total(self) -> int:
        """Every block executed (the plain ResNet plus the gates)."""
        return self.fixed + sum(self.residual)

    @property
    def plain(self) -> int:
        """The same ResNet without gates."""
        return self.total - sum(self.gates)


def _conv_layer(layer):
    return layer.conv if isinstance(layer, ConvBN) else layer


def conv_macs(layer, height: int, width: int) -> tuple[int, int, int]:
    """(MACs, H_out, W_out) of a `Conv` / `ConvBN` on an H x W input (built layer)."""
    conv = _conv_layer(layer)
    if not isinstance(conv, Conv):
        raise TypeError(f"not a garden Conv or ConvBN: {type(layer).__name__}")
    k = conv.kernel_size[0]
    s = conv.strides[0]
    d = conv.dilation_rate[0]
    if conv.padding_mode == "same":  # symmetric ("fixed") or Keras "same": ceil(size / stride)
        out_h, out_w = math.ceil(height / s), math.ceil(width / s)
    else:
        out_h = (height - d * (k - 1) - 1) // s + 1
        out_w = (width - d * (k - 1) - 1) // s + 1
    kernel_macs = int(np.prod(conv.kernel.shape))  # k * k * C_in / groups * C_out
    return out_h * out_w * kernel_macs, out_h, out_w


def _branch_layers(block):
    if isinstance(block, BottleneckBlock):
        return [block.conv1, block.conv2, block.conv3]
    if isinstance(block, BasicBlock):
        return [block.conv1, block.conv2]
    raise TypeError(f"unknown residual block {type(block).__name__}")


def _block_macs(block, height, width):
    residual, h, w = 0, height, width
    for layer in _branch_layers(block):
        macs, h, w = conv_macs(layer, h, w)
        residual += macs
    shortcut = 0
    if isinstance(_conv_layer(block.projection), Conv):
        shortcut = conv_macs(block.projection, height, width)[0]
    return residual, shortcut, h, w


def _dense_macs(layer) -> int:
    return int(np.prod(layer.kernel.shape))


def count_macs(model, image_size) -> MacCount:
    """MACs per image of a built garden `ResNet` (or `AIGResNet`) on `image_size` = (H, W)."""
    height, width = (int(v) for v in image_size)
    stem, height, width = conv_macs(model.stem, height, width)
    if model.stem_pool is not None:  # 3x3/2 max pool after a 1-pixel padding
        height, width = (height - 1) // 2 + 1, (width - 1) // 2 + 1
    gate_of = dict(zip(getattr(model, "gated_indices", []), getattr(model, "gates", [])))
    residual, shortcut, gates = [], [], []
    for index, block in enumerate(model.blocks):
        gate = gate_of.get(index)
        # The gate's two fully connected layers (its global pooling is not a MAC).
        gates.append(0 if gate is None else _dense_macs(gate.fc1) + _dense_macs(gate.fc2))
        r, s, height, width = _block_macs(block, height, width)
        residual.append(r)
        shortcut.append(s)
    head = _dense_macs(model.classifier) if model.classifier is not None else 0
    return MacCount(stem, tuple(residual), tuple(shortcut), tuple(gates), head)


def expected_macs(count: MacCount, rates) -> float:
    """fixed + sum_l rates[l] * residual[l] for per-block execution rates (length num_blocks)."""
    rates = np.asarray(rates, np.float64)
    if rates.shape != (len(count.residual),):
        raise ValueError(f"need {len(count.residual)} per-block rates, got shape {rates.shape}")
    return float(count.fixed + rates @ np.asarray(count.residual, np.float64))
