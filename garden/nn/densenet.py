"""Densely connected networks (Huang et al. 2017): DenseNet-121/169/201 and CIFAR DenseNet-BC.

Reference:
    G. Huang, Z. Liu, L. van der Maaten, K. Q. Weinberger. "Densely Connected Convolutional
    Networks", CVPR 2017 (DenseNet-BC: 1x1 bottlenecks of 4k channels, compression 0.5;
    ImageNet DenseNet-121 with k = 32 and blocks 6/12/24/16; CIFAR DenseNet-BC (L=100, k=12)
    with 0.8M parameters).

Same layers as keras.applications.DenseNet121 (bias-free convolutions, BN-ReLU-conv
composite functions, a final BN-ReLU), hence the same parameter count: 8,062,504 with the
1000-way head (7,978,856 trainable, torchvision's count).
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
    register_variant,
    scale_width,
)


@keras.saving.register_keras_serializable(package="garden")
class DenseLayer(CompositeLayer):
    """BN-ReLU-conv1x1(bottleneck_width * k)-BN-ReLU-conv3x3(k) [-dropout], concatenated to x.

    Args:
        growth_rate: k, the channels the layer adds.
        bottleneck_width: the 1x1 bottleneck has `bottleneck_width * k` channels (DenseNet-B:
            4); 0 for no bottleneck.
        dropout: dropout after each convolution (Huang et al.: 0.2 without data augmentation).
    """

    def __init__(self, growth_rate, bottleneck_width=4, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.growth_rate = int(growth_rate)
        self.bottleneck_width = int(bottleneck_width)
        self.dropout = float(dropout)
        policy = self.dtype_policy
        if self.bottleneck_width:
            self.norm1 = BNAct(dtype=policy, name="bn_act1")
            self.conv1 = Conv(
                self.bottleneck_width * self.growth_rate, 1, dtype=policy, name="conv1"
            )
        else:
            self.norm1 = self.conv1 = None
        self.norm2 = BNAct(dtype=policy, name="bn_act2")
        self.conv2 = Conv(self.growth_rate, 3, dtype=policy, name="conv2")
        self.drop = (
            keras.layers.Dropout(self.dropout, dtype=policy, name="dropout")
            if self.dropout > 0
            else None
        )

    def call(self, inputs, training=False):
        x = inputs
        if self.conv1 is not None:
            x = self.conv1(self.norm1(x, training=training))
            if self.drop is not None:
                x = self.drop(x, training=training)
        x = self.conv2(self.norm2(x, training=training))
        if self.drop is not None:
            x = self.drop(x, training=training)
        return keras.ops.concatenate([inputs, x], axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (input_shape[-1] + self.growth_rate,)

    def get_config(self):
        config = super().get_config()
        config.update(
            growth_rate=self.growth_rate,
            bottleneck_width=self.bottleneck_width,
            dropout=self.dropout,
        )
        return config


@keras.saving.register_keras_serializable(package="garden")
class Transition(CompositeLayer):
    """BN-ReLU-conv1x1(filters)-avgpool 2x2/2 between dense blocks."""

    def __init__(self, filters, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.dropout = float(dropout)
        policy = self.dtype_policy
        self.norm = BNAct(dtype=policy, name="bn_act")
        self.conv = Conv(self.filters, 1, dtype=policy, name="conv")
        self.drop = (
            keras.layers.Dropout(self.dropout, dtype=policy, name="dropout")
            if self.dropout > 0
            else None
        )
        self.pool = keras.layers.AveragePooling2D(2, strides=2, dtype=policy, name="pool")

    def call(self, inputs, training=False):
        x = self.conv(self.norm(inputs, training=training))
        if self.drop is not None:
            x = self.drop(x, training=training)
        return self.pool(x)

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        return (
            batch,
            None if height is None else height // 2,
            None if width is None else width // 2,
            self.filters,
        )

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, dropout=self.dropout)
        return config


@keras.saving.register_keras_serializable(package="garden")
class DenseNet(Backbone):
    """A DenseNet: stem, dense blocks joined by transitions, final BN-ReLU, pooling, classifier.

    Args:
        blocks_per_stage: dense layers per dense block, e.g. (6, 12, 24, 16) for DenseNet-121.
        growth_rate: k, channels added by each dense layer.
        bottleneck_width: 4 for DenseNet-B(C) bottlenecks, 0 for none.
        compression: transitions keep floor(compression * channels) channels (BC: 0.5).
        stem: "imagenet" (7x7/2 conv-BN-ReLU, 3x3/2 max pool) or "cifar" (one 3x3 conv).
        stem_width: channels of the stem convolution; None for 2k (ImageNet, CIFAR BC).
        width_multiplier: scales the growth rate and the stem width (tiny configs).
        dropout: dropout after each convolution of the dense layers and transitions.
        num_classes, include_top, head_dropout: see `Backbone`.

    `features(x)` keys are "C<level>" (nominal stride 2**level): the stem conv C1 and the
    outputs of the dense blocks C2..C5 (ImageNet) or C0..C2 (CIFAR), the last one after the
    final BN-ReLU.
    """

    def __init__(
        self,
        blocks_per_stage=(6, 12, 24, 16),
        growth_rate=32,
        bottleneck_width=4,
        compression=0.5,
        stem="imagenet",
        stem_width=None,
        width_multiplier=1.0,
        dropout=0.0,
        num_classes=1000,
        include_top=True,
        head_dropout=0.0,
        **kwargs,
    ):
        super().__init__(
            num_classes=num_classes, include_top=include_top, head_dropout=head_dropout, **kwargs
        )
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"unknown stem {stem!r}; valid: imagenet, cifar")
        self.blocks_per_stage = [int(n) for n in blocks_per_stage]
        self.growth_rate = int(growth_rate)
        self.bottleneck_width = int(bottleneck_width)
        self.compression = float(compression)
        self.stem_type = stem
        self.stem_width = None if stem_width is None else int(stem_width)
        self.width_multiplier = float(width_multiplier)
        self.dropout = float(dropout)

        policy = self.dtype_policy
        k = scale_width(self.growth_rate, self.width_multiplier)
        channels = scale_width(
            2 * self.growth_rate if self.stem_width is None else self.stem_width,
            self.width_multiplier,
        )
        if stem == "imagenet":
            self.stem = ConvBN(channels, 7, strides=2, dtype=policy, name="stem")
            # Applied after a 1-pixel zero padding, which equals -inf padding here: the pool's
            # input is post-ReLU (keras.applications and torchvision pool the same way).
            self.stem_pool = keras.layers.MaxPooling2D(3, strides=2, dtype=policy, name="stem_pool")
            self._feature_info.append({"key": "C1", "channels": channels, "stride": 2})
            stride = 4
        else:
            self.stem = Conv(channels, 3, dtype=policy, name="stem")
            self.stem_pool = None
            stride = 1

        self.dense_layers = []
        self.transitions = []
        self._stage_ends = []
        for stage, n in enumerate(self.blocks_per_stage):
            if stage > 0:
                channels = int(math.floor(channels * self.compression))
                self.transitions.append(
                    Transition(
                        channels, dropout=self.dropout, dtype=policy, name=f"transition{stage}"
                    )
                )
                stride *= 2
            for index in range(n):
                self.dense_layers.append(
                    DenseLayer(
                        k,
                        bottleneck_width=self.bottleneck_width,
                        dropout=self.dropout,
                        dtype=policy,
                        name=f"block{stage + 1}_layer{index + 1}",
                    )
                )
                channels += k
            self._stage_ends.append(len(self.dense_layers))
            self._feature_info.append(
                {"key": f"C{int(math.log2(stride))}", "channels": channels, "stride": stride}
            )
        self.final_norm = BNAct(dtype=policy, name="final_norm")
        self._build_classifier()

    def features(self, inputs, training=False):
        """Ordered dict of feature maps (see the class docstring)."""
        out = {}
        info = iter(self._feature_info)
        x = self.stem(inputs, training=training)
        if self.stem_pool is not None:
            out[next(info)["key"]] = x
            x = self.stem_pool(keras.ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]))
        start = 0
        for stage, end in enumerate(self._stage_ends):
            if stage > 0:
                x = self.transitions[stage - 1](x, training=training)
            for layer in self.dense_layers[start:end]:
                x = layer(x, training=training)
            out[next(info)["key"]] = x
            start = end
        out[self._feature_info[-1]["key"]] = self.final_norm(x, training=training)
        return out

    def get_config(self):
        config = super().get_config()
        config.update(
            blocks_per_stage=list(self.blocks_per_stage),
            growth_rate=self.growth_rate,
            bottleneck_width=self.bottleneck_width,
            compression=self.compression,
            stem=self.stem_type,
            stem_width=self.stem_width,
            width_multiplier=self.width_multiplier,
            dropout=self.dropout,
        )
        return config


def _imagenet_densenet(depth, blocks_per_stage):
    return register_variant(
        f"densenet{depth}",
        DenseNet,
        fixed={"blocks_per_stage": blocks_per_stage, "stem": "imagenet"},
        doc=f"DenseNet-{depth} (Huang et al. 2017, Table 1): k = 32, blocks {blocks_per_stage}.",
    )


densenet121 = _imagenet_densenet(121, (6, 12, 24, 16))
densenet169 = _imagenet_densenet(169, (6, 12, 32, 32))
densenet201 = _imagenet_densenet(201, (6, 12, 48, 32))

densenet_bc100 = register_variant(
    "densenet_bc100",
    DenseNet,
    fixed={"blocks_per_stage": (16, 16, 16), "stem": "cifar"},
    defaults={"growth_rate": 12, "num_classes": 10},
    doc="DenseNet-BC (L=100, k=12) for 32x32 CIFAR inputs (Huang et al. 2017, Table 2): 3 "
    "dense blocks of 16 bottleneck layers, compression 0.5. `growth_rate=40` gives Neural "
    "Rejuvenation's DenseNet-100-40.",
)
