"""Semantic segmentation: mean IoU and pixel accuracy from one confusion matrix.

Definitions (NDDR-CNN's evaluation, spec seeds_000_001.md B.4, the official code's
`tf.contrib.metrics.streaming_mean_iou`): the confusion matrix is accumulated over all pixels of
all evaluated images, leaving out pixels whose label is the ignore label (255) or outside
[0, num_classes); IoU_c = TP_c / (TP_c + FP_c + FN_c); mIoU is the mean over the classes whose
denominator is non-zero (TF's streaming_mean_iou and keras.metrics.MeanIoU do the same, so a
class absent from both labels and predictions does not count as IoU 0); pixel accuracy =
sum of correct valid pixels / number of valid pixels.
"""

from __future__ import annotations

import keras
import tensorflow as tf

IGNORE_LABEL = 255


@keras.saving.register_keras_serializable(package="garden")
class SegmentationMetrics(keras.metrics.Metric):
    """Streaming confusion matrix; `result()` is {`<prefix>miou`, `<prefix>pixel_accuracy`}.

    `update_state(labels, predictions)`: labels int `[...]`; predictions either class ids of the
    same shape, or scores/logits with one more (class) axis, which are arg-maxed.
    """

    def __init__(self, num_classes: int, ignore_label: int = IGNORE_LABEL, prefix: str = "",
                 name: str = "segmentation_metrics", **kwargs):
        super().__init__(name=name, **kwargs)
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_label = int(ignore_label)
        self.prefix = str(prefix)
        self.confusion = self.add_variable(shape=(self.num_classes, self.num_classes), initializer="zeros",
                                           dtype="float64", name="confusion")

    def update_state(self, labels, predictions, sample_weight=None):
        labels = tf.cast(labels, tf.int32)
        predictions = tf.convert_to_tensor(predictions)
        if predictions.shape.rank == labels.shape.rank + 1:
            predictions = tf.argmax(predictions, axis=-1, output_type=tf.int32)
        predictions = tf.cast(predictions, tf.int32)
        labels, predictions = tf.reshape(labels, [-1]), tf.reshape(predictions, [-1])
        valid = (labels != self.ignore_label) & (labels >= 0) & (labels < self.num_classes)
        weights = tf.cast(valid, tf.float64)
        if sample_weight is not None:
            weights *= tf.reshape(tf.cast(tf.broadcast_to(sample_weight, tf.shape(labels)), tf.float64), [-1])
        # Row = label, column = prediction; invalid pixels are sent to cell 0 with weight 0.
        n = self.num_classes
        cell = tf.where(valid, labels * n + tf.clip_by_value(predictions, 0, n - 1), 0)
        counts = tf.math.unsorted_segment_sum(weights, cell, n * n)
        self.confusion.assign_add(tf.reshape(counts, (n, n)))

    def iou_per_class(self):
        cm = self.confusion
        tp = tf.linalg.diag_part(cm)
        denominator = tf.reduce_sum(cm, 0) + tf.reduce_sum(cm, 1) - tp
        return tf.math.divide_no_nan(tp, denominator), denominator > 0

    def result(self):
        iou, present = self.iou_per_class()
        miou = tf.math.divide_no_nan(tf.reduce_sum(tf.where(present, iou, 0.0)),
                                     tf.reduce_sum(tf.cast(present, tf.float64)))
        accuracy = tf.math.divide_no_nan(tf.reduce_sum(tf.linalg.diag_part(self.confusion)),
                                         tf.reduce_sum(self.confusion))
        return {f"{self.prefix}miou": tf.cast(miou, tf.float32),
                f"{self.prefix}pixel_accuracy": tf.cast(accuracy, tf.float32)}

    def reset_state(self):
        self.confusion.assign(tf.zeros_like(self.confusion))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "ignore_label": self.ignore_label,
                "prefix": self.prefix}
