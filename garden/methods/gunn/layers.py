"""The channel-wise gradual update layer of GUNN (Qiao et al., ICML 2018; thesis ch. 4) and SUNN.

A layer of N channels is cut into P contiguous segments of o = N / P channels, in channel order
(spec A8.10, official code `GunnLayer.lua` uses `narrow`). Segment i is updated by its own
update unit, which reads the *current* state of all N channels:

    GUNN (thesis Eq. 4.4, 4.5):   z_i = concat(out_1..out_{i-1}, x_i..x_P)
                                  out_i = x_i + G_i(z_i) [+ Proj_i(z_i) on CIFAR]
    SUNN (Sec. 4.6, Table 4-IV):  out_i = x_i + G_i(x) [+ Proj_i(x)]   (all read the same x)

G_i is the bottleneck of Fig. 4-4: 1x1 conv N -> K*o, BN, ReLU, 3x3 conv, BN, ReLU, 1x1 conv
K*o -> o, BN (no ReLU). M > 1 stacks M bottlenecks (GUNN-24, M = 2). Proj_i (1x1 conv N -> o
+ BN) is the CIFAR projection shortcut of the official code that the thesis' parameter counts
require (spec A2.4, A2.7). The "no-residual" ablation (GUNN-15-NoRes, Table 4-IV) drops the
identity x_i and keeps the projection, the reading that keeps 1.6M parameters (spec A8.7).

Backprop (`backprop`):
- "autodiff": plain TensorFlow autodiff through the unrolled loop. It keeps every step's
  N-channel concatenation z_i alive for the backward pass: P * N * H * W floats per layer.
- "recompute": the thesis' Algorithm 2 (Sec. 4.3, Eq. 4.6) as a `tf.custom_gradient`. The
  forward keeps only x and y; the backward walks i = P..1, rebuilds z_i from y's first i
  segments and x's others, re-runs unit i (one extra forward per unit) and accumulates
  dL/dz_i into a single N-channel gradient. Moving BN statistics are updated by the forward
  only: the recomputation runs its BNs with `update_stats=False` (`tf.recompute_grad` would
  update them twice, spec A8).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from garden.errors import ConfigError, unknown_choice
from garden.nn.layers import CompositeLayer, Conv

MODES = ("gunn", "sunn")
BACKPROPS = ("recompute", "autodiff")

# BN as the official Torch code (cudnn.SpatialBatchNormalization): momentum 0.1 in Torch's
# convention = 0.9 in Keras', epsilon 1e-5.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


@keras.saving.register_keras_serializable(package="garden.gunn")
class UpdateBatchNorm(keras.layers.BatchNormalization):
    """BatchNormalization whose training-mode call can leave the moving statistics alone.

    `update_stats=False` normalises with the batch statistics exactly as the training call
    does, without assigning the moving mean and variance: what the recomputation of
    Algorithm 2 needs so that one training step updates them once.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("momentum", BN_MOMENTUM)
        kwargs.setdefault("epsilon", BN_EPSILON)
        super().__init__(**kwargs)

    def call(self, inputs, training=None, mask=None, update_stats=True):
        if update_stats or not (training and self.trainable):
            return super().call(inputs, training=training, mask=mask)
        x = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        mean, variance = self._moments(x, mask)
        outputs = ops.batch_normalization(
            x, mean, variance, axis=self.axis, offset=ops.cast(self.beta, x.dtype),
            scale=ops.cast(self.gamma, x.dtype), epsilon=self.epsilon)
        return ops.cast(outputs, self.compute_dtype)


