"""The ConvNet-AIG gate: a light-weight execute/skip decision per image and residual block.

Veit, "Learning Conditional Models for Visual Perception" (2018), ch. 5 (= Veit & Belongie,
"Convolutional Networks with Adaptive Inference Graphs", ECCV 2018), Sec. 5.3.2, Fig. 5.2:

    z_c  = mean over H, W of the block input x_{l-1}                 (Eq. 5.4)
    beta = W2 relu(W1 z), W1: C -> d = 16, W2: d -> 2                (Eq. 5.5)
    hard = argmax(beta + G),  G = -log(-log U), U ~ Unif(0, 1)       (Eq. 5.6)
    soft = softmax((beta + G) / tau)                                 (Eq. 5.7)

Training uses the straight-through estimator: the forward pass takes the hard sample, the
backward pass the gradient of the soft one (Sec. 5.3.3).

Choices the text leaves open, settled by the authors' released code (andreasveit/convnet-aig):
- both fully connected layers have biases and a BatchNorm follows the first one;
- the last layer's weights start at N(0, 0.001) and its biases at (skip 0.1, execute 2), so a
  gate opens with probability e^2 / (e^2 + e^0.1) = 0.87 at the start: the thesis' "gates are
  initialized to open at a rate of 85%" (Sec. 5.4.2);
- logit index 1 means "execute", index 0 "skip".
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from garden.errors import ConfigError
from garden.methods.aig.conditional import bn_affine
from garden.nn.layers import BNAct, dense_initializer

__all__ = ["Gate", "gumbel_straight_through", "EXECUTE", "SKIP", "INIT_BIAS"]

SKIP, EXECUTE = 0, 1
# Released code: last FC bias = [0.1, 2] (skip, execute) -> P(execute) = 0.870 at init.
INIT_BIAS = (0.1, 2.0)
INIT_KERNEL_STD = 0.001


def gumbel_straight_through(logits, temperature, seed):
    """Hard Gumbel-max sample of the execute decision with the soft sample's gradient.

    logits [B, 2] -> z [B] in {0, 1} (forward), d z / d logits = d soft[:, EXECUTE] / d logits.
    `seed`: a `keras.random.SeedGenerator` (or an int) for the Gumbel noise.
    """
    logits = ops.cast(logits, "float32")
    # U in (0, 1): keep away from 0 and 1 so both logs are finite.
    uniform = keras.random.uniform(ops.shape(logits), minval=1e-6, maxval=1.0 - 1e-6, seed=seed)
    noisy = logits - ops.log(-ops.log(uniform))
    soft = ops.softmax(noisy / temperature, axis=-1)[:, EXECUTE]
    hard = ops.cast(noisy[:, EXECUTE] > noisy[:, SKIP], "float32")
    return ops.stop_gradient(hard - soft) + soft


@keras.saving.register_keras_serializable(package="garden")
class Gate(keras.layers.Layer):
    """GAP -> Dense(hidden) -> BN -> ReLU -> Dense(2): the execute/skip logits of one block.

    Args:
        hidden: width of the hidden layer (the thesis' d = 16 for CIFAR and ImageNet).
        batch_norm: BatchNorm after the first layer (released code; the text has none).
        init_bias: (skip, execute) biases of the last layer at initialisation.

    `call(x)` returns the logits [B, 2] (float32); `Gate.decide(logits)` the deterministic
    decision, `gumbel_straight_through` the sampled one.
    """

    def __init__(self, hidden=16, batch_norm=True, init_bias=INIT_BIAS, **kwargs):
        super().__init__(**kwargs)
        self.hidden = int(hidden)
        if self.hidden < 1:
            raise ConfigError(f"gate hidden width must be >= 1, got {hidden}")
        self.batch_norm = bool(batch_norm)
        self.init_bias = tuple(float(b) for b in init_bias)
        if len(self.init_bias) != 2:
            raise ConfigError(f"gate init_bias must be (skip, execute), got {list(init_bias)}")
        policy = self.dtype_policy
        self.pool = keras.layers.GlobalAveragePooling2D(dtype=policy, name="pool")
        self.fc1 = keras.layers.Dense(self.hidden, kernel_initializer=dense_initializer(),
                                      dtype=policy, name="fc1")
        self.norm = BNAct("relu", dtype=policy, name="bn") if self.batch_norm else None
        self.fc2 = keras.layers.Dense(
            2,
            kernel_initializer=keras.initializers.RandomNormal(stddev=INIT_KERNEL_STD),
            bias_initializer=keras.initializers.Constant(list(self.init_bias)),
            dtype=policy,
            name="fc2",
        )

    def build(self, input_shape):
        channels = input_shape[-1]
        self.fc1.build((None, channels))
        if self.norm is not None:
            self.norm.build((None, self.hidden))
        self.fc2.build((None, self.hidden))

    def call(self, inputs, training=False):
        h = self.fc1(self.pool(inputs))
        h = self.norm(h, training=training) if self.norm is not None else ops.relu(h)
        return ops.cast(self.fc2(h), "float32")

    @staticmethod
    def decide(logits):
        """The deterministic decision: execute where beta_execute > beta_skip (float 0/1, [B])."""
        return ops.cast(logits[:, EXECUTE] > logits[:, SKIP], "float32")

    def fold(self, dtype):
        """The deterministic decision's weights at inference, (kernel, bias, w, threshold): BN
        folded into the first layer and the two logits reduced to their difference, so that the
        block runs where `relu(pooled @ kernel + bias) @ w > threshold`."""
        kernel = tf.cast(self.fc1.kernel, tf.float32)
        bias = tf.cast(self.fc1.bias, tf.float32)
        if self.norm is not None:
            scale, offset = bn_affine(self.norm, tf.float32)
            kernel, bias = kernel * scale, bias * scale + offset
        w2 = tf.cast(self.fc2.kernel, tf.float32)
        b2 = tf.cast(self.fc2.bias, tf.float32)
        # bias as a [1, d] row (see fast_decision) and w as a [d, 1] column: the margin is one
        # matmul, [B, 1].
        folded = (kernel, bias[None, :], w2[:, EXECUTE:EXECUTE + 1] - w2[:, SKIP:SKIP + 1], b2[SKIP] - b2[EXECUTE])
        return tuple(tf.cast(t, dtype) for t in folded)

    def fast_decision(self, inputs, folded=None):
        """`decide(call(x))` at inference in fewer ops (bool [B]), from `fold(x.dtype)` (folded
        here when None). At batch 1 on a CPU the network's cost is mostly per-op overhead, so
        the gate's op count decides whether skipping pays off."""
        kernel, bias, w, threshold = self.fold(inputs.dtype) if folded is None else folded
        pooled = tf.reduce_mean(inputs, axis=[1, 2])
        # The bias is a [1, d] row on purpose: TensorFlow's remapper turns an add of a 1-D bias
        # into BiasAdd and fuses MatMul, BiasAdd and Relu into one oneDNN MatMul, which at one
        # image costs about twice as much as the three ops apart (benchmarks/aig_gate_forms.py:
        # 3.3 against 7.7 us per gate, one thread). onnxruntime fuses them into one Gemm anyway.
        hidden = tf.nn.relu(bias + tf.matmul(pooled, kernel))
        # [B, 1] -> [B]: a reshape, not matvec's squeeze, so that at batch 1 the decision is
        # one element end to end (the ONNX If reads it without a reshape, onnx_conditions.py).
        return tf.reshape(tf.matmul(hidden, w) > threshold, [-1])

    @staticmethod
    def execute_probability(logits):
        return ops.softmax(logits, axis=-1)[:, EXECUTE]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2)

    def get_config(self):
        config = super().get_config()
        config.update(hidden=self.hidden, batch_norm=self.batch_norm, init_bias=list(self.init_bias))
        return config
