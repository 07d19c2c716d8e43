"""VGG networks (Simonyan & Zisserman 2015), with optional batch normalisation.

Reference:
    K. Simonyan, A. Zisserman. "Very Deep Convolutional Networks for Large-Scale Image
    Recognition", ICLR 2015 (configurations A, B, D, E = VGG-11/13/16/19; VGG-16 has 138M
    parameters with its 1000-way head at 224x224).

Choices:
- `batch_norm=True` puts BN after every convolution (as torchvision's `vgg16_bn` and
  NDDR-CNN's DeepLab-VGG code) and drops the convolutions' bias, which BN makes redundant
  (torchvision keeps it: its vgg16_bn has 2 x 4,224 more parameters).
- `head="classic"` is the paper's flatten -> fc 4096 -> fc 4096 -> classifier (ReLU, dropout);
  its first fc depends on the input size (25,088 inputs at 224x224). `head="gap"` is global
  average pooling -> classifier (CIFAR VGGs, e.g. Neural Rejuvenation's VGG-19).
- `output_stride` 16 or 8 keeps the last pools at stride 1 (3x3 "same" max pools) and dilates
  the convolutions after them (DeepLab-LargeFOV: pool4, pool5 stride 1, conv5 dilation 2).
"""

from __future__ import annotations

import keras

from garden.nn.layers import Backbone, ConvBN, DenseBN, register_variant, scale_width

VGG_BLOCKS = {
    11: (1, 1, 2, 2, 2),
    13: (2, 2, 2, 2, 2),
    16: (2, 2, 3, 3, 3),
    19: (2, 2, 4, 4, 4),
}
HEADS = ("classic", "gap")


@keras.saving.register_keras_serializable(package="garden")
class VGG(Backbone):
    """A VGG network: stages of 3x3 conv (-BN) -ReLU, each followed by a max pool; then a head.

    Args:
        blocks_per_stage: convolutions per stage, e.g. (2, 2, 3, 3, 3) for VGG-16.
        stage_widths: channels of each stage's convolutions.
        batch_norm: BN after every convolution (the convolution then has no bias).
        width_multiplier: scales `stage_widths` (tiny test / CPU configs; not the fc width).
        head: "classic" (flatten, two hidden fc layers) or "gap" (global average pooling).
        fc_width: width of the classic head's hidden fc layers (4096).
        dropout: dropout after each hidden fc layer of the classic head.
        pool_size: 2 (VGG) or 3 (DeepLab's 3x3/2 "same" pools).
        output_stride: None (32 for 5 stages) or a smaller power of 2 (see the module doc).
        num_classes, include_top, head_dropout: see `Backbone`.

    `features(x)` keys are "C<k>", the output of the k-th max pool (nominal stride 2**k).
    `num_classes=0` returns the last hidden fc layer (classic, `fc_width`) or the pooled
    features (gap); `include_top=False` returns the last pool's output.
    """

    def __init__(
        self,
        blocks_per_stage=(2, 2, 3, 3, 3),
        stage_widths=(64, 128, 256, 512, 512),
        batch_norm=False,
        width_multiplier=1.0,
        head="classic",
        fc_width=4096,
        dropout=0.5,
        pool_size=2,
        output_stride=None,
        num_classes=1000,
        include_top=True,
        head_dropout=0.0,
        **kwargs,
    ):
        super().__init__(
            num_classes=num_classes, include_top=include_top, head_dropout=head_dropout, **kwargs
        )
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; valid: {', '.join(HEADS)}")
        self.blocks_per_stage = [int(n) for n in blocks_per_stage]
        self.stage_widths = [int(w) for w in stage_widths]
        if len(self.stage_widths) != len(self.blocks_per_stage):
            raise ValueError("stage_widths and blocks_per_stage must have the same length")
        self.batch_norm = bool(batch_norm)
        self.width_multiplier = float(width_multiplier)
        self.head = head
        self.fc_width = int(fc_width)
        self.dropout = float(dropout)
        self.pool_size = int(pool_size)
        self.output_stride = None if output_stride is None else int(output_stride)
        if self.output_stride is not None and self.output_stride & (self.output_stride - 1):
            raise ValueError(f"output_stride must be a power of 2, got {self.output_stride}")

        policy = self.dtype_policy
        self.convs = []
        self.pools = []
        self._stage_ends = []
        stride, dilation = 1, 1
        for stage, (n, width) in enumerate(zip(self.blocks_per_stage, self.stage_widths)):
            width = scale_width(width, self.width_multiplier)
            for index in range(n):
                self.convs.append(
                    ConvBN(
                        width,
                        3,
                        dilation_rate=dilation,
                        use_bn=self.batch_norm,
                        dtype=policy,
                        name=f"conv{stage + 1}_{index + 1}",
                    )
                )
            self._stage_ends.append(len(self.convs))
            if self.output_stride is not None and stride * 2 > self.output_stride:
                pool_stride = 1
                dilation *= 2  # the following convolutions see a 2x denser grid
            else:
                pool_stride = 2
                stride *= 2
            size = 3 if pool_stride == 1 else self.pool_size
            self.pools.append(
                keras.layers.MaxPooling2D(
                    size,
                    strides=pool_stride,
                    padding="valid" if (size, pool_stride) == (2, 2) else "same",
                    dtype=policy,
                    name=f"pool{stage + 1}",
                )
            )
            self._feature_info.append({"key": f"C{stage + 1}", "channels": width, "stride": stride})

        if head == "classic" and self.include_top:
            self.flatten = keras.layers.Flatten(dtype=policy, name="flatten")
            self.fc = [
                DenseBN(
                    self.fc_width,
                    use_bn=False,
                    dropout=self.dropout,
                    dtype=policy,
                    name=f"fc{6 + i}",
                )
                for i in range(2)
            ]
        if head == "classic":
            self._num_features = self.fc_width
        self._build_classifier(pool=head == "gap")

    def features(self, inputs, training=False):
        """Ordered dict of the max pools' outputs C1..C5 (see the class docstring)."""
        out = {}
        x = inputs
        start = 0
        for end, pool, info in zip(self._stage_ends, self.pools, self._feature_info):
            for conv in self.convs[start:end]:
                x = conv(x, training=training)
            x = pool(x)
            out[info["key"]] = x
            start = end
        return out

    def get_config(self):
        config = super().get_config()
        config.update(
            blocks_per_stage=list(self.blocks_per_stage),
            stage_widths=list(self.stage_widths),
            batch_norm=self.batch_norm,
            width_multiplier=self.width_multiplier,
            head=self.head,
            fc_width=self.fc_width,
            dropout=self.dropout,
            pool_size=self.pool_size,
            output_stride=self.output_stride,
        )
        return config


def _vgg(depth):
    return register_variant(
        f"vgg{depth}",
        VGG,
        fixed={"blocks_per_stage": VGG_BLOCKS[depth]},
        doc=f"VGG-{depth} (Simonyan & Zisserman 2015); `batch_norm=True` for BN after "
        "every convolution.",
    )


vgg11 = _vgg(11)
vgg13 = _vgg(13)
vgg16 = _vgg(16)
vgg19 = _vgg(19)
