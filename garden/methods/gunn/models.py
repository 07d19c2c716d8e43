"""GUNN / SUNN networks: "one resolution, one representation" (thesis Sec. 4.5, Tables 4-I, 4-II).

Each resolution has a transition (1x1 conv + BN + ReLU that sets the stage's width, then 2x2
average pooling) and one GUNN layer that updates every channel once. The CIFAR networks end
with a 1x1 conv (Table 4-I's "Trans3"), then global average pooling and the classifier.

Registered paper networks and their exact trainable parameter counts (thesis, spec A2.6):

    gunn15 / sunn15 / gunn15_nores   CIFAR   N = 240/300/360, P = 20/25/30, K = 2, M = 1   1,585,746 (C10)
    gunn24 / sunn24                  CIFAR   N = 720/900/1080, P = 20/25/30, K = 3, M = 2  29,534,106 (C10)
    gunn18 / sunn18                  ImageNet N = 400/800/1600/2000, P = 10/20/40/50      28,909,736
    wide_gunn18                      ImageNet N = 1200/1600/2000/2000, P = 30/40/50/50    45,624,936

`gunn` is the same network with every size free, for small runs.

Choices (the thesis is silent or inconsistent; docs/methods/gunn.md lists them all):
- Transition order: Table 4-II's "1x1 conv, then AvgPool" (the issue and spec A2.5 settle on
  it); the official `gunn-18.lua` pools first, which costs 7.75 instead of 9.72 GMACs for the
  same parameters (spec A8.4): `transition_order="pool_conv"` gives that.
- Wide-GUNN-18 has no 1x1 conv before global pooling (its count needs it, spec A2.6); neither
  has GUNN-18 (Table 4-II).
- The projection shortcut exists in the CIFAR networks only (official code; spec A2.4).
"""

from __future__ import annotations

import keras

from garden.errors import ConfigError, unknown_choice
from garden.methods.gunn.layers import BACKPROPS, MODES, GradualUpdate
from garden.nn.layers import Backbone, ConvBN, register_variant
from garden.registry import register_model

STEMS = ("cifar", "imagenet")
TRANSITION_ORDERS = ("conv_pool", "pool_conv")


@register_model("gunn")
@keras.saving.register_keras_serializable(package="garden.gunn")
class GUNNNet(Backbone):
    """A GUNN (or SUNN) classification network.

    Args:
        num_classes: classifier width (0: pooled features; see `Backbone`).
        stem: "cifar" (3x3 conv, stride 1) or "imagenet" (7x7/2 conv + 3x3/2 max pool), each
            followed by a 1x1 conv to `widths[0]` channels (Tables 4-I, 4-II, "Conv1").
        stem_width: channels of the first conv (64 in the thesis).
        widths: N of each GUNN layer; the transition before stage s > 0 maps to widths[s].
        segments: P of each GUNN layer (must divide the width).
        expansion: K. num_bottlenecks: M.
        final_width: channels of the 1x1 conv before global pooling; 0 for none.
        projection: per-segment 1x1 projection shortcuts (CIFAR networks).
        mode: "gunn" (sequential updates) or "sunn" (simultaneous: the ablation baseline).
        residual: False gives the NoRes ablation (no identity in the updates).
        backprop: "reconstruct" (the default), "recompute" (Algorithm 2) or "autodiff"; see
            docs/methods/gunn.md.
        transition_order: "conv_pool" (Table 4-II) or "pool_conv" (official code).
    """

    def __init__(self, num_classes=10, stem="cifar", stem_width=64, widths=(240, 300, 360),
                 segments=(20, 25, 30), expansion=2, num_bottlenecks=1, final_width=360,
                 projection=True, mode="gunn", residual=True, backprop="reconstruct",
                 transition_order="conv_pool", include_top=True, head_dropout=0.0, **kwargs):
        super().__init__(num_classes=num_classes, include_top=include_top, head_dropout=head_dropout, **kwargs)
        widths, segments = [int(w) for w in widths], [int(p) for p in segments]
        _check_choice("stem", stem, STEMS)
        _check_choice("mode", mode, MODES)
        _check_choice("backprop", backprop, BACKPROPS)
        _check_choice("transition_order", transition_order, TRANSITION_ORDERS)
        if not widths or len(widths) != len(segments):
            raise ConfigError(f"widths {widths} and segments {segments} must be non-empty lists of one length")
        for n, p in zip(widths, segments):
            if p < 1 or n % p:
                raise ConfigError(f"segments {p} must be >= 1 and divide the width {n} (widths {widths}, "
                                 f"segments {segments})")
        self.stem_type, self.stem_width = stem, int(stem_width)
        self.widths, self.segments = widths, segments
        self.expansion, self.num_bottlenecks = int(expansion), int(num_bottlenecks)
        self.final_width = int(final_width or 0)
        self.projection, self.mode, self.residual = bool(projection), mode, bool(residual)
        self.backprop, self.transition_order = backprop, transition_order

        policy = self.dtype_policy
        if stem == "cifar":
            self.stem_conv = ConvBN(self.stem_width, 3, dtype=policy, name="stem_conv")
            self.stem_pool = None
        else:
            self.stem_conv = ConvBN(self.stem_width, 7, strides=2, dtype=policy, name="stem_conv")
            self.stem_pool = keras.layers.MaxPooling2D(3, 2, padding="same", dtype=policy, name="stem_pool")
        self.stem_proj = ConvBN(widths[0], 1, dtype=policy, name="stem_proj")
        self.transitions, self.layers_ = [], []
        for s, (n, p) in enumerate(zip(widths, segments)):
            if s > 0:
                self.transitions.append((
                    ConvBN(n, 1, dtype=policy, name=f"trans{s}_conv"),
                    keras.layers.AveragePooling2D(2, dtype=policy, name=f"trans{s}_pool"),
                ))
            self.layers_.append(GradualUpdate(
                n, p, expansion=self.expansion, num_bottlenecks=self.num_bottlenecks,
                projection=self.projection, mode=mode, residual=self.residual, backprop=backprop,
                dtype=policy, name=f"{mode}{s + 1}"))
        self.final_conv = ConvBN(self.final_width, 1, dtype=policy, name="final_conv") if self.final_width else None

        first = 4 if stem == "imagenet" else 1
        self._feature_info = [{"key": f"stage{s + 1}", "channels": n, "stride": first * 2 ** s}
                              for s, n in enumerate(widths)]
        if self.final_conv is not None:
            self._feature_info.append({"key": "final", "channels": self.final_width,
                                       "stride": first * 2 ** (len(widths) - 1)})
        self._build_classifier()

    @property
    def gradual_layers(self) -> list[GradualUpdate]:
        """The GUNN (or SUNN) layers, one per resolution."""
        return list(self.layers_)

    def features(self, inputs, training=False):
        x = self.stem_conv(inputs, training=training)
        if self.stem_pool is not None:
            x = self.stem_pool(x)
        x = self.stem_proj(x, training=training)
        feats = {}
        for s, layer in enumerate(self.layers_):
            if s > 0:
                conv, pool = self.transitions[s - 1]
                if self.transition_order == "conv_pool":
                    x = pool(conv(x, training=training))
                else:
                    x = conv(pool(x), training=training)
            x = layer(x, training=training)
            feats[f"stage{s + 1}"] = x
        if self.final_conv is not None:
            feats["final"] = self.final_conv(x, training=training)
        return feats

    def get_config(self):
        config = super().get_config()
        config.update(stem=self.stem_type, stem_width=self.stem_width, widths=list(self.widths),
                      segments=list(self.segments), expansion=self.expansion,
                      num_bottlenecks=self.num_bottlenecks, final_width=self.final_width,
                      projection=self.projection, mode=self.mode, residual=self.residual,
                      backprop=self.backprop, transition_order=self.transition_order)
        return config


