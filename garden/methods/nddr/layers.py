"""The fusion layers of NDDR-CNN: the NDDR layer and its special case, the cross-stitch unit.

NDDR layer (Gao et al., CVPR 2019, Sec. 3.1, Eqs. 1-3; spec seeds_000_001.md B.2.1): the K
tasks' feature maps of one stage, each [B, H, W, C], are concatenated to [B, H, W, KC]; per task
a 1x1 convolution (no bias) maps them back to C channels, followed by batch normalisation and
ReLU. The output replaces that task's features.

Where the batch normalisation sits: the paper's text puts it on the NDDR *input* ("imposing
batch normalization on the input features"); the official code (nets/nddr_layer.py inside
vgg_arg_scope(use_batch_norm=True)) puts it *after* the 1x1 convolution, followed by ReLU.
We follow the code, because the published numbers come from it, and because BN after the
projection keeps each task's output distribution what the next stage of that task expects
(the input features are already post-BN-ReLU outputs of the previous stage, so a second BN
there would mostly re-normalise what is normalised).

Diagonal initialisation (Eq. 3): the block of W^i that reads task i's own features is alpha * I,
the blocks reading the other tasks' are beta * I; (alpha, beta) = (0.9, 0.1) by default, and
(1, 0) makes the layer the identity on the own-task features. For K > 2 tasks the paper gives
nothing (spec B.8.9); we give each of the K - 1 other blocks beta / (K - 1), so a convex
(alpha, beta) stays a convex combination of the tasks' features and K = 2 is exactly Eq. 3.
"Xavier" (Glorot-uniform over the whole KC x C kernel) is the paper's ablation (Table 1).

So that (alpha, beta) = (1, 0) reproduces the single-task networks at inference (to float32
rounding), the
BN's moving variance starts at 1 - epsilon (not 1): at initialisation the inference-mode BN is
then exactly the identity, x / sqrt(1 - eps + eps) = x. This changes nothing once the moving
statistics are updated in training.

Cross-stitch unit (Misra et al., CVPR 2016, Eq. 1): out_i = sum_j a_ij x_j with one trainable
scalar per task pair, a_ii = alpha, a_ij = beta (0.9, 0.1 as in [31]). It is the NDDR layer with
W's blocks tied to a_ij * I and no BN/ReLU (spec B.1).
"""

from __future__ import annotations

import keras
import numpy as np

from garden.nn.layers import BN_EPSILON, BN_MOMENTUM

INITS = ("diagonal", "xavier")


def fusion_blocks(task_index: int, num_tasks: int, alpha: float, beta: float) -> np.ndarray:
    """The K weights of task `task_index`'s blocks: alpha on its own, beta / (K - 1) elsewhere."""
    weights = np.full(num_tasks, beta / max(num_tasks - 1, 1), np.float64)
    weights[task_index] = alpha
    return weights


@keras.saving.register_keras_serializable(package="garden")
class DiagonalFusionInitializer(keras.initializers.Initializer):
    """Kernel [1, 1, K*C, C] = concat_k(w_k * I_C) along the input axis (NDDR Eq. 3)."""

    def __init__(self, task_index: int, num_tasks: int, alpha: float = 0.9, beta: float = 0.1):
        self.task_index, self.num_tasks = int(task_index), int(num_tasks)
        self.alpha, self.beta = float(alpha), float(beta)

    def __call__(self, shape, dtype=None):
        kh, kw, inputs, channels = shape
        if (kh, kw) != (1, 1) or inputs != self.num_tasks * channels:
            raise ValueError(f"a diagonal NDDR kernel is [1, 1, K*C, C] with K={self.num_tasks}, got {shape}")
        blocks = fusion_blocks(self.task_index, self.num_tasks, self.alpha, self.beta)
        kernel = np.concatenate([w * np.eye(channels) for w in blocks], axis=0)
        return keras.ops.convert_to_tensor(kernel.reshape(shape), dtype=dtype or "float32")

    def get_config(self):
        return {"task_index": self.task_index, "num_tasks": self.num_tasks, "alpha": self.alpha, "beta": self.beta}


