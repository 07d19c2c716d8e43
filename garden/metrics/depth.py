"""Depth: absolute relative error and RMSE, pooled over all valid pixels of all images.

abs_rel = mean |d_pred - d_gt| / d_gt, rmse = sqrt(mean (d_pred - d_gt)^2) (Eigen et al. 2014,
Sec. 4.2), over pixels with a depth label (d_gt > 0: toyworld writes 0 where nothing is hit,
NYUv2 where the sensor has no reading). Pooled over pixels rather than averaged per image: the
same pooling as the segmentation and normal metrics, and a per-image mean would weight images
with few valid pixels as much as full ones.
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="garden")
class DepthErrors(keras.metrics.Metric):
    """`result()`: {`<prefix>abs_rel`, `<prefix>rmse`}. Depth maps `[...]` or `[..., 1]`."""

    def __init__(self, prefix: str = "depth_", name: str = "depth_errors", **kwargs):
        super().__init__(name=name, **kwargs)
        self.prefix = str(prefix)
        self.totals = self.add_variable(shape=(3,), initializer="zeros", dtype="float64", name="totals")

    def update_state(self, labels, predictions, sample_weight=None):
        labels = tf.reshape(tf.cast(labels, tf.float64), [-1])
        predictions = tf.reshape(tf.cast(predictions, tf.float64), [-1])
        weights = tf.cast(labels > 0, tf.float64)
        if sample_weight is not None:
            weights *= tf.reshape(tf.cast(tf.broadcast_to(sample_weight, tf.shape(labels)), tf.float64), [-1])
        error = predictions - labels
        relative = tf.math.divide_no_nan(tf.abs(error), labels)
        self.totals.assign_add(tf.stack([tf.reduce_sum(weights), tf.reduce_sum(weights * relative),
                                         tf.reduce_sum(weights * error * error)]))

    def result(self):
        count = self.totals[0]
        return {f"{self.prefix}abs_rel": tf.cast(tf.math.divide_no_nan(self.totals[1], count), tf.float32),
                f"{self.prefix}rmse": tf.cast(tf.sqrt(tf.math.divide_no_nan(self.totals[2], count)), tf.float32)}

    def reset_state(self):
        self.totals.assign(tf.zeros_like(self.totals))

    def get_config(self):
        return {**super().get_config(), "prefix": self.prefix}
