"""Surface normals: angle errors in degrees, pooled over all valid pixels of all images.

Definitions (spec seeds_000_001.md B.4; the metrics of Eigen & Fergus 2015 used by NDDR-CNN):
per valid pixel theta = arccos(clip(<p/|p|, g/|g|>, -1, 1)) in degrees; reported are the mean
and median theta (lower is better) and the percentage of pixels with theta <= 11.25, 22.5 and
30 degrees (higher is better).

Valid pixels: the ground truth is a unit vector. Both "no label" conventions in use are left
out: zero vectors (toyworld: nothing hit) and NYUv2-style PNGs whose invalid pixels are 255 in
every channel, which decode to (1, 1, 1) with norm sqrt(3). The test is |g| in [0.5, 1.5].
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from garden.metrics.histogram import StreamingHistogram

THRESHOLDS = (11.25, 22.5, 30.0)


def valid_normals(normals):
    """Bool mask `[...]` of pixels with a usable normal label (see the module doc)."""
    norm = tf.norm(tf.cast(normals, tf.float32), axis=-1)
    return (norm >= 0.5) & (norm <= 1.5)


def angle_degrees(predictions, labels):
    """Angle between the directions of `predictions` and `labels` (`[..., 3]`) in degrees."""
    p = tf.math.l2_normalize(tf.cast(predictions, tf.float32), axis=-1)
    g = tf.math.l2_normalize(tf.cast(labels, tf.float32), axis=-1)
    cosine = tf.clip_by_value(tf.reduce_sum(p * g, axis=-1), -1.0, 1.0)
    return tf.acos(cosine) * (180.0 / math.pi)


def _threshold_name(t: float) -> str:
    return f"{t:g}".replace(".", "_")


@keras.saving.register_keras_serializable(package="garden")
class NormalAngleErrors(keras.metrics.Metric):
    """`result()`: {`<prefix>mean_angle`, `<prefix>median_angle`, `<prefix>within_11_25`,
    `<prefix>within_22_5`, `<prefix>within_30`} (angles in degrees, "within" in percent).

    The mean and the threshold percentages are exact; the median is exact to 0.01 degree
    (a streaming histogram, see `garden.metrics.histogram`).
    """

    def __init__(self, thresholds=THRESHOLDS, prefix: str = "normals_", bin_width: float = 0.01,
                 name: str = "normal_angle_errors", **kwargs):
        super().__init__(name=name, **kwargs)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.prefix = str(prefix)
        self.bin_width = float(bin_width)
        self.histogram = StreamingHistogram(180.0, int(round(180.0 / self.bin_width)), name="angles")
        self.within = self.add_variable(shape=(len(self.thresholds),), initializer="zeros", dtype="float64",
                                        name="within")

    def update_state(self, labels, predictions, sample_weight=None):
        angles = tf.reshape(tf.cast(angle_degrees(predictions, labels), tf.float64), [-1])
        weights = tf.cast(tf.reshape(valid_normals(labels), [-1]), tf.float64)
        if sample_weight is not None:
            weights *= tf.reshape(tf.cast(tf.broadcast_to(sample_weight, tf.shape(labels)[:-1]), tf.float64), [-1])
        self.histogram.update_state(angles, weights)
        thresholds = tf.constant(self.thresholds, tf.float64)
        hits = tf.cast(angles[:, None] <= thresholds[None, :], tf.float64) * weights[:, None]
        self.within.assign_add(tf.reduce_sum(hits, axis=0))

    def result(self):
        out = {f"{self.prefix}mean_angle": self.histogram.mean(),
               f"{self.prefix}median_angle": self.histogram.quantile(0.5)}
        shares = tf.cast(100.0 * tf.math.divide_no_nan(self.within, self.histogram.total), tf.float32)
        for i, t in enumerate(self.thresholds):
            out[f"{self.prefix}within_{_threshold_name(t)}"] = shares[i]
        return out

    def reset_state(self):
        self.histogram.reset_state()
        self.within.assign(tf.zeros_like(self.within))

    def get_config(self):
        return {**super().get_config(), "thresholds": list(self.thresholds), "prefix": self.prefix,
                "bin_width": self.bin_width}
