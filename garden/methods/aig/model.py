"""Adanets / ConvNet-AIG: residual networks whose blocks are gated per image (thesis ch. 5).

x_l = x_{l-1} + z_l(x_{l-1}) * F_l(x_{l-1}),  z_l in {0, 1}  (Eq. 5.3; post-activation blocks
apply their ReLU after the sum, as the released code does, so a skipped block is ReLU(x)).

`AIGResNet` is the garden's `ResNet` with a `Gate` before every gated block, wired through the
ResNet's block hooks (`forward_features(x, block_fn=...)`, `forward_parts`, `combine`). It
returns `{"logits": [B, classes], "gates": [B, num_blocks]}`: `gates` is 1 where a block ran
(always 1 for blocks without a gate); in training it carries the straight-through gradient.

Which blocks are gated (thesis Sec. 5.4 and the task issue):
- downsampling blocks are always executed (`gate_downsampling=False`): the thesis reports that
  the learned gates keep them on anyway (Sec. 5.4.1), and their shortcut alone would change the
  features' shape, so skipping their branch is rarely useful;
- `ungated_blocks` leading blocks are always executed: Adanet-101 fixes "the early layers up to
  the second downsampling operation" (Sec. 5.4.2), read here as conv2_x and conv3_x (7 blocks).

Inference (`inference_gates`):
- "deterministic" (default): execute where beta_execute > beta_skip, no noise. The released
  code samples Gumbel noise at evaluation too; we default to the deterministic decision so that
  a served model gives the same answer twice and its exports can be parity-checked (the thesis
  does not say which it used; docs/methods/aig.md).
- "sample": Gumbel-max sampling as in the released code's evaluation.
- "all_scaled": Adanet* (Table 5.1): every block runs, its branch scaled by the layer's
  expected execution rate, tracked as a moving average of the training batches' rates.
- "all": every block runs unscaled (the same network with all gates on; a speed baseline).
Skipped blocks are really skipped at inference (see `conditional.py`).

Deployment (`frozen_weights`): inside `with model.frozen_weights():`, inference folds BatchNorm
into the blocks' convolutions and the gates' first layers once, from the current weights, and
every call reuses the result (constants in a traced graph). Outside it, the folding is part of
every inference call, so a model whose weights change (training, `load_weights`) is always
evaluated with its current weights. The serving graphs are traced inside it (task.py).
"""

from __future__ import annotations

import contextlib
import dataclasses

import keras
import tensorflow as tf
from keras import ops

from garden.errors import ConfigError, unknown_choice
from garden.methods.aig.conditional import fold_branch, run_block, run_gated_block
from garden.methods.aig.gate import INIT_BIAS, Gate, gumbel_straight_through
from garden.nn.layers import register_variant
from garden.nn.resnet import ResNet, cifar_blocks_per_stage

__all__ = ["AIGResNet", "INFERENCE_GATES"]

INFERENCE_GATES = ("deterministic", "sample", "all_scaled", "all")


def _to_numpy(value):
    return value.numpy() if isinstance(value, tf.Tensor) else value


@dataclasses.dataclass(frozen=True)
class _FoldedWeights:
    """Inference weights folded once (`AIGResNet.frozen_weights`). A plain object, not a dict:
    Keras would track a dict attribute's layers and refuse it on a built model."""

    branches: dict  # block index -> fold_branch(...)
    gates: dict  # gate index -> Gate.fold(...)


