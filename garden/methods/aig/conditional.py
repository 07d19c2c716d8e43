"""Inference-time conditional execution of a gated residual block: skipped images cost nothing.

In training the thesis computes F for the whole batch and multiplies it by z (Sec. 5.3.2); the
savings come only at inference, where a block whose gate is off must not run its branch.

Per block and batch, with TF ops only (no Python loop over images):

    no gate on     -> the shortcut alone: F is not run (no arithmetic, no op launches)
    some gates on  -> F on the executed rows only: gather_nd, F, tensor_scatter_nd_add
    all gates on   -> the same, but F's output is added to the shortcut (no scatter)
    batch of one   -> (static batch size 1) one cond on the scalar decision: F or the shortcut

The decisions are `tf.cond`s: (Stateless)If ops in the SavedModel and ONNX `If` nodes in the
ONNX graph, so both artifacts skip blocks.

Inside the conditional branches F is evaluated functionally (`tf.nn.conv2d`, BatchNorm folded
into the convolution or applied as a per-channel affine map) from a *folded branch*
(`fold_branch`): the block's weights with BN folded in, computed outside the branches.
tf2onnx 1.17 cannot convert a convolution whose kernel is a variable read inside an If branch
(the frozen kernel loses its shape there). Folding costs a multiply per kernel, so a model
folds once for many calls where it can (`AIGResNet.frozen_weights`) and per call otherwise.
BatchNorm at inference uses its moving statistics, so F on a subset of rows equals F on the
batch, row for row, and the folded form equals the Keras layers' output up to float rounding
(tested).
"""

from __future__ import annotations

import tensorflow as tf

from garden.nn.resnet import BasicBlock, BottleneckBlock

__all__ = ["bn_affine", "fold_branch", "run_branch", "run_block", "run_gated_block"]


def bn_affine(bn, dtype):
    """(scale, offset) of a BatchNormalization at inference: y = x * scale + offset."""
    scale = tf.math.rsqrt(tf.cast(bn.moving_variance, tf.float32) + bn.epsilon)
    if bn.gamma is not None:
        scale = scale * tf.cast(bn.gamma, tf.float32)
    offset = -tf.cast(bn.moving_mean, tf.float32) * scale
    if bn.beta is not None:
        offset = offset + tf.cast(bn.beta, tf.float32)
    return tf.cast(scale, dtype), tf.cast(offset, dtype)


def _activation(name):
    if name not in ("relu", None):
        raise ValueError(f"conditional execution supports relu or no activation, not {name!r}")
    return name


def _conv_step(conv, dtype, bn=None, activation=None):
    """('conv', layer, kernel, bias, activation) with BN folded into kernel and bias."""
    if conv.groups != 1:
        raise ValueError("conditional execution supports ungrouped convolutions only")
    kernel = tf.cast(conv.kernel, dtype)
    bias = tf.cast(conv.bias, dtype) if conv.use_bias else None
    if bn is not None:
        scale, offset = bn_affine(bn, dtype)
        kernel = kernel * scale
        bias = offset if bias is None else bias * scale + offset
    return ("conv", conv, kernel, bias, _activation(activation))


def fold_branch(block, dtype):
    """The residual branch F of a garden BasicBlock / BottleneckBlock as functional steps, with
    BatchNorm folded in (inference form, `dtype` weights): the input of `run_branch`."""
    _check_block(block)
    names = ("conv1", "conv2", "conv3") if isinstance(block, BottleneckBlock) else ("conv1", "conv2")
    steps = []
    if block.preact:
        # BN -> ReLU -> conv -> BN -> ReLU -> ... -> conv: every BN after a conv folds into it.
        steps.append(("affine", *bn_affine(block.pre, dtype), _activation(block.pre.activation)))
        mids = ("mid1", "mid2") if isinstance(block, BottleneckBlock) else ("mid",)
        for k, name in enumerate(names):
            bn = getattr(block, mids[k]) if k < len(mids) else None
            steps.append(_conv_step(getattr(block, name), dtype, bn, None if bn is None else bn.activation))
        return steps
    for name in names:
        layer = getattr(block, name)  # ConvBN
        steps.append(_conv_step(layer.conv, dtype, layer.bn, layer.activation))
    return steps


def run_branch(steps, x):
    """F(x) from a folded branch."""
    for step in steps:
        if step[0] == "affine":
            _, scale, offset, activation = step
            x = x * scale + offset
        else:
            _, conv, kernel, bias, activation = step
            p = conv.fixed_padding
            if p:
                x = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]])
            x = tf.nn.conv2d(x, kernel, strides=conv.strides[0], padding=conv.padding.upper(),
                             dilations=conv.dilation_rate[0])
            if bias is not None:
                x = tf.nn.bias_add(x, bias)
        if activation == "relu":
            x = tf.nn.relu(x)
    return x


def _check_block(block):
    if not isinstance(block, (BasicBlock, BottleneckBlock)):
        raise TypeError(f"conditional execution needs a BasicBlock or BottleneckBlock, got {type(block).__name__}")


def run_block(block, x, branch):
    """The block's inference output with F run for every row, from its folded branch."""
    return block.combine(block.shortcut(x, training=False), run_branch(branch, x))


def run_gated_block(block, x, execute, branch=None, input_is_relu=False):
    """The block's inference output for inputs x [B, H, W, C] and a bool decision `execute` [B].

    Equals `block.combine(block.shortcut(x) + where(execute, F(x), 0))`. `branch`: the block's
    folded branch (`fold_branch(block, x.dtype)`); folded here, outside the cond, when None.
    `input_is_relu`: x is a ReLU output (x >= 0), as every block input of a post-activation
    ResNet is; a skipped identity block then returns x itself (its ReLU(x) is x).
    """
    _check_block(block)
    shortcut = block.shortcut(x, training=False)
    if branch is None:
        branch = fold_branch(block, x.dtype)
    passthrough = input_is_relu and block.projection is None

    def executed():
        return block.combine(shortcut, run_branch(branch, x))

    def skipped():
        # A post-activation block's ReLU of a non-negative x is x: no op on the feature map.
        return tf.identity(shortcut) if passthrough else block.combine(shortcut)

    if x.shape[0] == 1:
        # A batch of one, known when the graph is traced (a batch-1 serving signature, the
        # latency case): the decision is a scalar, so one cond runs or skips F, with no
        # gather, scatter or every-row test, each of which costs as much as a small block's
        # convolution at this size.
        return tf.cond(tf.reshape(execute, []), executed, skipped)

    def some_rows():
        rows = tf.where(execute)  # [K, 1] indices of the executed images
        residual = run_branch(branch, tf.gather_nd(x, rows))
        # When every row runs the scatter would copy the shortcut and add row by row, which
        # costs milliseconds per block on ImageNet-sized maps in TensorFlow: a light nested
        # cond adds instead. F itself is in no nested branch: the exported graphs would hold
        # its weights once per branch, and tf2onnx's conversion memory grows with them (an
        # Adanet-50 with F in two branches: 149 MB of ONNX, a 14.8 GB peak).
        return block.combine(tf.cond(tf.reduce_all(execute), lambda: shortcut + residual,
                                     lambda: tf.tensor_scatter_nd_add(shortcut, rows, residual)))

    return tf.cond(tf.reduce_any(execute), some_rows, skipped)
