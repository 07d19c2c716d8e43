"""Residual networks: ImageNet ResNets (He et al. 2016a) and CIFAR pre-activation ResNets (2016b).

References:
    K. He, X. Zhang, S. Ren, J. Sun. "Deep Residual Learning for Image Recognition", CVPR 2016
    (ResNet-18/34/50/101/152 on ImageNet, ResNet-20/32/44/56/110 on CIFAR with 0.27M, 0.46M,
    0.66M, 0.85M, 1.7M parameters).
    K. He, X. Zhang, S. Ren, J. Sun. "Identity Mappings in Deep Residual Networks", ECCV 2016
    (pre-activation units BN -> ReLU -> conv; ResNet-164 with bottlenecks, 1.7M parameters).

Choices, stated once:
- ImageNet bottlenecks put the stride on the 3x3 convolution ("ResNet v1.5", as torchvision);
  keras.applications' ResNet50 (v1) puts it on the first 1x1. Same parameter count.
- Convolutions before BN have no bias. So `trainable` parameters equal torchvision's counts
  (ResNet-50: 25,557,032) and `count_params()` (which adds BN moving statistics) equals
  keras.applications' count minus its redundant conv biases (26,560 for ResNet-50).
- CIFAR ResNet-20...110 are pre-activation by default (`preact=False` gives the original
  post-activation network, e.g. for ConvNet-AIG) with He et al.'s parameter-free option-A
  shortcuts at stage entries, for which their parameter counts hold (`shortcut="projection"`
  gives 1x1 projections, option B). ResNet-164 uses projections, as He et al. 2016b.

Block hooks for methods that edit the forward pass (lesion study, ConvNet-AIG, stochastic
depth): every block has `forward_parts(x) -> (shortcut, residual)`, `combine(shortcut,
residual)` (residual None = block deleted) and `skip(x)`; the model exposes `blocks`, `stages`
and `forward_features(x, block_fn=...)`.
"""

from __future__ import annotations

import math

import keras

from garden.nn.layers import (
    BNAct,
    Backbone,
    CompositeLayer,
    Conv,
    ConvBN,
    drop_path,
    register_variant,
    scale_width,
)

SHORTCUTS = ("identity", "projection", "zero_pad")