@keras.saving.register_keras_serializable(package="garden")
class AIGResNet(ResNet):
    """A ResNet with ConvNet-AIG gates. Arguments of `ResNet`, plus:

    Args:
        gate_hidden: hidden width of each gate (d = 16 in the thesis).
        gate_batch_norm: BatchNorm in the gate after the first layer (released code).
        gate_init_bias: (skip, execute) initial biases of the gates' last layer; the default
            (0.1, 2) opens a gate with probability 0.87 (the thesis' "about 85%").
        gate_downsampling: also gate the blocks that change the shape (default: always run).
        ungated_blocks: this many leading blocks always run (Adanet-101: 7).
        temperature: the Gumbel-softmax temperature tau of the backward pass (Eq. 5.7; the
            thesis gives none, the released code keeps 1).
        inference_gates: "deterministic", "sample", "all_scaled" (Adanet*) or "all".
        rate_momentum: momentum of the per-layer execution-rate average used by Adanet*.
    """

    def __init__(
        self,
        blocks_per_stage=(3, 4, 6, 3),
        block_type="bottleneck",
        stage_widths=(64, 128, 256, 512),
        stage_strides=None,
        stem="imagenet",
        stem_width=64,
        preact=False,
        shortcut="projection",
        width_multiplier=1.0,
        output_stride=None,
        block_dropout=0.0,
        drop_path_rate=0.0,
        num_classes=1000,
        include_top=True,
        head_dropout=0.0,
        gate_hidden=16,
        gate_batch_norm=True,
        gate_init_bias=INIT_BIAS,
        gate_downsampling=False,
        ungated_blocks=0,
        temperature=1.0,
        inference_gates="deterministic",
        rate_momentum=0.99,
        **kwargs,
    ):
        super().__init__(
            blocks_per_stage=blocks_per_stage, block_type=block_type, stage_widths=stage_widths,
            stage_strides=stage_strides, stem=stem, stem_width=stem_width, preact=preact,
            shortcut=shortcut, width_multiplier=width_multiplier, output_stride=output_stride,
            block_dropout=block_dropout, drop_path_rate=drop_path_rate, num_classes=num_classes,
            include_top=include_top, head_dropout=head_dropout, **kwargs)
        if inference_gates not in INFERENCE_GATES:
            raise ConfigError(unknown_choice("inference_gates", inference_gates, INFERENCE_GATES))
        if float(temperature) <= 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        if not 0.0 <= float(rate_momentum) < 1.0:
            raise ConfigError(f"rate_momentum must be in [0, 1), got {rate_momentum}")
        if not 0 <= int(ungated_blocks) <= len(self.blocks):
            raise ConfigError(f"ungated_blocks must be in [0, {len(self.blocks)}], got {ungated_blocks}")
        self.gate_hidden = int(gate_hidden)
        self.gate_batch_norm = bool(gate_batch_norm)
        self.gate_init_bias = tuple(float(b) for b in gate_init_bias)
        self.gate_downsampling = bool(gate_downsampling)
        self.ungated_blocks = int(ungated_blocks)
        self.temperature = float(temperature)
        self.inference_gates = inference_gates
        self.rate_momentum = float(rate_momentum)

        self.gated_indices = [
            i for i, block in enumerate(self.blocks)
            if i >= self.ungated_blocks and (self.gate_downsampling or not block.is_downsampling)
        ]
        if not self.gated_indices:
            raise ConfigError("this AIG network has no gated block; lower ungated_blocks or set gate_downsampling")
        self.gates = [
            Gate(self.gate_hidden, self.gate_batch_norm, self.gate_init_bias, dtype=self.dtype_policy,
                 name=f"gate_{self.blocks[i].name}")
            for i in self.gated_indices
        ]
        self._gate_of = {block_index: k for k, block_index in enumerate(self.gated_indices)}
        self.noise = keras.random.SeedGenerator(name="gate_noise")
        p_open = float(ops.convert_to_numpy(ops.sigmoid(self.gate_init_bias[1] - self.gate_init_bias[0])))
        # Expected execution rate of each gated block (Adanet*), updated like BN moving statistics.
        self.execution_rate = self.add_weight(
            shape=(len(self.gated_indices),), initializer=keras.initializers.Constant(p_open),
            trainable=False, aggregation="mean", name="execution_rate")
        self._frozen = None  # _FoldedWeights inside frozen_weights()
        # Post-activation: the stem (conv-BN-ReLU, then max pooling) and every block end in a
        # ReLU, so each block's input is >= 0 and a skipped identity block passes it through.
        self._block_inputs_are_relu = not self.preact and self.stem.activation == "relu"

    @property
    def block_names(self) -> list[str]:
        return [block.name for block in self.blocks]

    @property
    def gated_mask(self) -> list[bool]:
        """Per block: True when it has a gate."""
        return [i in self._gate_of for i in range(len(self.blocks))]

    # -- frozen inference weights -------------------------------------------------------------

    @contextlib.contextmanager
    def frozen_weights(self):
        """Inference inside the block uses BN-folded weights computed once, on entry, from the
        current weights (the form a deployed model runs). Blocks without a gate run the same
        folded form, so `inference_gates="all"` inside is the same network with every gate on.

        A graph traced inside keeps the folded weights of that moment as constants (the stem,
        head and projection shortcuts still read their variables): trace serving and benchmark
        functions here, not functions that run again after the weights change. The SavedModel
        therefore holds the blocks' weights twice, as variables and as folded constants.
        """
        if not self.built:
            raise RuntimeError("frozen_weights needs a built model: call it on a batch first")
        previous = self._frozen
        dtype = self.compute_dtype
        with tf.init_scope():  # evaluated eagerly even while a tf.function is being traced
            branches = {i: fold_branch(block, dtype) for i, block in enumerate(self.blocks)}
            gates = {k: gate.fold(dtype) for k, gate in enumerate(self.gates)}
            # numpy, not eager tensors: each use becomes a Const op where it is used, inside
            # the conditional's branch for F. oneDNN caches the reordered filter of a
            # convolution only when the filter is a Const, and tf2onnx loses the shape of a
            # captured tensor (a placeholder) inside an If branch.
            branches, gates = tf.nest.map_structure(_to_numpy, (branches, gates))
        self._frozen = _FoldedWeights(branches=branches, gates=gates)
        try:
            yield self
        finally:
            self._frozen = previous

    # -- forward ------------------------------------------------------------------------------

    def _gated_block(self, index, block, x, training, symbolic, decisions, batch_rates):
        gate_index = self._gate_of.get(index)
        ones = ops.ones_like(x[:, 0, 0, 0])
        mode = "train" if training else ("deterministic" if symbolic else self.inference_gates)
        frozen = self._frozen if mode != "train" and not symbolic else None
        branch = frozen.branches[index] if frozen is not None else None
        if gate_index is None or mode == "all":
            decisions.append(ones)
            if branch is not None:
                return run_block(block, x, branch)
            return block(x, training=training)
        if mode == "all_scaled":
            decisions.append(ones)
            shortcut, residual = block.forward_parts(x, training=False)
            rate = ops.cast(self.execution_rate[gate_index], residual.dtype)
            return block.combine(shortcut, residual * rate)
        gate = self.gates[gate_index]
        if mode == "deterministic" and not symbolic:
            execute = gate.fast_decision(x, frozen.gates[gate_index] if frozen is not None else None)
            decisions.append(ops.cast(execute, x.dtype))
            return run_gated_block(block, x, execute, branch, self._block_inputs_are_relu)
        logits = gate(x, training=training)
        if mode == "train":
            z = gumbel_straight_through(logits, self.temperature, self.noise)
            batch_rates.append(ops.mean(z))
        elif mode == "sample":
            z = ops.stop_gradient(gumbel_straight_through(logits, 1.0, self.noise))
        else:
            z = Gate.decide(logits)
        decisions.append(ops.cast(z, x.dtype))
        if training or symbolic:
            # The thesis' training form: F on the whole batch, multiplied by z (Sec. 5.3.2).
            shortcut, residual = block.forward_parts(x, training=training)
            return block.combine(shortcut, residual * ops.cast(z, residual.dtype)[:, None, None, None])
        return run_gated_block(block, x, z > 0.5, branch, self._block_inputs_are_relu)

    def _update_rates(self, batch_rates):
        rates = ops.stack(batch_rates)
        m = self.rate_momentum
        self.execution_rate.assign(m * self.execution_rate + (1.0 - m) * ops.stop_gradient(rates))

    def call(self, inputs, training=False):
        symbolic = isinstance(inputs, keras.KerasTensor)
        decisions, batch_rates = [], []

        def block_fn(index, block, x, block_training):
            return self._gated_block(index, block, x, block_training, symbolic, decisions, batch_rates)

        x = self.forward_features(inputs, training=training, block_fn=block_fn)
        if training and batch_rates and not symbolic:
            self._update_rates(batch_rates)
        out = x if not self.include_top else self.forward_head(x, training=training)
        key = "logits" if self.include_top and self.num_classes else "features"
        return {key: out, "gates": ops.stack(decisions, axis=1)}

    def get_config(self):
        config = super().get_config()
        config.update(
            gate_hidden=self.gate_hidden,
            gate_batch_norm=self.gate_batch_norm,
            gate_init_bias=list(self.gate_init_bias),
            gate_downsampling=self.gate_downsampling,
            ungated_blocks=self.ungated_blocks,
            temperature=self.temperature,
            inference_gates=self.inference_gates,
            rate_momentum=self.rate_momentum,
        )
        return config


