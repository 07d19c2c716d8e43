"""One task's network cut into stages (the places where NDDR layers go), and the heads.

Each stage is a Keras layer, so a multi-task model can give every task its own copy of a
stage, share a stage between tasks (the shared-bottom baseline), and fuse the tasks' outputs
between stages. The stages build the same layers as the garden's backbones (`garden.nn.vgg`,
`garden.nn.resnet`; the tests check the parameter counts against them):

- DeepLab-LargeFOV VGG (spec B.2.3, the official code): five stages of 3x3 conv-BN-ReLU, each
  ending in a 3x3 max pool ("same"), strides 2, 2, 2, 1, 1 (output stride 8), conv5 with
  dilation 2, and a 3x3/1 average pool after pool5. NDDR goes after pool1..pool5.
- DeepLab ResNet (spec B.2.3, B.8.2): the stem (7x7/2 conv-BN-ReLU + 3x3/2 max pool) is stage 1,
  then the four residual stages; output stride 8 by dilating conv4_x (2) and conv5_x (4),
  as DeepLab-v2. NDDR goes after each of the five (64, 256, 512, 1024, 2048 channels).

Heads: `LargeFOVHead` (fc6 3x3 dilation-12 conv 1024 - dropout - fc7 1x1 1024 - dropout - fc8
1x1 logits), `ASPPHead` (DeepLab-v2's sum of 3x3 convolutions at rates 6, 12, 18, 24 straight
to the outputs), `ClassifierHead` (global pooling or flatten, hidden fc layers, logits) for
image-level tasks (age/gender).
"""

from __future__ import annotations

import keras

from garden.nn.layers import CompositeLayer, Conv, ConvBN, DenseBN
from garden.nn.resnet import BLOCK_TYPES

BACKBONES = ("vgg", "resnet")


def _output_stride_plan(strides, output_stride):
    """(stride, dilation) actually used by each stage, DeepLab style: once the running stride
    would exceed `output_stride`, a stage keeps stride 1 and the later convolutions dilate."""
    plan, running, dilation = [], 1, 1
    for s in strides:
        if output_stride is not None and running * s > output_stride:
            plan.append((1, dilation))
            dilation *= s
        else:
            running *= s
            plan.append((s, dilation))
    return plan


@keras.saving.register_keras_serializable(package="garden")
class VGGStage(CompositeLayer):
    """`num_convs` x (3x3 conv [-BN] -ReLU at `dilation`), a 3x3 max pool at `pool_stride`, and
    (the last DeepLab-LargeFOV stage) a 3x3/1 average pool."""

    def __init__(self, num_convs: int, width: int, dilation: int = 1, pool_stride: int = 2,
                 batch_norm: bool = True, average_pool: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.num_convs, self.width, self.dilation = int(num_convs), int(width), int(dilation)
        self.pool_stride, self.batch_norm, self.average_pool = int(pool_stride), bool(batch_norm), bool(average_pool)
        policy = self.dtype_policy
        self.convs = [ConvBN(self.width, 3, dilation_rate=self.dilation, use_bn=self.batch_norm, dtype=policy,
                             name=f"conv{i + 1}") for i in range(self.num_convs)]
        self.pool = keras.layers.MaxPooling2D(3, strides=self.pool_stride, padding="same", dtype=policy, name="pool")
        self.avg_pool = (keras.layers.AveragePooling2D(3, strides=1, padding="same", dtype=policy, name="avg_pool")
                         if self.average_pool else None)

    def call(self, inputs, training=False):
        x = inputs
        for conv in self.convs:
            x = conv(x, training=training)
        x = self.pool(x)
        return self.avg_pool(x) if self.avg_pool is not None else x

    def get_config(self):
        config = super().get_config()
        config.update(num_convs=self.num_convs, width=self.width, dilation=self.dilation,
                      pool_stride=self.pool_stride, batch_norm=self.batch_norm, average_pool=self.average_pool)
        return config


@keras.saving.register_keras_serializable(package="garden")
class ResNetStem(CompositeLayer):
    """7x7/2 conv-BN-ReLU, then a 3x3/2 max pool (after 1-pixel zero padding, as garden.nn.resnet)."""

    def __init__(self, width: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.width = int(width)
        self.conv = ConvBN(self.width, 7, strides=2, dtype=self.dtype_policy, name="conv")
        self.pool = keras.layers.MaxPooling2D(3, strides=2, dtype=self.dtype_policy, name="pool")

    def call(self, inputs, training=False):
        x = self.conv(inputs, training=training)
        return self.pool(keras.ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]))

    def get_config(self):
        return {**super().get_config(), "width": self.width}


