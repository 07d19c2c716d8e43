"""Image classification: softmax cross-entropy (optional label smoothing), top-1/top-k accuracy.

    task:
      name: classification
      label_key: label            # the labels' key in the pipeline's label dict
      label_smoothing: 0.0
      mean: [125.3, 123.0, 113.9] # per-channel (or one) mean and std on the [0, 255] scale;
      std: [63.0, 62.1, 66.7]     # normalisation runs inside the model, so export includes it
      top_k: 5                    # top-k accuracy is logged when there are more than k classes

The wrapped model maps normalised images `[B, H, W, C]` to logits `[B, num_classes]` (or a dict
with a `logits` entry). Serving takes uint8 `images` and returns `probabilities` (float32) and
`class_id` (int64).

Metrics (names in logs, TensorBoard and metrics.json): `loss`, `accuracy` (top-1) and
`top5_accuracy` (`top{k}_accuracy`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import tensorflow as tf
from keras import ops

from garden.registry import register_task
from garden.tasks._common import normalise, per_channel
from garden.tasks.base import Task

__all__ = ["ClassificationTask"]


@register_task("classification")
@keras.saving.register_keras_serializable(package="garden")
class ClassificationTask(Task):
    def __init__(self, model: keras.Model, data_info: Any = None, *, label_key: str = "label",
                 label_smoothing: float = 0.0, mean: float | Sequence[float] = 127.5,
                 std: float | Sequence[float] = 127.5, top_k: int = 5, name: str | None = "classification",
                 **kwargs):
        super().__init__(model, data_info, name=name, **kwargs)
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_key = label_key
        self.label_smoothing = float(label_smoothing)
        self.mean = per_channel(mean, "mean")
        self.std = per_channel(std, "std")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be > 0, got {self.std}")
        channels = self.image_shape[-1]
        for values, what in ((self.mean, "mean"), (self.std, "std")):
            if len(values) > 1 and channels is not None and len(values) != channels:
                raise ValueError(f"{what} has {len(values)} values for {channels}-channel images")
        self.top_k = int(top_k)
        num_classes = self.data_info.get("num_classes")
        self.accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.top_k_accuracy = None
        if self.top_k > 1 and (num_classes is None or num_classes > self.top_k):
            self.top_k_accuracy = keras.metrics.SparseTopKCategoricalAccuracy(
                k=self.top_k, name=f"top{self.top_k}_accuracy")
        if self.label_smoothing > 0:
            self._loss_fn = keras.losses.CategoricalCrossentropy(
                from_logits=True, label_smoothing=self.label_smoothing, name="cross_entropy")
        else:
            self._loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, name="cross_entropy")

    # -- forward ------------------------------------------------------------------------------

    def preprocess(self, images):
        return normalise(images, self.mean, self.std)

    def call(self, features, training=False):
        images = features["image"] if isinstance(features, Mapping) else features
        outputs = self.model(self.preprocess(images), training=training)
        if isinstance(outputs, Mapping):
            outputs = outputs["logits"]
        # Mixed precision: the loss, the softmax and serving work on float32 logits.
        return ops.cast(outputs, "float32")

    # -- loss and metrics -----------------------------------------------------------------------

    def _labels(self, y):
        labels = y[self.label_key] if isinstance(y, Mapping) else y
        return ops.reshape(ops.cast(labels, "int32"), (-1,))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        labels = self._labels(y)
        if self.label_smoothing > 0:
            targets = ops.one_hot(labels, ops.shape(y_pred)[-1], dtype="float32")
        else:
            targets = labels
        loss = self._loss_fn(targets, y_pred, sample_weight=sample_weight)
        return loss + self.scaled_regularization_losses()

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        labels = self._labels(y)
        self.accuracy.update_state(labels, y_pred, sample_weight=sample_weight)
        if self.top_k_accuracy is not None:
            self.top_k_accuracy.update_state(labels, y_pred, sample_weight=sample_weight)
        return self.get_metrics_result()

    # -- serving ------------------------------------------------------------------------------

    def serve(self, inputs):
        images = inputs[self.image_input]
        logits = self({"image": ops.cast(images, "float32")}, training=False)
        return {
            "probabilities": ops.softmax(logits, axis=-1),
            "class_id": tf.argmax(logits, axis=-1, output_type=tf.int64),
        }

    # -- serialisation ------------------------------------------------------------------------

    def get_config(self):
        config = super().get_config()
        config.update(label_key=self.label_key, label_smoothing=self.label_smoothing,
                      mean=list(self.mean), std=list(self.std), top_k=self.top_k)
        return config