def _check_choice(what, value, valid):
    if value not in valid:
        raise ConfigError(unknown_choice(what, value, valid))


# -- the paper's networks ----------------------------------------------------------------------

# Table 4-I and the GUNN-15 configuration table (thesis Sec. 4.5).
GUNN15 = dict(stem="cifar", stem_width=64, widths=(240, 300, 360), segments=(20, 25, 30), expansion=2,
              num_bottlenecks=1, final_width=360, projection=True)
# GUNN-24: GUNN-15 with widths 720/900/1080 and {K = 3, M = 2}; the thesis' "Conv3" for the third
# layer is a misprint for Conv4 (spec A8.3, confirmed by the parameter count).
GUNN24 = dict(stem="cifar", stem_width=64, widths=(720, 900, 1080), segments=(20, 25, 30), expansion=3,
              num_bottlenecks=2, final_width=1080, projection=True)
# Table 4-II and the GUNN-18 configuration table; no projection on ImageNet (official code).
GUNN18 = dict(stem="imagenet", stem_width=64, widths=(400, 800, 1600, 2000), segments=(10, 20, 40, 50),
              expansion=2, num_bottlenecks=1, final_width=0, projection=False)
WIDE_GUNN18 = dict(GUNN18, widths=(1200, 1600, 2000, 2000), segments=(30, 40, 50, 50))

_NETWORKS = {
    "gunn15": (GUNN15, "gunn", True, 10, "GUNN-15 (CIFAR, 1.6M parameters; thesis Table 4-I)."),
    "sunn15": (GUNN15, "sunn", True, 10, "SUNN-15: GUNN-15's weights updated simultaneously (Table 4-IV)."),
    "gunn15_nores": (GUNN15, "gunn", False, 10, "GUNN-15-NoRes: no identity in the updates (Table 4-IV)."),
    "gunn24": (GUNN24, "gunn", True, 10, "GUNN-24 (CIFAR, 29.5M parameters; Sec. 4.5)."),
    "sunn24": (GUNN24, "sunn", True, 10, "SUNN-24 (Table 4-IV)."),
    "gunn18": (GUNN18, "gunn", True, 1000, "GUNN-18 (ImageNet, 28.9M parameters; Table 4-II)."),
    "sunn18": (GUNN18, "sunn", True, 1000, "SUNN-18 (Table 4-V)."),
    "wide_gunn18": (WIDE_GUNN18, "gunn", True, 1000, "Wide GUNN-18 (ImageNet, 45.6M parameters; Sec. 4.5)."),
}

for _name, (_arch, _mode, _residual, _classes, _doc) in _NETWORKS.items():
    register_variant(_name, GUNNNet, fixed=dict(_arch, mode=_mode, residual=_residual),
                     defaults={"num_classes": _classes}, doc=_doc)