@keras.saving.register_keras_serializable(package="garden")
class ResNetStage(CompositeLayer):
    """`num_blocks` residual blocks; the first has `stride` and the previous dilation (as
    torchvision and garden.nn.resnet), the others `dilation`."""

    def __init__(self, num_blocks: int, width: int, in_channels: int, stride: int = 1, dilation: int = 1,
                 first_dilation: int = 1, block_type: str = "bottleneck", **kwargs):
        super().__init__(**kwargs)
        self.num_blocks, self.width, self.in_channels = int(num_blocks), int(width), int(in_channels)
        self.stride, self.dilation, self.first_dilation = int(stride), int(dilation), int(first_dilation)
        self.block_type = block_type
        block_cls = BLOCK_TYPES[block_type]
        out_channels = self.width * block_cls.expansion
        self.blocks = []
        for i in range(self.num_blocks):
            first = i == 0
            needs_projection = first and (self.stride != 1 or self.in_channels != out_channels)
            self.blocks.append(block_cls(self.width, strides=self.stride if first else 1,
                                         dilation_rate=self.first_dilation if first else self.dilation,
                                         shortcut="projection" if needs_projection else "identity",
                                         dtype=self.dtype_policy, name=f"block{i + 1}"))

    def call(self, inputs, training=False):
        x = inputs
        for block in self.blocks:
            x = block(x, training=training)
        return x

    def get_config(self):
        config = super().get_config()
        config.update(num_blocks=self.num_blocks, width=self.width, in_channels=self.in_channels, stride=self.stride,
                      dilation=self.dilation, first_dilation=self.first_dilation, block_type=self.block_type)
        return config


def stage_layers(backbone: str, *, blocks_per_stage, stage_widths, output_stride=8, batch_norm=True,
                 stem_width=64, block_type="bottleneck", average_pool=True, dtype=None, prefix="") -> list:
    """The stages of one tower, as layers named `<prefix>stage<k>`, and their output channels.

    vgg: `blocks_per_stage` convolutions per stage (5 stages for VGG-16: 2, 2, 3, 3, 3).
    resnet: the stem is stage 1; `blocks_per_stage` are the residual stages (3, 4, 23, 3 for
    ResNet-101).
    """
    layers, channels = [], []
    if backbone == "vgg":
        plan = _output_stride_plan([2] * len(blocks_per_stage), output_stride)
        for k, (n, width, (stride, dilation)) in enumerate(zip(blocks_per_stage, stage_widths, plan)):
            last = k == len(blocks_per_stage) - 1
            layers.append(VGGStage(n, width, dilation=dilation, pool_stride=stride, batch_norm=batch_norm,
                                   average_pool=average_pool and last, dtype=dtype, name=f"{prefix}stage{k + 1}"))
            channels.append(int(width))
        return layers, channels
    if backbone == "resnet":
        layers.append(ResNetStem(stem_width, dtype=dtype, name=f"{prefix}stage1"))
        channels.append(int(stem_width))
        # As garden.nn.resnet: the stem has stride 4; a stage that would exceed output_stride
        # keeps stride 1 and dilates, its first block keeping the previous dilation.
        running, dilation, in_channels = 4, 1, int(stem_width)
        expansion = BLOCK_TYPES[block_type].expansion
        for k, (n, width) in enumerate(zip(blocks_per_stage, stage_widths)):
            stride, previous = (1 if k == 0 else 2), dilation
            if output_stride is not None and running * stride > output_stride:
                dilation, stride = dilation * stride, 1
            else:
                running *= stride
            layers.append(ResNetStage(n, width, in_channels, stride=stride, dilation=dilation, first_dilation=previous,
                                      block_type=block_type, dtype=dtype, name=f"{prefix}stage{k + 2}"))
            in_channels = int(width) * expansion
            channels.append(in_channels)
        return layers, channels
    raise ValueError(f"unknown backbone {backbone!r}; valid: {', '.join(BACKBONES)}")


# ----------------------------------------------------------------------------------------------
# heads
# ----------------------------------------------------------------------------------------------


def _logits_conv(outputs, kernel_size=1, dilation=1, dtype=None, name="fc8"):
    # The last layer has a bias and no BN (the official code's fc8); Xavier init (spec B.2.3).
    return Conv(outputs, kernel_size, dilation_rate=dilation, use_bias=True, kernel_initializer="glorot_uniform",
                dtype=dtype, name=name)


