"""The ConvNet-AIG training task: classification + the target-rate loss, gate metrics, serving.

    task:
      name: aig_classification
      target_rate: 0.7              # t, one for all gated blocks, or a list (one per gated block)
      rate_loss_weight: 1.0         # lambda in  L = L_MC + lambda * L_target
      rate_loss_reduction: sum      # sum over the gated blocks (thesis Eq. 5.8) or mean (code)
      log_block_rates: true         # one metric per gated block (TensorBoard scalars)
      # + every argument of `classification` (label_key, mean, std, label_smoothing, top_k)

Target-rate loss (thesis Eq. 5.8, 5.9): L_target = sum_l (zbar_l - t_l)^2, zbar_l the fraction
of the mini-batch (per replica) that executes block l, computed from the straight-through gates
so that it is differentiable. The thesis writes a sum with weight 1; the released code uses the
mean times `lossfact` (2 for CIFAR): both are a `rate_loss_reduction` / `rate_loss_weight` away.

Metrics (logs, TensorBoard, metrics.json): `loss`, `accuracy`, `rate_loss`, `executed_fraction`
(mean rate over the gated blocks), `mmacs` (expected millions of MACs per image, from the
executed blocks of each image, see flops.py) and, with `log_block_rates`, `rate_<block name>`.

Serving: `probabilities`, `class_id` and `executed_blocks` (int32 [B, num_blocks], 1 where the
block ran). Serving always uses deterministic gates, whatever the model's `inference_gates`:
a served model must answer the same input the same way (and so its exports can be checked).
It runs inside `model.frozen_weights()`: BatchNorm is folded once, when the serving graph is
traced, not on every request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from garden.errors import ConfigError, unknown_choice
from garden.methods.aig.flops import count_macs
from garden.registry import register_task
from garden.tasks.classification import ClassificationTask

__all__ = ["AIGClassificationTask", "ExecutionRates"]

REDUCTIONS = ("sum", "mean")


@keras.saving.register_keras_serializable(package="garden")
class ExecutionRates(keras.metrics.Metric):
    """Running mean of each block's execution decision; `result()` is {"rate_<name>": value}."""

    def __init__(self, block_names: Sequence[str], name="execution_rates", **kwargs):
        super().__init__(name=name, **kwargs)
        self.block_names = [str(n) for n in block_names]
        n = len(self.block_names)
        self.totals = self.add_variable(shape=(n,), initializer="zeros", name="totals")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, gates, sample_weight=None):
        gates = ops.cast(gates, "float32")
        self.totals.assign_add(ops.sum(gates, axis=0))
        self.count.assign_add(ops.cast(ops.shape(gates)[0], "float32"))

    def result(self):
        rates = self.totals / ops.maximum(self.count, 1.0)
        return {f"rate_{name}": rates[i] for i, name in enumerate(self.block_names)}

    def get_config(self):
        return {**super().get_config(), "block_names": list(self.block_names)}


