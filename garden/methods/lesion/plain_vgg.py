"""The plain (skip-free) VGG-style baseline of the lesion study (Veit thesis, ch. 4, Sec. 4.3).

Thesis: "we train a VGG network with 15 layers, setting the number of channels to 128 for all
layers to allow the removal of any layer" (caption of Fig. 4.3). Nothing else is given, so the
layout is our choice (docs/methods/lesion.md):

- 15 conv3x3 -> BN -> ReLU layers in 3 stages of 5, all `width` (128) channels wide, with a
  2x2 max pool between stages: the same three resolutions as the CIFAR ResNet-110 it is
  compared with (32 -> 16 -> 8; 28 -> 14 -> 7 on Fashion-MNIST).
- Global average pooling and a linear classifier (not one of the 15 layers: it maps to the
  classes, so it cannot be deleted either way).
- BN after every conv, as the ResNets have: without it a 15-layer plain net barely trains.

The layers expose the same lesion hooks as the garden's ResNets (`blocks`, `stages`,
`forward_features(x, block_fn=...)`, per-layer `skip`), so one set of lesion tools works on
both. Deleting a layer replaces it by the identity, which needs equal input and output widths:
every layer but the first (input channels -> width) is deletable.
"""

from __future__ import annotations

import keras

from garden.errors import GardenError
from garden.nn.layers import Backbone, ConvBN
from garden.registry import register_model

__all__ = ["PlainConvLayer", "PlainVGG", "plain_vgg15"]


@keras.saving.register_keras_serializable(package="garden")
class PlainConvLayer(ConvBN):
    """conv3x3 -> BN -> ReLU with the lesion hook `skip` (the identity: the layer deleted)."""

    #: The lesion tools treat shape-changing blocks specially; a plain layer never strides.
    is_downsampling = False

    def build(self, input_shape):
        super().build(input_shape)
        self.in_channels = int(input_shape[-1])

    @property
    def deletable(self) -> bool:
        """Identity needs equal widths: False for the first layer (image channels -> width)."""
        return getattr(self, "in_channels", None) == self.conv.filters

    def skip(self, inputs, training=False):
        """The layer deleted: y = x (Sec. 4.3). Raises for a layer that changes the width."""
        if inputs.shape[-1] != self.conv.filters:
            raise GardenError(
                f"cannot delete layer {self.name!r}: it maps {inputs.shape[-1]} to "
                f"{self.conv.filters} channels; only width-preserving layers can be deleted"
            )
        return inputs


@keras.saving.register_keras_serializable(package="garden")
class PlainVGG(Backbone):
    """A VGG-style network of equal-width conv3x3-BN-ReLU layers without skip connections.

    Args:
        layers_per_stage: conv layers in each stage (default (5, 5, 5): 15 layers).
        width: channels of every layer (128 in the thesis; smaller for CPU runs).
        num_classes, include_top, head_dropout: see `Backbone`.

    `features(x)` keys are "C0", "C1", "C2" (strides 1, 2, 4), as the CIFAR ResNets'.
    """

    def __init__(
        self,
        layers_per_stage=(5, 5, 5),
        width=128,
        num_classes=10,
        include_top=True,
        head_dropout=0.0,
        **kwargs,
    ):
        super().__init__(
            num_classes=num_classes, include_top=include_top, head_dropout=head_dropout, **kwargs
        )
        self.layers_per_stage = [int(n) for n in layers_per_stage]
        if not self.layers_per_stage or min(self.layers_per_stage) < 1:
            raise GardenError(
                f"layers_per_stage must be a non-empty list of counts >= 1, got {layers_per_stage}"
            )
        self.width = int(width)
        if self.width < 1:
            raise GardenError(f"width must be >= 1, got {width}")
        policy = self.dtype_policy
        self.blocks = []
        self.pools = []
        self._stage_ends = []
        stride = 1
        for stage, n in enumerate(self.layers_per_stage):
            if stage:
                # "same" padding: ceil(size / 2), so odd sizes keep the Backbone stride contract.
                self.pools.append(
                    keras.layers.MaxPooling2D(
                        2, padding="same", dtype=policy, name=f"pool{stage}"
                    )
                )
                stride *= 2
            for index in range(n):
                self.blocks.append(
                    PlainConvLayer(
                        self.width, 3, dtype=policy, name=f"stage{stage + 1}_conv{index + 1}"
                    )
                )
            self._stage_ends.append(len(self.blocks))
            self._feature_info.append({"key": f"C{stage}", "channels": self.width, "stride": stride})
        self._build_classifier()

    @property
    def stages(self):
        """The layers grouped by stage (lists of `PlainConvLayer`)."""
        starts = [0] + self._stage_ends[:-1]
        return [self.blocks[a:b] for a, b in zip(starts, self._stage_ends)]

    def features(self, inputs, training=False, block_fn=None):
        """Ordered dict of each stage's output; `block_fn` as in `forward_features`."""
        out = {}
        x = inputs
        start = 0
        for stage, (end, info) in enumerate(zip(self._stage_ends, self._feature_info)):
            if stage:
                x = self.pools[stage - 1](x)
            for index in range(start, end):
                block = self.blocks[index]
                x = block(x, training=training) if block_fn is None else block_fn(
                    index, block, x, training
                )
            out[info["key"]] = x
            start = end
        return out

    def forward_features(self, inputs, training=False, block_fn=None):
        """The final feature map; `block_fn(index, layer, x, training) -> x` replaces each
        layer's call (e.g. `layer.skip(x)` deletes it), as `ResNet.forward_features`."""
        return self.features(inputs, training=training, block_fn=block_fn)[
            self._feature_info[-1]["key"]
        ]

    def get_config(self):
        config = super().get_config()
        config.update(layers_per_stage=list(self.layers_per_stage), width=self.width)
        return config


@register_model("plain_vgg15")
def plain_vgg15(*, width=128, num_classes=10, include_top=True, head_dropout=0.0, **kwargs):
    """The thesis' 15-layer plain VGG (ch. 4): 3 stages of 5 conv3x3-BN-ReLU layers, all
    `width` (128) channels, 2x2 max pools between stages, global pooling, linear classifier."""
    return PlainVGG(
        layers_per_stage=(5, 5, 5),
        width=width,
        num_classes=num_classes,
        include_top=include_top,
        head_dropout=head_dropout,
        **kwargs,
    )