# --- Registered variants ---------------------------------------------------------------------


def _cifar_aig(depth):
    return register_variant(
        f"aig_resnet{depth}",
        AIGResNet,
        fixed={"blocks_per_stage": cifar_blocks_per_stage(depth), "block_type": "basic", "stem": "cifar"},
        # Thesis Sec. 5.4.1: the "original Resnet 110" (He et al. 2016a): post-activation, option-A
        # (parameter-free) shortcuts, 16/32/64 channels.
        defaults={"stage_widths": (16, 32, 64), "stem_width": 16, "preact": False, "shortcut": "zero_pad",
                  "num_classes": 10},
        doc=f"ConvNet-AIG (Adanet) ResNet-{depth} for 32x32 inputs: the original post-activation "
        f"ResNet-{depth} with a gate before every non-downsampling block.",
    )


aig_resnet20 = _cifar_aig(20)
aig_resnet32 = _cifar_aig(32)
aig_resnet56 = _cifar_aig(56)
aig_resnet110 = _cifar_aig(110)

aig_resnet50 = register_variant(
    "aig_resnet50",
    AIGResNet,
    fixed={"blocks_per_stage": (3, 4, 6, 3), "block_type": "bottleneck", "stem": "imagenet"},
    doc="ConvNet-AIG (Adanet) ResNet-50: all 16 residual blocks gated in the thesis (Sec. 5.4.2); "
    "here the 4 downsampling blocks always run unless gate_downsampling=True.",
)
aig_resnet101 = register_variant(
    "aig_resnet101",
    AIGResNet,
    fixed={"blocks_per_stage": (3, 4, 23, 3), "block_type": "bottleneck", "stem": "imagenet"},
    defaults={"ungated_blocks": 7},
    doc="ConvNet-AIG (Adanet) ResNet-101: conv2_x and conv3_x (7 blocks, up to the second "
    "downsampling) always run, the other blocks are gated (thesis Sec. 5.4.2).",
)