@register_task("aig_classification")
@keras.saving.register_keras_serializable(package="garden")
class AIGClassificationTask(ClassificationTask):
    """Classification with a ConvNet-AIG model (`aig_resnet*`); see the module docstring."""

    def __init__(self, model, data_info=None, *, target_rate: float | Sequence[float] = 0.7,
                 rate_loss_weight: float = 1.0, rate_loss_reduction: str = "sum",
                 log_block_rates: bool = True, label_key: str = "label", label_smoothing: float = 0.0,
                 mean: float | Sequence[float] = 127.5, std: float | Sequence[float] = 127.5, top_k: int = 5,
                 name: str | None = "aig_classification", **kwargs):
        super().__init__(model, data_info, label_key=label_key, label_smoothing=label_smoothing, mean=mean,
                         std=std, top_k=top_k, name=name, **kwargs)
        gated = getattr(model, "gated_indices", None)
        if gated is None:
            raise ConfigError(f"task aig_classification needs a ConvNet-AIG model (aig_resnet20, ..., "
                              f"aig_resnet101), got {type(model).__name__}")
        if rate_loss_reduction not in REDUCTIONS:
            raise ConfigError(unknown_choice("task.rate_loss_reduction", rate_loss_reduction, REDUCTIONS))
        if float(rate_loss_weight) < 0:
            raise ConfigError(f"task.rate_loss_weight must be >= 0, got {rate_loss_weight}")
        targets = [float(target_rate)] * len(gated) if np.isscalar(target_rate) else [float(t) for t in target_rate]
        if len(targets) != len(gated):
            raise ConfigError(f"task.target_rate: {len(targets)} targets for {len(gated)} gated blocks; "
                              "give one number or one per gated block")
        if any(not 0.0 <= t <= 1.0 for t in targets):
            raise ConfigError(f"task.target_rate must be in [0, 1], got {targets}")
        self.target_rate = target_rate if np.isscalar(target_rate) else list(targets)
        self._targets = targets
        self.rate_loss_weight = float(rate_loss_weight)
        self.rate_loss_reduction = rate_loss_reduction
        self.log_block_rates = bool(log_block_rates)
        self.rate_loss_tracker = keras.metrics.Mean(name="rate_loss")
        self.executed_fraction = keras.metrics.Mean(name="executed_fraction")
        self.mmacs = keras.metrics.Mean(name="mmacs")
        self.block_rates = ExecutionRates([model.blocks[i].name for i in gated]) if self.log_block_rates else None
        self._macs = None

    # -- forward ------------------------------------------------------------------------------

    def call(self, features, training=False):
        images = features["image"] if isinstance(features, Mapping) else features
        outputs = self.model(self.preprocess(images), training=training)
        return {"logits": ops.cast(outputs["logits"], "float32"), "gates": ops.cast(outputs["gates"], "float32")}

    def _gated(self, gates):
        return ops.take(gates, self.model.gated_indices, axis=1)

    # -- loss and metrics -----------------------------------------------------------------------

    def target_rate_loss(self, gates):
        """sum_l (mean_batch z_l - t_l)^2 (or the mean over l), times the weight: Eq. 5.8."""
        rates = ops.mean(self._gated(gates), axis=0)
        squared = ops.square(rates - ops.convert_to_tensor(self._targets, "float32"))
        loss = ops.sum(squared) if self.rate_loss_reduction == "sum" else ops.mean(squared)
        return self.rate_loss_weight * loss

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        classification = super().compute_loss(x, y, y_pred["logits"], sample_weight, training)
        rate_loss = self.target_rate_loss(y_pred["gates"])
        self.rate_loss_tracker.update_state(rate_loss)
        # Per-replica term scaled for the cross-replica sum, as Keras' losses are (tasks/base.py).
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return classification + rate_loss / replicas

    def _mac_vectors(self):
        """(fixed MACs, per-block branch MACs) in millions, counted once on the built model."""
        if self._macs is None:
            height, width = self.image_shape[:2]
            if height is None or width is None:
                return None
            count = count_macs(self.model, (height, width))
            self._macs = (count.fixed / 1e6, np.asarray(count.residual, np.float32) / 1e6)
        return self._macs

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        super().compute_metrics(x, y, y_pred["logits"], sample_weight)
        gates = y_pred["gates"]
        self.executed_fraction.update_state(ops.mean(self._gated(gates)))
        macs = self._mac_vectors()
        if macs is not None:
            fixed, residual = macs
            self.mmacs.update_state(fixed + ops.matmul(gates, ops.convert_to_tensor(residual)))
        if self.block_rates is not None:
            self.block_rates.update_state(self._gated(gates))
        return self.get_metrics_result()

    # -- serving ------------------------------------------------------------------------------

    def serve(self, inputs):
        images = inputs[self.image_input]
        model = self.model
        chosen = model.inference_gates
        model.inference_gates = "deterministic"
        try:
            # BN folded once: a traced serving graph holds the folded weights as constants.
            with model.frozen_weights():
                outputs = self({"image": ops.cast(images, "float32")}, training=False)
        finally:
            model.inference_gates = chosen
        logits = outputs["logits"]
        return {
            "probabilities": ops.softmax(logits, axis=-1),
            "class_id": tf.argmax(logits, axis=-1, output_type=tf.int64),
            "executed_blocks": tf.cast(outputs["gates"] > 0.5, tf.int32),
        }

    # -- TensorBoard ----------------------------------------------------------------------------

    def prediction_images(self, features, labels=None, max_images=3):
        """The sample batch's execution map after every epoch: rows = images, columns = blocks
        (white = executed, black = skipped, grey = always executed)."""
        gates = np.asarray(self.call(features, training=False)["gates"])  # [N, blocks]
        ungated = ~np.asarray(self.model.gated_mask)
        image = np.where(ungated[None, :], 0.5, gates).astype(np.float32)
        cell = 8  # pixels per cell
        image = np.kron(image, np.ones((cell, cell), np.float32))
        return {"executed_blocks": np.repeat(image[None, :, :, None], 3, axis=-1)}

    # -- serialisation ------------------------------------------------------------------------

    def get_config(self):
        config = super().get_config()
        config.update(target_rate=self.target_rate, rate_loss_weight=self.rate_loss_weight,
                      rate_loss_reduction=self.rate_loss_reduction, log_block_rates=self.log_block_rates)
        return config