@keras.saving.register_keras_serializable(package="garden.gunn")
class UpdateUnit(keras.layers.Layer):
    """G_i (+ Proj_i) of one segment: N channels in, o = `out_channels` out (Fig. 4-4).

    Args:
        out_channels: o, the segment width.
        expansion: K, the bottleneck width is K * o.
        num_bottlenecks: M, bottlenecks stacked one after the other. Choice (the thesis says
            only "stacking up M update units also generates a new one"; the parameter counts
            fix the shapes, spec A2.4): bottleneck m > 1 maps o -> K*o -> K*o -> o and a ReLU
            separates consecutive bottlenecks, since without it the last 1x1 conv of one and
            the first 1x1 conv of the next would compose to a single linear map.
        projection: add the 1x1 conv + BN projection of the unit's input (CIFAR, spec A2.4).
    """

    def __init__(self, out_channels, expansion=2, num_bottlenecks=1, projection=True, **kwargs):
        super().__init__(**kwargs)
        self.out_channels = int(out_channels)
        self.expansion = int(expansion)
        self.num_bottlenecks = int(num_bottlenecks)
        self.projection = bool(projection)
        if min(self.out_channels, self.expansion, self.num_bottlenecks) < 1:
            raise ConfigError(f"out_channels, expansion and num_bottlenecks must be >= 1, got "
                             f"{self.out_channels}, {self.expansion}, {self.num_bottlenecks}")
        policy = self.dtype_policy
        hidden = self.expansion * self.out_channels
        self.convs, self.norms = [], []
        for m in range(self.num_bottlenecks):
            for j, (width, size) in enumerate(((hidden, 1), (hidden, 3), (self.out_channels, 1))):
                self.convs.append(Conv(width, size, dtype=policy, name=f"b{m}_conv{j}"))
                self.norms.append(UpdateBatchNorm(dtype=policy, name=f"b{m}_bn{j}"))
        if self.projection:
            self.proj_conv = Conv(self.out_channels, 1, dtype=policy, name="proj_conv")
            self.proj_norm = UpdateBatchNorm(dtype=policy, name="proj_bn")

    def build(self, input_shape):
        shape = tuple(input_shape)
        for conv, norm in zip(self.convs, self.norms):
            conv.build(shape)
            shape = shape[:-1] + (conv.filters,)
            norm.build(shape)
        if self.projection:
            self.proj_conv.build(tuple(input_shape))
            self.proj_norm.build(tuple(input_shape)[:-1] + (self.out_channels,))

    def call(self, inputs, training=False, update_stats=True):
        x = inputs
        for k, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x = norm(conv(x), training=training, update_stats=update_stats)
            last_of_all = k == len(self.convs) - 1
            if not last_of_all:  # every conv but the unit's very last is followed by ReLU
                x = ops.relu(x)
        if self.projection:
            x = x + self.proj_norm(self.proj_conv(inputs), training=training, update_stats=update_stats)
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.out_channels,)

    def get_config(self):
        config = super().get_config()
        config.update(out_channels=self.out_channels, expansion=self.expansion,
                      num_bottlenecks=self.num_bottlenecks, projection=self.projection)
        return config


