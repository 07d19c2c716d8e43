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
  N-channel state z_i alive for the backward pass: P * N * H * W floats per layer.
- "recompute": the thesis' Algorithm 2 (Sec. 4.3, Eq. 4.6) as a `tf.custom_gradient`. The
  forward keeps only x and y; the backward walks i = P..1, rebuilds z_i from y's first i
  segments and x's others, re-runs unit i (one extra forward per unit) and accumulates
  dL/dz_i into a single N-channel gradient. Moving BN statistics are updated by the forward
  only: the recomputation runs its BNs with `update_stats=False` (`tf.recompute_grad` would
  update them twice, spec A8).
- "reconstruct" (the default): Algorithm 2's reconstruction of z_i without its recomputation.
  Only a unit's first 1x1 conv and its projection read the N-channel z_i; everything else it
  keeps for the backward pass is K*o or o channels wide. The forward keeps those narrow
  activations (one tape per unit) and drops z_i; the backward rebuilds z_i from x and y as
  Algorithm 2 does and runs the two convolutions' gradients on it. Autodiff's FLOPs, about
  SUNN's memory.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from garden.errors import ConfigError, unknown_choice
from garden.nn.layers import CompositeLayer, Conv

MODES = ("gunn", "sunn")
BACKPROPS = ("reconstruct", "recompute", "autodiff")

# BN as the official Torch code (cudnn.SpatialBatchNormalization): momentum 0.1 in Torch's
# convention = 0.9 in Keras', epsilon 1e-5.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


