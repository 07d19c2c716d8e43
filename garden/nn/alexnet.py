"""AlexNet with batch normalisation and PReLU, fc6/fc7 of 1024: the base of seed 000.

References:
    A. Krizhevsky, I. Sutskever, G. Hinton. "ImageNet Classification with Deep Convolutional
    Neural Networks", NIPS 2012 (the Caffe layer spec: 96@11x11/4, 256@5x5 (2 groups),
    384@3x3, 384@3x3 (2 groups), 256@3x3 (2 groups), 3x3/2 max pools).
    Visual variation learning (seed 000), specs/seeds_000_001.md A.2.1: "AlexNet with minor
    modifications ... fc6 and fc7 from 4,096 to 1,024", 15 classes, "batch normalization
    before ReLU ... PReLU", 224x224 crops, "10M" parameters.

Choices (the spec's [GUESS]es, in code): conv/fc -> BN -> PReLU everywhere except the logits;
no LRN (BN replaces it); channel-wise PReLU (He et al. 2015, Caffe's default) initialised at
0.25; dropout 0.5 after fc6 and fc7 as in AlexNet; Caffe's grouped convolutions; 224x224
inputs with an unpadded conv1 and floor-mode 3x3/2 pools, so pool5 is 5x5x256 = 6,400 and
the network has 9,960,527 trainable parameters (9,967,375 with BN moving statistics), the
spec's "10M". Weights are He-normal (the spec's "standard Gaussian" std is unknown).

`small_inputs=True` is the spec's A.7 "AlexNet-mini" layout for 32-64 px images: 3x3
convolutions at stride 1 and 2x2/2 max pools (pool5 is then input/8).
"""

from __future__ import annotations

import keras

from garden.nn.layers import Backbone, ConvBN, DenseBN, register_variant, scale_width

ENDPOINTS = ("conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5")


@keras.saving.register_keras_serializable(package="garden")
class AlexNet(Backbone):
    """AlexNet: five convolutions, three max pools, fc6, fc7, classifier.

    Args:
        conv_widths: channels of conv1..conv5 (Caffe: 96, 256, 384, 384, 256).
        fc_width: width of fc6 and fc7 (seed 000: 1024; the original 4096).
        width_multiplier: scales `conv_widths` (tiny test / CPU configs).
        grouped: Caffe's 2-group conv2, conv4 and conv5 (False: ungrouped).
        batch_norm: BN after every conv and hidden fc (their bias is then dropped).
        activation: "prelu" (seed 000) or "relu".
        dropout: dropout after fc6 and fc7.
        small_inputs: 3x3 stride-1 convolutions and 2x2 pools for 32-64 px inputs.
        num_classes, include_top, head_dropout: see `Backbone` (`num_classes=0` returns fc7).

    `features(x)` keys are the layer names conv1, pool1, conv2, pool2, conv3, conv4, conv5,
    pool5 (several share a stride, so they are named, not "C<level>"); the injection points of
    seed 000 (pool1, pool2, conv3, conv4) are among them.
    """

    def __init__(
        self,
        conv_widths=(96, 256, 384, 384, 256),
        fc_width=1024,
        width_multiplier=1.0,
        grouped=True,
        batch_norm=True,
        activation="prelu",
        dropout=0.5,
        small_inputs=False,
        num_classes=15,
        include_top=True,
        head_dropout=0.0,
        **kwargs,
    ):
        super().__init__(
            num_classes=num_classes, include_top=include_top, head_dropout=head_dropout, **kwargs
        )
        self.conv_widths = [int(w) for w in conv_widths]
        if len(self.conv_widths) != 5:
            raise ValueError(f"conv_widths needs 5 values, got {self.conv_widths}")
        self.fc_width = int(fc_width)
        self.width_multiplier = float(width_multiplier)
        self.grouped = bool(grouped)
        self.batch_norm = bool(batch_norm)
        self.activation = activation
        self.dropout = float(dropout)
        self.small_inputs = bool(small_inputs)

        policy = self.dtype_policy
        groups = 2 if self.grouped else 1
        # Grouped convolutions need widths divisible by the number of groups.
        widths = [groups * scale_width(w / groups, self.width_multiplier) for w in self.conv_widths]
        if self.small_inputs:
            kernels, strides, paddings = (3, 3, 3, 3, 3), (1, 1, 1, 1, 1), ("same",) * 5
            pool = dict(pool_size=2, strides=2)
            conv_strides = [1, 2, 2, 4, 4, 4, 4, 8]
        else:
            kernels, strides = (11, 5, 3, 3, 3), (4, 1, 1, 1, 1)
            paddings = ("valid", "same", "same", "same", "same")
            pool = dict(pool_size=3, strides=2)
            conv_strides = [4, 8, 8, 16, 16, 16, 16, 32]
        conv_groups = (1, groups, 1, groups, groups)
        self.convs = [
            ConvBN(
                widths[i],
                kernels[i],
                strides=strides[i],
                groups=conv_groups[i],
                padding=paddings[i],
                activation=self.activation,
                use_bn=self.batch_norm,
                dtype=policy,
                name=f"conv{i + 1}",
            )
            for i in range(5)
        ]
        self.pools = [
            keras.layers.MaxPooling2D(**pool, padding="valid", dtype=policy, name=f"pool{i}")
            for i in (1, 2, 5)
        ]
        channels = [
            widths[0],
            widths[0],
            widths[1],
            widths[1],
            widths[2],
            widths[3],
            widths[4],
            widths[4],
        ]
        self._feature_info = [
            {"key": key, "channels": c, "stride": s}
            for key, c, s in zip(ENDPOINTS, channels, conv_strides)
        ]
        if self.include_top:
            self.flatten = keras.layers.Flatten(dtype=policy, name="flatten")
            self.fc = [
                DenseBN(
                    self.fc_width,
                    activation=self.activation,
                    use_bn=self.batch_norm,
                    dropout=self.dropout,
                    dtype=policy,
                    name=f"fc{6 + i}",
                )
                for i in range(2)
            ]
        self._num_features = self.fc_width
        self._build_classifier(pool=False)

    def features(self, inputs, training=False):
        """Ordered dict conv1, pool1, conv2, pool2, conv3, conv4, conv5, pool5."""
        out = {}
        x = out["conv1"] = self.convs[0](inputs, training=training)
        x = out["pool1"] = self.pools[0](x)
        x = out["conv2"] = self.convs[1](x, training=training)
        x = out["pool2"] = self.pools[1](x)
        x = out["conv3"] = self.convs[2](x, training=training)
        x = out["conv4"] = self.convs[3](x, training=training)
        x = out["conv5"] = self.convs[4](x, training=training)
        out["pool5"] = self.pools[2](x)
        return out

    def get_config(self):
        config = super().get_config()
        config.update(
            conv_widths=list(self.conv_widths),
            fc_width=self.fc_width,
            width_multiplier=self.width_multiplier,
            grouped=self.grouped,
            batch_norm=self.batch_norm,
            activation=self.activation,
            dropout=self.dropout,
            small_inputs=self.small_inputs,
        )
        return config


alexnet_bn = register_variant(
    "alexnet_bn",
    AlexNet,
    doc="AlexNet with BN and PReLU and fc6/fc7 of 1024 (seed 000, specs/seeds_000_001.md "
    "A.2.1): 9,960,527 trainable parameters at 224x224 with 15 classes.",
)