@keras.saving.register_keras_serializable(package="garden.gunn")
class GradualUpdate(CompositeLayer):
    """One GUNN (or SUNN) layer {N, P, K, M}: N channels in and out (thesis Sec. 4.5).

    Args:
        channels: N.
        segments: P; must divide N.
        expansion: K.
        num_bottlenecks: M.
        projection: the per-segment 1x1 projection shortcut (CIFAR networks).
        mode: "gunn" (sequential, Eq. 4.4) or "sunn" (simultaneous, the same weights).
        residual: add the identity x_i to each update (Eq. 4.5); False is the NoRes ablation.
        backprop: "recompute" (Algorithm 2) or "autodiff"; only GUNN training uses it.
    """

    def __init__(self, channels, segments, expansion=2, num_bottlenecks=1, projection=True,
                 mode="gunn", residual=True, backprop="recompute", **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.segments = int(segments)
        if self.segments < 1 or self.channels % self.segments:
            raise ConfigError(f"segments ({segments}) must be >= 1 and divide channels ({channels})")
        if mode not in MODES:
            raise ConfigError(unknown_choice("mode", mode, MODES))
        if backprop not in BACKPROPS:
            raise ConfigError(unknown_choice("backprop", backprop, BACKPROPS))
        self.expansion = int(expansion)
        self.num_bottlenecks = int(num_bottlenecks)
        self.projection = bool(projection)
        self.mode = mode
        self.residual = bool(residual)
        self.backprop = backprop
        self.width = self.channels // self.segments
        self.units = [
            UpdateUnit(self.width, self.expansion, self.num_bottlenecks, self.projection,
                       dtype=self.dtype_policy, name=f"unit{i}")
            for i in range(self.segments)
        ]

    def build(self, input_shape):
        if input_shape[-1] != self.channels:
            raise ConfigError(f"{self.name}: expects {self.channels} input channels, got {input_shape[-1]}")
        for unit in self.units:
            unit.build(tuple(input_shape))

    # -- forward -------------------------------------------------------------------------------

    def _segment(self, x, i):
        return x[..., i * self.width:(i + 1) * self.width]

    def _update(self, segment, delta):
        return segment + delta if self.residual else delta

    def _forward(self, x, training, update_stats=True):
        """The unrolled forward pass: a Python loop over the P segments at trace time."""
        if self.mode == "sunn":
            outs = [self._update(self._segment(x, i), unit(x, training=training, update_stats=update_stats))
                    for i, unit in enumerate(self.units)]
            return ops.concatenate(outs, axis=-1)
        outs = []
        for i, unit in enumerate(self.units):
            z = ops.concatenate(outs + [x[..., i * self.width:]], axis=-1) if outs else x
            outs.append(self._update(self._segment(x, i), unit(z, training=training, update_stats=update_stats)))
        return ops.concatenate(outs, axis=-1)

    def call(self, inputs, training=False):
        if training and self.mode == "gunn" and self.backprop == "recompute":
            return self._recompute_forward(inputs)
        return self._forward(inputs, training)

    # -- Algorithm 2 ---------------------------------------------------------------------------

    def _recompute_forward(self, inputs):
        @tf.custom_gradient
        def gradual(x):
            y = self._forward(x, training=True)

            def backward(dy, variables=None):
                # `variables`: the tf.Variables the forward read (the units' trainable weights).
                trainable = [v for v in (variables or []) if v.trainable]
                grads = [None] * len(trainable)
                # Eq. 4.6: one accumulator for dL/d(state); walk the updates backwards.
                acc = dy
                for i in reversed(range(self.segments)):
                    lo, hi = i * self.width, (i + 1) * self.width
                    # Without the dependency on acc, the graph executor is free to run all P
                    # recomputations at once, and the memory saving is gone (spec A8, pitfall a).
                    with tf.control_dependencies([acc]):
                        z = tf.concat([y[..., :lo], x[..., lo:]], axis=-1)
                    with tf.GradientTape() as tape:
                        tape.watch(z)
                        delta = self.units[i](z, training=True, update_stats=False)
                    upstream = acc[..., lo:hi]
                    # Unit i's weights get gradients; the other units' are unconnected (None).
                    dz, *dw = tape.gradient(delta, [z] + trainable, output_gradients=upstream)
                    grads = [g if g is not None else old for g, old in zip(dw, grads)]
                    if not self.residual:  # out_i = G_i(z_i): no identity path from y_i to x_i
                        acc = tf.concat([acc[..., :lo], tf.zeros_like(upstream), acc[..., hi:]], axis=-1)
                    acc = acc + dz
                by_ref = {v.ref(): g for v, g in zip(trainable, grads)}
                return acc, [by_ref.get(v.ref()) for v in (variables or [])]

            return y, backward

        return gradual(inputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, segments=self.segments, expansion=self.expansion,
                      num_bottlenecks=self.num_bottlenecks, projection=self.projection, mode=self.mode,
                      residual=self.residual, backprop=self.backprop)
        return config