@keras.saving.register_keras_serializable(package="garden.gunn")
class UpdateBatchNorm(keras.layers.BatchNormalization):
    """BatchNormalization over NHWC whose training call is one fused op and may skip the update.

    - Training mode runs TensorFlow's fused kernel (`FusedBatchNormV3`): one op forward and one
      backward instead of Keras 3's ~10 element-wise ops each. GUNN-15 has 4 BNs per update
      unit and 75 units, so the unfused form dominated the step on a CPU.
    - `update_stats=False` normalises with the batch statistics exactly as the training call
      does, without assigning the moving mean and variance: what the recomputation of
      Algorithm 2 needs so that one training step updates them once.
    - Inference is Keras' own call (moving statistics), so exported graphs are unchanged.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("momentum", BN_MOMENTUM)
        kwargs.setdefault("epsilon", BN_EPSILON)
        super().__init__(**kwargs)

    def build(self, input_shape):
        if len(input_shape) != 4 or self.axis not in (-1, 3, [-1], [3]) or not (self.center and self.scale):
            raise ConfigError(f"{self.name}: UpdateBatchNorm normalises the last axis of NHWC inputs with "
                              f"scale and offset; got input shape {tuple(input_shape)}, axis {self.axis}")
        super().build(input_shape)

    def call(self, inputs, training=None, mask=None, update_stats=True):
        if not (training and self.trainable) or mask is not None:
            return super().call(inputs, training=training, mask=mask)
        x = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        empty = tf.zeros([0], x.dtype)  # training mode takes no running statistics
        outputs, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=ops.cast(self.gamma, x.dtype), offset=ops.cast(self.beta, x.dtype), mean=empty,
            variance=empty, epsilon=self.epsilon, exponential_avg_factor=1.0, data_format="NHWC",
            is_training=True)
        if update_stats:
            # The op returns the Bessel-corrected variance; Keras' moving variance (and the
            # unfused path) averages the biased one, which the op normalised with.
            count = ops.cast(ops.size(x) // ops.shape(x)[-1], x.dtype)
            variance = variance * (count - 1.0) / count
            momentum = self.momentum
            self.moving_mean.assign(self.moving_mean * momentum + ops.cast(mean, self.moving_mean.dtype) * (1.0 - momentum))
            self.moving_variance.assign(self.moving_variance * momentum
                                        + ops.cast(variance, self.moving_variance.dtype) * (1.0 - momentum))
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

    def heads(self, inputs):
        """The unit's linear reads of its N-channel input: the first 1x1 conv and the projection's.

        Everything after them sees only K*o (or o) channels; the "reconstruct" backprop keeps
        these narrow activations and rebuilds the wide input instead.
        """
        return [self.convs[0](inputs)] + ([self.proj_conv(inputs)] if self.projection else [])

    def tail(self, heads, training=False, update_stats=True):
        """G_i (+ Proj_i) from the outputs of `heads`."""
        x = heads[0]
        for k, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x = norm(x if k == 0 else conv(x), training=training, update_stats=update_stats)
            last_of_all = k == len(self.convs) - 1
            if not last_of_all:  # every conv but the unit's very last is followed by ReLU
                x = ops.relu(x)
        if self.projection:
            x = x + self.proj_norm(heads[1], training=training, update_stats=update_stats)
        return x

    def call(self, inputs, training=False, update_stats=True):
        return self.tail(self.heads(inputs), training=training, update_stats=update_stats)

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
        backprop: "reconstruct" (rebuild each z_i, keep the units' narrow activations),
            "recompute" (Algorithm 2: also re-run each unit) or "autodiff"; only GUNN training
            uses it. See the module docstring and docs/methods/gunn.md.
    """

    def __init__(self, channels, segments, expansion=2, num_bottlenecks=1, projection=True,
                 mode="gunn", residual=True, backprop="reconstruct", **kwargs):
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

    def _in_segment(self, i):
        """A boolean (N,) mask of segment i's channels; broadcasts against NHWC tensors."""
        channel = tf.range(self.channels)
        return (channel >= i * self.width) & (channel < (i + 1) * self.width)

    def _place(self, delta, i):
        """Segment i's o-channel update as an N-channel tensor, zero elsewhere."""
        lo = i * self.width
        pads = [[0, 0]] * (len(delta.shape) - 1) + [[lo, self.channels - lo - self.width]]
        return ops.pad(delta, pads)

    def _forward(self, x, training, update_stats=True):
        """The unrolled forward pass: a Python loop over the P segments at trace time.

        The GUNN state is one N-channel tensor updated in place of segment i by adding the
        zero-padded update, rather than re-concatenated from P segments for every unit: the
        gradient of a pad is one slice, while the gradient of a P-way concatenation along the
        channels is a P-way split and a P-way sum, which dominated the step (CPU profile of
        GUNN-15: split alone was 19% of the step).
        """
        if self.mode == "sunn":
            update = ops.concatenate([unit(x, training=training, update_stats=update_stats) for unit in self.units],
                                     axis=-1)
            return x + update if self.residual else update
        state = x
        for i, unit in enumerate(self.units):
            state = self._advance(state, unit(state, training=training, update_stats=update_stats), i)
        return state

    def _advance(self, state, delta, i):
        """z_{i+1} from z_i and unit i's output."""
        placed = self._place(delta, i)
        # Residual: out_i = x_i + G_i(z_i), and segment i of the state still holds x_i.
        # NoRes: out_i = G_i(z_i) replaces the segment (a select keeps it exact).
        return state + placed if self.residual else tf.where(self._in_segment(i), placed, state)

    def call(self, inputs, training=False):
        if training and self.mode == "gunn" and self.backprop == "recompute":
            return self._recompute_forward(inputs)
        if training and self.mode == "gunn" and self.backprop == "reconstruct":
            return self._reconstruct_forward(inputs)
        return self._forward(inputs, training)

    def _input_of(self, i, x, y):
        """z_i = concat(y_1..y_{i-1}, x_i..x_P), rebuilt exactly from the layer's input and output
        (Eq. 4.6's observation: the first i-1 segments are final once unit i runs)."""
        return tf.where(tf.range(self.channels) < i * self.width, y, x)

    @staticmethod
    def _merge(grads, new):
        """Accumulate per-variable gradients where each source gives None for unconnected ones."""
        return [old if g is None else (g if old is None else old + g) for old, g in zip(grads, new)]

    def _backward_step(self, i, acc, dz):
        """dL/d(z_i) from dL/d(z_{i+1}) = acc and the gradient dz through unit i's input."""
        if not self.residual:  # out_i = G_i(z_i): no identity path from y_i to x_i
            acc = tf.where(self._in_segment(i), tf.zeros([], acc.dtype), acc)
        return acc + dz

    # -- Reconstruct: Algorithm 2's rebuilt inputs without running any unit twice -------------

    def _reconstruct_forward(self, inputs):
        """Keep each unit's narrow activations, drop its N-channel input z_i.

        Autodiff keeps all P inputs z_i (N channels each) because the unit's first 1x1 conv and
        its projection need them for their weight gradients. Everything else a unit keeps is
        K*o or o channels wide. Here the forward records each unit's tail on its own tape and
        lets z_i go; the backward rebuilds z_i with one select (`_input_of`) and runs only the
        two convolutions' gradients on it. Same FLOPs as autodiff, SUNN-like memory.
        """

        @tf.custom_gradient
        def gradual(x):
            state, taped = x, []
            for i, unit in enumerate(self.units):
                heads = unit.heads(state)
                with tf.GradientTape() as tape:
                    tape.watch(heads)
                    delta = unit.tail(heads, training=True)
                taped.append((tape, heads, delta))
                state = self._advance(state, delta, i)
            y = state

            def unit_gradients(i, z, upstream, trainable):
                tape, heads, delta = taped[i]
                dheads_and_w = tape.gradient(delta, list(heads) + trainable, output_gradients=upstream)
                dheads, dw_tail = dheads_and_w[:len(heads)], dheads_and_w[len(heads):]
                with tf.GradientTape() as head_tape:
                    head_tape.watch(z)
                    # In a graph the forward convolutions here are pruned: the gradients of a
                    # convolution read only its input and its filter.
                    again = self.units[i].heads(z)
                dz, *dw_head = head_tape.gradient(again, [z] + trainable, output_gradients=dheads)
                return dz, self._merge(dw_tail, dw_head)

            def backward(dy, variables=None):
                return self._walk_backward(x, y, dy, variables, unit_gradients)

            return y, backward

        return gradual(inputs)

    # -- Algorithm 2: rebuild z_i and re-run unit i ---------------------------------------------

    def _recompute_forward(self, inputs):
        @tf.custom_gradient
        def gradual(x):
            y = self._forward(x, training=True)

            def unit_gradients(i, z, upstream, trainable):
                with tf.GradientTape() as tape:
                    tape.watch(z)
                    delta = self.units[i](z, training=True, update_stats=False)
                # Unit i's weights get gradients; the other units' are unconnected (None).
                dz, *dw = tape.gradient(delta, [z] + trainable, output_gradients=upstream)
                return dz, dw

            def backward(dy, variables=None):
                return self._walk_backward(x, y, dy, variables, unit_gradients)

            return y, backward

        return gradual(inputs)

    def _walk_backward(self, x, y, dy, variables, unit_gradients):
        """Eq. 4.6: one accumulator for dL/d(state), the updates walked from last to first.

        `unit_gradients(i, z_i, dL/d(out_i), trainable)` gives unit i's input gradient and its
        weight gradients (None for weights it does not read). `variables` are the tf.Variables
        the forward read, as `tf.custom_gradient` passes them.
        """
        trainable = [v for v in (variables or []) if v.trainable]
        grads = [None] * len(trainable)
        acc = dy
        for i in reversed(range(self.segments)):
            upstream = acc[..., i * self.width:(i + 1) * self.width]
            # Without the dependency on acc, the graph executor is free to build all P inputs
            # (and run all P recomputations) at once, and the memory saving is gone (spec A8,
            # pitfall a).
            with tf.control_dependencies([acc]):
                z = self._input_of(i, x, y)
            dz, dw = unit_gradients(i, z, upstream, trainable)
            grads = self._merge(grads, dw)
            acc = self._backward_step(i, acc, dz)
        by_ref = {v.ref(): g for v, g in zip(trainable, grads)}
        return acc, [by_ref.get(v.ref()) for v in (variables or [])]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, segments=self.segments, expansion=self.expansion,
                      num_bottlenecks=self.num_bottlenecks, projection=self.projection, mode=self.mode,
                      residual=self.residual, backprop=self.backprop)
        return config