@keras.saving.register_keras_serializable(package="garden")
class LargeFOVHead(CompositeLayer):
    """DeepLab-LargeFOV: fc6 3x3 conv (dilation 12) -BN-ReLU - dropout - fc7 1x1 -BN-ReLU - dropout
    - fc8 1x1 to `outputs` channels (spec B.2.3: BN after every conv but fc8, dropout keep 0.5)."""

    def __init__(self, outputs: int, width: int = 1024, dilation: int = 12, dropout: float = 0.5,
                 batch_norm: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.outputs, self.width, self.dilation = int(outputs), int(width), int(dilation)
        self.dropout, self.batch_norm = float(dropout), bool(batch_norm)
        policy = self.dtype_policy
        self.fc6 = ConvBN(self.width, 3, dilation_rate=self.dilation, use_bn=self.batch_norm, dtype=policy, name="fc6")
        self.fc7 = ConvBN(self.width, 1, use_bn=self.batch_norm, dtype=policy, name="fc7")
        self.drop6 = keras.layers.Dropout(self.dropout, dtype=policy, name="drop6")
        self.drop7 = keras.layers.Dropout(self.dropout, dtype=policy, name="drop7")
        self.fc8 = _logits_conv(self.outputs, dtype=policy)

    def call(self, inputs, training=False):
        x = self.drop6(self.fc6(inputs, training=training), training=training)
        x = self.drop7(self.fc7(x, training=training), training=training)
        return self.fc8(x)

    def get_config(self):
        config = super().get_config()
        config.update(outputs=self.outputs, width=self.width, dilation=self.dilation, dropout=self.dropout,
                      batch_norm=self.batch_norm)
        return config


@keras.saving.register_keras_serializable(package="garden")
class ASPPHead(CompositeLayer):
    """DeepLab-v2 ASPP for ResNet: the sum of 3x3 convolutions at `rates` straight to the outputs
    (spec B.2.3 [EXT]; the NDDR paper does not give its ResNet head)."""

    def __init__(self, outputs: int, rates=(6, 12, 18, 24), **kwargs):
        super().__init__(**kwargs)
        self.outputs, self.rates = int(outputs), [int(r) for r in rates]
        self.branches = [_logits_conv(self.outputs, 3, dilation=r, dtype=self.dtype_policy, name=f"fc8_rate{r}")
                         for r in self.rates]

    def call(self, inputs, training=False):
        out = self.branches[0](inputs)
        for branch in self.branches[1:]:
            out = out + branch(inputs)
        return out

    def get_config(self):
        return {**super().get_config(), "outputs": self.outputs, "rates": list(self.rates)}


@keras.saving.register_keras_serializable(package="garden")
class ClassifierHead(CompositeLayer):
    """Image-level logits: global average pooling ("gap") or flatten (the classic VGG head, whose
    first fc depends on the input size), hidden fc layers (fc6, fc7 with ReLU and dropout),
    then fc8 to `outputs` classes."""

    def __init__(self, outputs: int, pool: str = "gap", hidden=(), dropout: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        if pool not in ("gap", "flatten"):
            raise ValueError(f"unknown pool {pool!r}; valid: gap, flatten")
        self.outputs, self.pool, self.hidden, self.dropout = int(outputs), pool, [int(h) for h in hidden], float(dropout)
        policy = self.dtype_policy
        self.reduce = (keras.layers.GlobalAveragePooling2D(dtype=policy, name="gap") if pool == "gap"
                       else keras.layers.Flatten(dtype=policy, name="flatten"))
        self.fc = [DenseBN(h, use_bn=False, dropout=self.dropout, dtype=policy, name=f"fc{6 + i}")
                   for i, h in enumerate(self.hidden)]
        self.fc8 = keras.layers.Dense(self.outputs, dtype=policy, name="fc8")

    def call(self, inputs, training=False):
        x = self.reduce(inputs)
        for fc in self.fc:
            x = fc(x, training=training)
        return self.fc8(x)

    def get_config(self):
        config = super().get_config()
        config.update(outputs=self.outputs, pool=self.pool, hidden=list(self.hidden), dropout=self.dropout)
        return config


HEAD_TYPES = {"largefov": LargeFOVHead, "aspp": ASPPHead, "classifier": ClassifierHead}

__all__ = ["ASPPHead", "BACKBONES", "ClassifierHead", "HEAD_TYPES", "LargeFOVHead", "ResNetStage",
           "ResNetStem", "VGGStage", "stage_layers"]
