"""Dense multi-task prediction: semantic segmentation, surface normals and depth from one model.

    task:
      name: dense
      heads: [segmentation, normals]      # any of segmentation, normals, depth (the model's outputs)
      loss_weights: {segmentation: 1.0, normals: 20.0}
      num_classes: null                   # default: len(label_names["segmentation"]) of the data
      ignore_label: 255
      mean: [122.7, 116.7, 104.0]         # per-channel normalisation inside the model (and export)
      std: 1.0

The wrapped model maps normalised images `[B, H, W, C]` to a dict with one entry per head:
`segmentation` logits `[B, h, w, num_classes]`, `normals` `[B, h, w, 3]` (any length; the
direction is the prediction), `depth` `[B, h, w, 1]` in metres. Outputs at a lower resolution
(output stride 8 for DeepLab) are bilinearly upsampled to the image size inside `call`, so
losses, metrics and serving all work at the labels' full resolution. (NDDR-CNN's code computes
the training loss at 1/8 resolution on nearest-downsampled labels and evaluates on upsampled
logits; one resolution for both keeps thin objects of 64x64 images in the loss.)

Losses (spec seeds_000_001.md B.3), each a mean over the valid pixels of the batch:
- segmentation: softmax cross-entropy, pixels labelled `ignore_label` (or >= num_classes) left out;
- normals: the cosine loss 1 - <p/|p|, g/|g|> (= half the l2 loss between unit vectors) on
  pixels with a unit ground-truth normal (`garden.metrics.valid_normals`);
- depth: mean absolute error in metres on pixels with depth > 0.
The total is the `loss_weights`-weighted sum plus the layers' regularisation terms.

Metrics (names in logs, TensorBoard and metrics.json): `segmentation_miou`,
`segmentation_pixel_accuracy`; `normals_mean_angle`, `normals_median_angle`,
`normals_within_11_25`, `normals_within_22_5`, `normals_within_30` (degrees / percent);
`depth_abs_rel`, `depth_rmse`; and each head's loss (`segmentation_loss`, ...).

Serving takes uint8 `images` and returns `segmentation` (int64 class map `[B, H, W]`),
`segmentation_probabilities` (float32 `[B, H, W, K]`), `normals` (unit vectors, `[B, H, W, 3]`)
and `depth` (`[B, H, W]`), for the heads the task has.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from garden.errors import ConfigError, unknown_choice
from garden.metrics import DepthErrors, NormalAngleErrors, SegmentationMetrics, valid_normals
from garden.metrics.segmentation import IGNORE_LABEL
from garden.registry import register_task
from garden.tasks._common import normalise, per_channel, replica_mean
from garden.tasks.base import Task

__all__ = ["DenseTask", "HEADS", "colorize_segmentation", "normals_to_rgb"]

HEADS = ("segmentation", "normals", "depth")


def _palette(num_classes: int) -> np.ndarray:
    """A fixed, distinct colour per class (the PASCAL VOC bit-interleaving palette)."""
    colours = np.zeros((max(num_classes, 1), 3), np.float32)
    for c in range(num_classes):
        label, r, g, b = c, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= ((label >> 0) & 1) << shift
            g |= ((label >> 1) & 1) << shift
            b |= ((label >> 2) & 1) << shift
            label >>= 3
        colours[c] = (r, g, b)
    return colours / 255.0


def colorize_segmentation(class_map: np.ndarray, num_classes: int, ignore_label: int = IGNORE_LABEL) -> np.ndarray:
    """Int class map `[N, H, W]` -> RGB float `[N, H, W, 3]` in [0, 1]; ignored pixels white."""
    class_map = np.asarray(class_map).astype(np.int64)
    palette = _palette(num_classes)
    out = palette[np.clip(class_map, 0, num_classes - 1)]
    out[(class_map == ignore_label) | (class_map >= num_classes) | (class_map < 0)] = 1.0
    return out


def normals_to_rgb(normals: np.ndarray) -> np.ndarray:
    """Normals `[N, H, W, 3]` -> RGB (n + 1) / 2 in [0, 1], the usual rendering; invalid pixels black."""
    normals = np.asarray(normals, np.float32)
    norm = np.linalg.norm(normals, axis=-1, keepdims=True)
    unit = normals / np.maximum(norm, 1e-6)
    valid = (norm >= 0.5) & (norm <= 1.5)
    return np.where(valid, (unit + 1.0) / 2.0, 0.0).astype(np.float32)


def _depth_to_grey(depth: np.ndarray, top: float | None = None) -> np.ndarray:
    depth = np.asarray(depth, np.float32)
    if depth.ndim == 4:
        depth = depth[..., 0]
    if top is None:
        top = float(np.percentile(depth[depth > 0], 99)) if np.any(depth > 0) else 1.0
    grey = np.clip(depth / max(top, 1e-6), 0.0, 1.0)
    return np.repeat(grey[..., None], 3, axis=-1)


@register_task("dense")
@keras.saving.register_keras_serializable(package="garden")
class DenseTask(Task):
    def __init__(self, model: keras.Model, data_info: Any = None, *, heads: Sequence[str] = ("segmentation", "normals"),
                 loss_weights: Mapping[str, float] | None = None, num_classes: int | None = None,
                 ignore_label: int = IGNORE_LABEL, mean: float | Sequence[float] = 127.5,
                 std: float | Sequence[float] = 127.5, name: str | None = "dense", **kwargs):
        super().__init__(model, data_info, name=name, **kwargs)
        self.heads = [str(h) for h in heads]
        if not self.heads:
            raise ConfigError(f"task.heads: give at least one of {', '.join(HEADS)}")
        for head in self.heads:
            if head not in HEADS:
                raise ConfigError("task.heads: " + unknown_choice("head", head, HEADS))
        weights = {h: 1.0 for h in self.heads}
        for head, value in dict(loss_weights or {}).items():
            if head not in self.heads:
                raise ConfigError(f"task.loss_weights: {head!r} is not one of the task's heads "
                                  f"({', '.join(self.heads)})")
            weights[head] = float(value)
        self.loss_weights = weights
        self.ignore_label = int(ignore_label)
        self.mean = per_channel(mean, "mean")
        self.std = per_channel(std, "std")
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"task.std must be > 0, got {self.std}")
        if num_classes is None and "segmentation" in self.heads:
            names = self.data_info.get("label_names", {}).get("segmentation")
            num_classes = len(names) if names else self.data_info.get("num_classes")
            if num_classes is None:
                raise ConfigError("task.num_classes: the data names no segmentation classes; set task.num_classes")
        self.num_classes = None if num_classes is None else int(num_classes)

        self.head_losses = {h: keras.metrics.Mean(name=f"{h}_loss") for h in self.heads}
        self.segmentation_metrics = (SegmentationMetrics(self.num_classes, self.ignore_label, prefix="segmentation_")
                                     if "segmentation" in self.heads else None)
        self.normal_metrics = NormalAngleErrors(prefix="normals_") if "normals" in self.heads else None
        self.depth_metrics = DepthErrors(prefix="depth_") if "depth" in self.heads else None

    # -- forward ------------------------------------------------------------------------------

    def preprocess(self, images):
        return normalise(images, self.mean, self.std)

    def call(self, features, training=False):
        images = features["image"] if isinstance(features, Mapping) else features
        outputs = self.model(self.preprocess(images), training=training)
        if not isinstance(outputs, Mapping):
            if len(self.heads) != 1:
                raise ValueError(f"the model returns one tensor; the task has heads {self.heads}")
            outputs = {self.heads[0]: outputs}
        missing = [h for h in self.heads if h not in outputs]
        if missing:
            raise ValueError(f"the model has no output(s) {missing}; it returns {sorted(outputs)}")
        size = ops.shape(images)[1:3]
        result = {}
        for head in self.heads:
            out = ops.cast(outputs[head], "float32")  # mixed precision: losses in float32
            if out.shape[1] != images.shape[1] or out.shape[2] != images.shape[2]:
                out = tf.image.resize(out, size, method="bilinear")
            result[head] = out
        return result

    # -- loss and metrics -----------------------------------------------------------------------

    def _segmentation_loss(self, labels, logits):
        labels = tf.cast(labels, tf.int32)
        valid = (labels != self.ignore_label) & (labels >= 0) & (labels < self.num_classes)
        safe = tf.where(valid, labels, 0)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=logits)
        return replica_mean(ce, valid)

    @staticmethod
    def _normals_loss(labels, predictions):
        p = tf.math.l2_normalize(predictions, axis=-1)
        g = tf.math.l2_normalize(tf.cast(labels, tf.float32), axis=-1)
        return replica_mean(1.0 - tf.reduce_sum(p * g, axis=-1), valid_normals(labels))

    @staticmethod
    def _depth_loss(labels, predictions):
        labels = tf.cast(labels, tf.float32)
        predictions = tf.convert_to_tensor(predictions)
        if predictions.shape.rank == labels.shape.rank + 1:
            predictions = predictions[..., 0]
        return replica_mean(tf.abs(predictions - labels), labels > 0)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        total = self.scaled_regularization_losses()
        losses = {"segmentation": self._segmentation_loss, "normals": self._normals_loss, "depth": self._depth_loss}
        for head in self.heads:
            loss = losses[head](y[head], y_pred[head])
            # The tracker shows the global mean (undo the replica scaling).
            context = tf.distribute.get_replica_context()
            replicas = context.num_replicas_in_sync if context is not None else 1
            self.head_losses[head].update_state(loss * replicas)
            total = total + self.loss_weights[head] * loss
        return total

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if self.segmentation_metrics is not None:
            self.segmentation_metrics.update_state(y["segmentation"], y_pred["segmentation"])
        if self.normal_metrics is not None:
            self.normal_metrics.update_state(y["normals"], y_pred["normals"])
        if self.depth_metrics is not None:
            self.depth_metrics.update_state(y["depth"], y_pred["depth"][..., 0])
        return self.get_metrics_result()

    # -- serving ------------------------------------------------------------------------------

    def serve(self, inputs):
        outputs = self({"image": ops.cast(inputs[self.image_input], "float32")}, training=False)
        served = {}
        if "segmentation" in outputs:
            logits = outputs["segmentation"]
            served["segmentation"] = tf.argmax(logits, axis=-1, output_type=tf.int64)
            served["segmentation_probabilities"] = tf.nn.softmax(logits, axis=-1)
        if "normals" in outputs:
            served["normals"] = tf.math.l2_normalize(outputs["normals"], axis=-1)
        if "depth" in outputs:
            served["depth"] = outputs["depth"][..., 0]
        return served

    # -- summaries ----------------------------------------------------------------------------

    def prediction_images(self, features, labels=None, max_images=3):
        """Predictions beside the ground truth: `<head>/prediction` and `<head>/ground_truth`."""
        images = np.asarray(features["image"])[:max_images]
        outputs = {k: np.asarray(v) for k, v in self({"image": images}, training=False).items()}
        labels = labels or {}
        out = {}
        if "segmentation" in outputs:
            out["segmentation/prediction"] = colorize_segmentation(
                outputs["segmentation"].argmax(-1), self.num_classes, self.ignore_label)
            if "segmentation" in labels:
                out["segmentation/ground_truth"] = colorize_segmentation(
                    np.asarray(labels["segmentation"])[:max_images], self.num_classes, self.ignore_label)
        if "normals" in outputs:
            # Predictions have any length: colour their direction (the validity test is for labels).
            predicted = outputs["normals"]
            predicted = predicted / np.maximum(np.linalg.norm(predicted, axis=-1, keepdims=True), 1e-6)
            out["normals/prediction"] = normals_to_rgb(predicted)
            if "normals" in labels:
                out["normals/ground_truth"] = normals_to_rgb(np.asarray(labels["normals"])[:max_images])
        if "depth" in outputs:
            gt = np.asarray(labels["depth"])[:max_images] if "depth" in labels else None
            top = float(np.percentile(gt[gt > 0], 99)) if gt is not None and np.any(gt > 0) else None
            out["depth/prediction"] = _depth_to_grey(outputs["depth"], top)
            if gt is not None:
                out["depth/ground_truth"] = _depth_to_grey(gt, top)
        return out

    # -- serialisation ------------------------------------------------------------------------

    def get_config(self):
        config = super().get_config()
        config.update(heads=list(self.heads), loss_weights=dict(self.loss_weights), num_classes=self.num_classes,
                      ignore_label=self.ignore_label, mean=list(self.mean), std=list(self.std))
        return config