@keras.saving.register_keras_serializable(package="garden")
class ZeroPadShortcut(keras.layers.Layer):
    """Parameter-free shortcut (He et al. 2016a, option A): subsample, then zero-pad channels."""

    def __init__(self, filters, strides=1, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.strides = int(strides)

    def call(self, inputs):
        x = inputs[:, :: self.strides, :: self.strides, :] if self.strides > 1 else inputs
        extra = self.filters - x.shape[-1]
        if extra < 0:
            raise ValueError("a zero_pad shortcut cannot reduce the number of channels")
        if extra:
            x = keras.ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, extra]])
        return x

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        s = self.strides
        height = None if height is None else -(-height // s)
        width = None if width is None else -(-width // s)
        return (batch, height, width, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, strides=self.strides)
        return config


class ResidualBlock(CompositeLayer):
    """Base of the residual blocks: y = shortcut(x) + drop_path(F(x)) (post-act: then ReLU).

    Args:
        filters: width of the residual branch (bottlenecks output `4 * filters`).
        strides: stride of the block (on the 3x3 convolution and the shortcut).
        dilation_rate: dilation of the 3x3 convolutions (dense prediction).
        preact: pre-activation unit (BN -> ReLU -> conv) instead of conv -> BN -> ReLU.
        shortcut: "identity", "projection" (1x1 conv; + BN when post-act) or "zero_pad".
        dropout: dropout between the convolutions (Wide ResNets).
        drop_path_rate: probability of dropping the whole residual branch (stochastic depth).
    """

    expansion = 1

    def __init__(
        self,
        filters,
        strides=1,
        dilation_rate=1,
        preact=False,
        shortcut="identity",
        dropout=0.0,
        drop_path_rate=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if shortcut not in SHORTCUTS:
            raise ValueError(f"unknown shortcut {shortcut!r}; valid: {', '.join(SHORTCUTS)}")
        self.filters = int(filters)
        self.strides = int(strides)
        self.dilation_rate = int(dilation_rate)
        self.preact = bool(preact)
        self.shortcut_type = shortcut
        self.dropout = float(dropout)
        self.drop_path_rate = float(drop_path_rate)
        self.out_channels = self.filters * self.expansion
        if shortcut == "identity" and self.strides != 1:
            raise ValueError("an identity shortcut cannot have strides > 1")

        policy = self.dtype_policy
        self.pre = BNAct(dtype=policy, name="preact") if self.preact else None
        if shortcut == "projection":
            self.projection = (
                Conv(self.out_channels, 1, strides=self.strides, dtype=policy, name="projection")
                if self.preact
                else ConvBN(
                    self.out_channels,
                    1,
                    strides=self.strides,
                    activation=None,
                    dtype=policy,
                    name="projection",
                )
            )
        elif shortcut == "zero_pad":
            self.projection = ZeroPadShortcut(
                self.out_channels, self.strides, dtype=policy, name="projection"
            )
        else:
            self.projection = None
        self.drop_path = drop_path(self.drop_path_rate, dtype=policy, name="drop_path")
        self._build_branch()

    @property
    def is_downsampling(self) -> bool:
        """True for blocks whose shortcut is not the identity (strided or widening)."""
        return self.shortcut_type != "identity"

    def _build_branch(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _branch(self, x, training):  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_parts(self, inputs, training=False):
        """(shortcut(x), F(x)): the two summands of the block, F with drop path applied."""
        if self.preact:
            activated = self.pre(inputs, training=training)
            # He et al. 2016b: a projection sees the pre-activated input; identity sees x.
            shortcut_in = activated if self.shortcut_type == "projection" else inputs
        else:
            activated = shortcut_in = inputs
        shortcut = (
            shortcut_in
            if self.projection is None
            else self.projection(shortcut_in, training=training)
        )
        residual = self._branch(activated, training)
        if self.drop_path is not None:
            residual = self.drop_path(residual, training=training)
        return shortcut, residual

    def combine(self, shortcut, residual=None):
        """shortcut + residual, then the post-activation ReLU; residual None deletes F."""
        x = shortcut if residual is None else shortcut + residual
        return x if self.preact else keras.ops.relu(x)

    def shortcut(self, inputs, training=False):
        """The shortcut path alone (identity, or the projection of the (pre-activated) input)."""
        if self.projection is None:
            return inputs
        if self.preact and self.shortcut_type == "projection":
            inputs = self.pre(inputs, training=training)
        return self.projection(inputs, training=training)

    def skip(self, inputs, training=False):
        """The block with its residual branch deleted (lesion study): combine(shortcut(x))."""
        return self.combine(self.shortcut(inputs, training=training))

    def call(self, inputs, training=False):
        shortcut, residual = self.forward_parts(inputs, training=training)
        return self.combine(shortcut, residual)

    def compute_output_shape(self, input_shape):
        # 3x3 (and 1x1) convolutions with symmetric padding: ceil(size / stride).
        batch, height, width, _ = input_shape
        s = self.strides
        return (
            batch,
            None if height is None else -(-height // s),
            None if width is None else -(-width // s),
            self.out_channels,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            strides=self.strides,
            dilation_rate=self.dilation_rate,
            preact=self.preact,
            shortcut=self.shortcut_type,
            dropout=self.dropout,
            drop_path_rate=self.drop_path_rate,
        )
        return config


@keras.saving.register_keras_serializable(package="garden")
class BasicBlock(ResidualBlock):
    """Two 3x3 convolutions (ResNet-18/34, CIFAR ResNets, Wide ResNets). See `ResidualBlock`."""

    expansion = 1

    def _build_branch(self):
        policy, f, d = self.dtype_policy, self.filters, self.dilation_rate
        if self.preact:
            self.conv1 = Conv(
                f, 3, strides=self.strides, dilation_rate=d, dtype=policy, name="conv1"
            )
            self.mid = BNAct(dtype=policy, name="bn_act1")
            self.conv2 = Conv(f, 3, dilation_rate=d, dtype=policy, name="conv2")
        else:
            self.conv1 = ConvBN(
                f, 3, strides=self.strides, dilation_rate=d, dtype=policy, name="conv1"
            )
            self.conv2 = ConvBN(f, 3, dilation_rate=d, activation=None, dtype=policy, name="conv2")
        self.inner_drop = (
            keras.layers.Dropout(self.dropout, dtype=policy, name="dropout")
            if self.dropout > 0
            else None
        )

    def _branch(self, x, training):
        if self.preact:
            x = self.mid(self.conv1(x), training=training)
            if self.inner_drop is not None:
                x = self.inner_drop(x, training=training)
            return self.conv2(x)
        x = self.conv1(x, training=training)
        if self.inner_drop is not None:
            x = self.inner_drop(x, training=training)
        return self.conv2(x, training=training)


@keras.saving.register_keras_serializable(package="garden")
class BottleneckBlock(ResidualBlock):
    """1x1 -> 3x3 (strided, v1.5) -> 1x1 with 4x expansion (ResNet-50/101/152, ResNet-164).

    See `ResidualBlock` for the arguments.
    """

    expansion = 4

    def _build_branch(self):
        policy, f, d = self.dtype_policy, self.filters, self.dilation_rate
        if self.preact:
            self.conv1 = Conv(f, 1, dtype=policy, name="conv1")
            self.mid1 = BNAct(dtype=policy, name="bn_act1")
            self.conv2 = Conv(
                f, 3, strides=self.strides, dilation_rate=d, dtype=policy, name="conv2"
            )
            self.mid2 = BNAct(dtype=policy, name="bn_act2")
            self.conv3 = Conv(self.out_channels, 1, dtype=policy, name="conv3")
        else:
            self.conv1 = ConvBN(f, 1, dtype=policy, name="conv1")
            self.conv2 = ConvBN(
                f, 3, strides=self.strides, dilation_rate=d, dtype=policy, name="conv2"
            )
            self.conv3 = ConvBN(self.out_channels, 1, activation=None, dtype=policy, name="conv3")
        self.inner_drop = (
            keras.layers.Dropout(self.dropout, dtype=policy, name="dropout")
            if self.dropout > 0
            else None
        )

    def _branch(self, x, training):
        if self.preact:
            x = self.mid1(self.conv1(x), training=training)
            x = self.mid2(self.conv2(x), training=training)
            if self.inner_drop is not None:
                x = self.inner_drop(x, training=training)
            return self.conv3(x)
        x = self.conv1(x, training=training)
        x = self.conv2(x, training=training)
        if self.inner_drop is not None:
            x = self.inner_drop(x, training=training)
        return self.conv3(x, training=training)


BLOCK_TYPES = {"basic": BasicBlock, "bottleneck": BottleneckBlock}
STEMS = ("imagenet", "cifar")


@keras.saving.register_keras_serializable(package="garden")
class ResNet(Backbone):
    """A residual network: stem, stages of residual blocks, global pooling, classifier.

    Args:
        blocks_per_stage: number of blocks in each stage, e.g. (3, 4, 6, 3) for ResNet-50.
        block_type: "basic" (two 3x3) or "bottleneck" (1x1-3x3-1x1, 4x expansion).
        stage_widths: width of each stage's residual branch (bottlenecks output 4x this).
        stage_strides: stride of each stage's first block; default 1 for the first stage, 2 after.
        stem: "imagenet" (7x7/2 conv-BN-ReLU, 3x3/2 max pool: stride 4) or "cifar" (3x3 conv,
            stride 1; without BN-ReLU when `preact`).
        stem_width: channels of the stem convolution.
        preact: pre-activation blocks (He et al. 2016b) and a final BN-ReLU before pooling.
        shortcut: shortcut of blocks that change shape: "projection" (1x1 conv) or "zero_pad".
        width_multiplier: scales `stem_width` and `stage_widths` (tiny test / CPU configs).
        output_stride: None for the natural stride; else 4/8/16/32...: stages that would exceed
            it keep stride 1 and dilate their 3x3 convolutions instead (DeepLab).
        block_dropout: dropout between the convolutions of each block (Wide ResNets).
        drop_path_rate: stochastic depth; block k of N is dropped with rate * (k + 1) / N.
        num_classes, include_top, head_dropout: see `Backbone`.

    `features(x)` keys are "C<level>": the output of the last layer at nominal stride
    2**level (before dilation), e.g. C1 (stem conv), C2..C5 for ImageNet; C0..C2 for CIFAR.
    With `preact`, the last entry is taken after the final BN-ReLU.
    """

    def __init__(
        self,
        blocks_per_stage=(3, 4, 6, 3),
        block_type="bottleneck",
        stage_widths=(64, 128, 256, 512),
        stage_strides=None,
        stem="imagenet",
        stem_width=64,
        preact=False,
        shortcut="projection",
        width_multiplier=1.0,
        output_stride=None,
        block_dropout=0.0,
        drop_path_rate=0.0,
        num_classes=1000,
        include_top=True,
        head_dropout=0.0,
        **kwargs,
    ):
        super().__init__(
            num_classes=num_classes, include_top=include_top, head_dropout=head_dropout, **kwargs
        )
        if block_type not in BLOCK_TYPES:
            raise ValueError(f"unknown block_type {block_type!r}; valid: basic, bottleneck")
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; valid: {', '.join(STEMS)}")
        if shortcut not in ("projection", "zero_pad"):
            raise ValueError(f"unknown shortcut {shortcut!r}; valid: projection, zero_pad")
        self.blocks_per_stage = [int(n) for n in blocks_per_stage]
        self.block_type = block_type
        self.stage_widths = [int(w) for w in stage_widths]
        if len(self.stage_widths) != len(self.blocks_per_stage):
            raise ValueError("stage_widths and blocks_per_stage must have the same length")
        if stage_strides is None:
            stage_strides = [1] + [2] * (len(self.blocks_per_stage) - 1)
        self.stage_strides = [int(s) for s in stage_strides]
        if len(self.stage_strides) != len(self.blocks_per_stage):
            raise ValueError("stage_strides and blocks_per_stage must have the same length")
        self.stem_type = stem
        self.stem_width = int(stem_width)
        self.preact = bool(preact)
        self.shortcut_type = shortcut
        self.width_multiplier = float(width_multiplier)
        self.output_stride = None if output_stride is None else int(output_stride)
        self.block_dropout = float(block_dropout)
        self.drop_path_rate = float(drop_path_rate)

        policy = self.dtype_policy
        block_cls = BLOCK_TYPES[block_type]
        stem_channels = scale_width(self.stem_width, self.width_multiplier)

        # Stem.
        if stem == "imagenet":
            self.stem = ConvBN(stem_channels, 7, strides=2, dtype=policy, name="stem")
            # Applied after a 1-pixel zero padding, which equals -inf padding here: the pool's
            # input is post-ReLU (keras.applications and torchvision pool the same way).
            self.stem_pool = keras.layers.MaxPooling2D(3, strides=2, dtype=policy, name="stem_pool")
            stride = 4
            self._feature_info.append({"key": "C1", "channels": stem_channels, "stride": 2})
        elif preact:
            self.stem = Conv(stem_channels, 3, dtype=policy, name="stem")
            self.stem_pool = None
            stride = 1
        else:
            self.stem = ConvBN(stem_channels, 3, dtype=policy, name="stem")
            self.stem_pool = None
            stride = 1
        if self.output_stride is not None and (
            self.output_stride < stride or self.output_stride & (self.output_stride - 1)
        ):
            raise ValueError(
                f"output_stride must be a power of 2 >= the stem's stride {stride}, "
                f"got {self.output_stride}"
            )

        # Stages.
        self.blocks = []
        self._stage_ends = []
        total = sum(self.blocks_per_stage)
        in_channels, dilation, nominal = stem_channels, 1, stride
        for stage, (n, width, stage_stride) in enumerate(
            zip(self.blocks_per_stage, self.stage_widths, self.stage_strides)
        ):
            width = scale_width(width, self.width_multiplier)
            nominal *= stage_stride
            previous_dilation = dilation
            if self.output_stride is not None and stride * stage_stride > self.output_stride:
                dilation *= stage_stride
                stage_stride = 1
            else:
                stride *= stage_stride
            for index in range(n):
                out_channels = width * block_cls.expansion
                first = index == 0
                strides = stage_stride if first else 1
                needs_shortcut = first and (strides != 1 or in_channels != out_channels)
                self.blocks.append(
                    block_cls(
                        width,
                        strides=strides,
                        # As torchvision: a dilated stage's first block keeps the old dilation.
                        dilation_rate=previous_dilation if first else dilation,
                        preact=self.preact,
                        shortcut=self.shortcut_type if needs_shortcut else "identity",
                        dropout=self.block_dropout,
                        drop_path_rate=self.drop_path_rate * (len(self.blocks) + 1) / total,
                        dtype=policy,
                        name=f"stage{stage + 1}_block{index + 1}",
                    )
                )
                in_channels = out_channels
            self._stage_ends.append(len(self.blocks))
            self._feature_info.append(
                {"key": f"C{int(math.log2(nominal))}", "channels": in_channels, "stride": stride}
            )
        self.final_norm = BNAct(dtype=policy, name="final_norm") if self.preact else None
        self._build_classifier()

    @property
    def stages(self):
        """The residual blocks grouped by stage (lists of `ResidualBlock`)."""
        starts = [0] + self._stage_ends[:-1]
        return [self.blocks[a:b] for a, b in zip(starts, self._stage_ends)]

    def forward_stem(self, inputs, training=False):
        x = self.stem(inputs, training=training)
        if self.stem_pool is None:
            return x
        return self.stem_pool(keras.ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]))

    def features(self, inputs, training=False, block_fn=None):
        """Ordered dict of feature maps (see the class docstring); `block_fn` as in
        `forward_features`."""
        out = {}
        x = self.stem(inputs, training=training)
        info = iter(self._feature_info)
        if self.stem_pool is not None:
            out[next(info)["key"]] = x
            x = self.stem_pool(keras.ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]))
        start = 0
        for end in self._stage_ends:
            for index in range(start, end):
                block = self.blocks[index]
                if block_fn is None:
                    x = block(x, training=training)
                else:
                    x = block_fn(index, block, x, training)
            out[next(info)["key"]] = x
            start = end
        if self.final_norm is not None:
            x = self.final_norm(x, training=training)
            out[self._feature_info[-1]["key"]] = x
        return out

    def forward_features(self, inputs, training=False, block_fn=None):
        """The final feature map. `block_fn(index, block, x, training) -> x`, if given, runs
        each block instead of `block(x, training=training)`: e.g. `block.skip(x)` to delete
        it, or `block.combine(*gate(block.forward_parts(x)))` to gate it."""
        return self.features(inputs, training=training, block_fn=block_fn)[
            self._feature_info[-1]["key"]
        ]

    def get_config(self):
        config = super().get_config()
        config.update(
            blocks_per_stage=list(self.blocks_per_stage),
            block_type=self.block_type,
            stage_widths=list(self.stage_widths),
            stage_strides=list(self.stage_strides),
            stem=self.stem_type,
            stem_width=self.stem_width,
            preact=self.preact,
            shortcut=self.shortcut_type,
            width_multiplier=self.width_multiplier,
            output_stride=self.output_stride,
            block_dropout=self.block_dropout,
            drop_path_rate=self.drop_path_rate,
        )
        return config


# --- Registered variants ---------------------------------------------------------------------


def _imagenet_resnet(depth, block_type, blocks_per_stage):
    return register_variant(
        f"resnet{depth}",
        ResNet,
        fixed={"blocks_per_stage": blocks_per_stage, "block_type": block_type, "stem": "imagenet"},
        doc=f"ResNet-{depth} for ImageNet-size inputs (He et al. 2016a, Table 1).",
    )


resnet18 = _imagenet_resnet(18, "basic", (2, 2, 2, 2))
resnet34 = _imagenet_resnet(34, "basic", (3, 4, 6, 3))
resnet50 = _imagenet_resnet(50, "bottleneck", (3, 4, 6, 3))
resnet101 = _imagenet_resnet(101, "bottleneck", (3, 4, 23, 3))
resnet152 = _imagenet_resnet(152, "bottleneck", (3, 8, 36, 3))


def cifar_blocks_per_stage(depth: int, block_type: str = "basic") -> tuple[int, int, int]:
    """Blocks per stage of a CIFAR ResNet: n = (depth - 2) / 6 (basic) or / 9 (bottleneck)."""
    layers_per_block = 2 if block_type == "basic" else 3
    n, rest = divmod(depth - 2, 3 * layers_per_block)
    if rest or n < 1:
        raise ValueError(
            f"a CIFAR ResNet with {block_type} blocks has depth 6n+2 (basic) or 9n+2 "
            f"(bottleneck), got {depth}"
        )
    return (n, n, n)


_CIFAR_DEFAULTS = {
    "stage_widths": (16, 32, 64),
    "stem_width": 16,
    "preact": True,
    "num_classes": 10,
}


def _cifar_resnet(depth):
    return register_variant(
        f"resnet{depth}",
        ResNet,
        fixed={
            "blocks_per_stage": cifar_blocks_per_stage(depth),
            "block_type": "basic",
            "stem": "cifar",
        },
        # He et al. 2016a, Sec. 4.2: "we use identity shortcuts in all cases (i.e., option A)";
        # their parameter counts (0.27M ... 1.7M) are for it. shortcut="projection" is option B.
        defaults={**_CIFAR_DEFAULTS, "shortcut": "zero_pad"},
        doc=f"Pre-activation ResNet-{depth} for 32x32 CIFAR inputs: 3 stages of "
        f"{(depth - 2) // 6} basic blocks, 16/32/64 channels, zero-padding (option A) "
        f"shortcuts (He et al. 2016a/b). `preact=False` gives the original network.",
    )


resnet20 = _cifar_resnet(20)
resnet32 = _cifar_resnet(32)
resnet44 = _cifar_resnet(44)
resnet56 = _cifar_resnet(56)
resnet110 = _cifar_resnet(110)
resnet164 = register_variant(
    "resnet164",
    ResNet,
    fixed={
        "blocks_per_stage": cifar_blocks_per_stage(164, "bottleneck"),
        "block_type": "bottleneck",
        "stem": "cifar",
    },
    defaults=_CIFAR_DEFAULTS,
    doc="Pre-activation ResNet-164 for CIFAR: 3 stages of 18 bottlenecks, outputs "
    "64/128/256 channels, projection shortcuts (He et al. 2016b, Table 2).",
)