@keras.saving.register_keras_serializable(package="garden")
class NDDR(keras.layers.Layer):
    """One NDDR layer for K tasks: a list of K maps [B, H, W, C] -> a list of K maps.

    Args:
        num_tasks: K.
        init: "diagonal" (Eq. 3) or "xavier" (Table 1's "Random").
        alpha, beta: the diagonal initialisation.
        batch_norm: BN after each task's 1x1 convolution (the official code); False gives the
            bare linear map (then ReLU only if `activation`).
        activation: ReLU after BN (the official code), or None.
    """

    def __init__(self, num_tasks: int, init: str = "diagonal", alpha: float = 0.9, beta: float = 0.1,
                 batch_norm: bool = True, activation: str | None = "relu", **kwargs):
        super().__init__(**kwargs)
        if init not in INITS:
            raise ValueError(f"unknown NDDR init {init!r}; valid: {', '.join(INITS)}")
        if activation not in ("relu", None):
            raise ValueError(f"unknown activation {activation!r}; valid: relu, None")
        self.num_tasks = int(num_tasks)
        if self.num_tasks < 2:
            raise ValueError(f"an NDDR layer fuses at least 2 tasks, got {num_tasks}")
        self.init, self.alpha, self.beta = init, float(alpha), float(beta)
        self.batch_norm, self.activation = bool(batch_norm), activation
    def build(self, input_shape):
        shapes = list(input_shape)
        if len(shapes) != self.num_tasks:
            raise ValueError(f"NDDR layer for {self.num_tasks} tasks called on {len(shapes)} inputs")
        channels = {s[-1] for s in shapes}
        if len(channels) != 1:
            raise ValueError(f"NDDR inputs must have the same channels, got {sorted(channels)}")
        c = channels.pop()
        concat = (*shapes[0][:-1], c * self.num_tasks)
        # C is known only here: per task one 1x1 convolution KC -> C (then BN).
        policy = self.dtype_policy
        convs, norms = [], []
        for k in range(self.num_tasks):
            initializer = (DiagonalFusionInitializer(k, self.num_tasks, self.alpha, self.beta)
                           if self.init == "diagonal" else keras.initializers.GlorotUniform())
            conv = keras.layers.Conv2D(c, 1, use_bias=not self.batch_norm, kernel_initializer=initializer,
                                       dtype=policy, name=f"conv{k}")
            conv.build(concat)
            convs.append(conv)
            if self.batch_norm:
                norm = keras.layers.BatchNormalization(
                    momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                    moving_variance_initializer=keras.initializers.Constant(1.0 - BN_EPSILON),
                    dtype=policy, name=f"bn{k}")
                norm.build((*shapes[0][:-1], c))
                norms.append(norm)
        self.convs, self.norms = convs, norms

    def call(self, inputs, training=False):
        x = keras.ops.concatenate(list(inputs), axis=-1)
        outputs = []
        for k, conv in enumerate(self.convs):
            y = conv(x)
            if self.batch_norm:
                y = self.norms[k](y, training=training)
            if self.activation == "relu":
                y = keras.ops.relu(y)
            outputs.append(y)
        return outputs

    def compute_output_shape(self, input_shape):
        return [tuple(s) for s in input_shape]

    def get_config(self):
        config = super().get_config()
        config.update(num_tasks=self.num_tasks, init=self.init, alpha=self.alpha, beta=self.beta,
                      batch_norm=self.batch_norm, activation=self.activation)
        return config


@keras.saving.register_keras_serializable(package="garden")
class CrossStitch(keras.layers.Layer):
    """A cross-stitch unit for K tasks: out_i = sum_j a_ij x_j, a = alpha on the diagonal and
    beta / (K - 1) elsewhere at initialisation (Misra et al. 2016; (0.9, 0.1) as in their paper)."""

    def __init__(self, num_tasks: int, alpha: float = 0.9, beta: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.num_tasks = int(num_tasks)
        if self.num_tasks < 2:
            raise ValueError(f"a cross-stitch unit mixes at least 2 tasks, got {num_tasks}")
        self.alpha, self.beta = float(alpha), float(beta)

    def build(self, input_shape):
        rows = np.stack([fusion_blocks(i, self.num_tasks, self.alpha, self.beta) for i in range(self.num_tasks)])
        self.mixing = self.add_weight(shape=(self.num_tasks, self.num_tasks),
                                      initializer=keras.initializers.Constant(rows.astype(np.float32)),
                                      name="mixing")

    def call(self, inputs, training=False):
        x = keras.ops.stack(list(inputs), axis=0)  # [K, B, H, W, C]
        mixing = keras.ops.cast(self.mixing, x.dtype)
        mixed = keras.ops.tensordot(mixing, x, axes=[[1], [0]])
        return [mixed[i] for i in range(self.num_tasks)]

    def compute_output_shape(self, input_shape):
        return [tuple(s) for s in input_shape]

    def get_config(self):
        config = super().get_config()
        config.update(num_tasks=self.num_tasks, alpha=self.alpha, beta=self.beta)
        return config
