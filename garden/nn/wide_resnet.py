"""Wide residual networks (Zagoruyko & Komodakis 2016): WRN-d-k for CIFAR-size inputs.

Reference:
    S. Zagoruyko, N. Komodakis. "Wide Residual Networks", BMVC 2016, Table 1 and Sec. 2: a
    3x3 conv of 16 channels, then 3 groups of N = (d - 4) / 6 pre-activation basic blocks
    ("B(3,3)") of widths 16k, 32k, 64k, dropout between the two convolutions of a block
    (optional, 0.3 in the paper), a 1x1 projection where the width changes, BN-ReLU, 8x8
    global average pooling and the classifier. WRN-28-10 has 36.5M parameters for CIFAR-10.

Built on `garden.nn.resnet.ResNet` (same blocks and hooks); this class only maps (depth,
widen_factor, dropout) onto it. WRN-28-10 with 10 classes: 36,479,194 trainable parameters
(the paper's 36.5M; the official code's count), 36,497,146 with BN moving statistics.
"""

from __future__ import annotations

import keras

from garden.nn.layers import Backbone, register_variant
from garden.nn.resnet import ResNet


def wrn_blocks_per_group(depth: int) -> int:
    n, rest = divmod(depth - 4, 6)
    if rest or n < 1:
        raise ValueError(f"a Wide ResNet has depth 6N + 4, got {depth}")
    return n


@keras.saving.register_keras_serializable(package="garden")
class WideResNet(ResNet):
    """WRN-depth-widen_factor (pre-activation basic blocks, projection shortcuts).

    Args:
        depth: 6N + 4 (28 for WRN-28-10).
        widen_factor: k; group widths are 16k, 32k, 64k.
        dropout: dropout between the two convolutions of each block (0.3 in the paper's
            dropout experiments, 0 otherwise).
        stage_strides: stride of each group's first block; default (1, 2, 2). E.g. (2, 2, 2)
            for the 80x80 MiniImageNet WRN with "3 times of downsampling" (seed 002).
        width_multiplier: scales all widths, the stem's 16 included (tiny test / CPU configs).
        drop_path_rate: stochastic depth (see `ResNet`).
        num_classes, include_top, head_dropout: see `Backbone`.

    All `ResNet` hooks apply (`blocks`, `stages`, `features` keys C0, C1, C2 for stride 1, 2, 4).
    """

    def __init__(
        self,
        depth=28,
        widen_factor=10,
        dropout=0.0,
        stage_strides=None,
        width_multiplier=1.0,
        drop_path_rate=0.0,
        num_classes=10,
        include_top=True,
        head_dropout=0.0,
        **kwargs,
    ):
        n = wrn_blocks_per_group(int(depth))
        super().__init__(
            blocks_per_stage=(n, n, n),
            block_type="basic",
            stage_widths=tuple(w * int(widen_factor) for w in (16, 32, 64)),
            stage_strides=stage_strides,
            stem="cifar",
            stem_width=16,
            preact=True,
            shortcut="projection",
            width_multiplier=width_multiplier,
            block_dropout=dropout,
            drop_path_rate=drop_path_rate,
            num_classes=num_classes,
            include_top=include_top,
            head_dropout=head_dropout,
            **kwargs,
        )
        self.depth = int(depth)
        self.widen_factor = int(widen_factor)

    def get_config(self):
        config = Backbone.get_config(self)  # not ResNet's: the arguments are WRN's
        config.update(
            depth=self.depth,
            widen_factor=self.widen_factor,
            dropout=self.block_dropout,
            stage_strides=list(self.stage_strides),
            width_multiplier=self.width_multiplier,
            drop_path_rate=self.drop_path_rate,
        )
        return config


wide_resnet28_10 = register_variant(
    "wide_resnet28_10",
    WideResNet,
    fixed={"depth": 28, "widen_factor": 10},
    doc="WRN-28-10 (Zagoruyko & Komodakis 2016): 36.5M parameters for CIFAR-10.",
)
