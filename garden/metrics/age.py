"""Age estimation as classification over 0..K-1 years, read out as DEX's expected value.

DEX (Rothe et al. 2015), as NDDR-CNN's IMDB-WIKI experiment uses it (spec seeds_000_001.md
B.4): age* = sum_k p(k) * k over the softmax of the K = 100 age classes. Reported: the mean
and the median of |age* - age_gt| over all test images (lower is better).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from garden.metrics.histogram import StreamingHistogram


def expected_age(logits):
    """DEX expected value sum_k softmax(logits)_k * k, `[B, K] -> [B]` (float32)."""
    logits = tf.cast(logits, tf.float32)
    probabilities = tf.nn.softmax(logits, axis=-1)
    ages = tf.range(tf.shape(logits)[-1], dtype=tf.float32)
    return tf.reduce_sum(probabilities * ages, axis=-1)


@keras.saving.register_keras_serializable(package="garden")
class ExpectedAgeError(keras.metrics.Metric):
    """`result()`: {`<prefix>mae`, `<prefix>median_ae`} of the expected age against integer ages.

    `update_state(ages, logits)`; labels < 0 (missing, as the folder source writes them) are
    left out. The mean is exact; the median is exact to `bin_width` years.
    """

    def __init__(self, max_age: float = 100.0, prefix: str = "age_", bin_width: float = 0.01,
                 name: str = "expected_age_error", **kwargs):
        super().__init__(name=name, **kwargs)
        self.max_age = float(max_age)
        self.prefix = str(prefix)
        self.bin_width = float(bin_width)
        self.histogram = StreamingHistogram(self.max_age, int(round(self.max_age / self.bin_width)),
                                            name="absolute_errors")

    def update_state(self, ages, logits, sample_weight=None):
        ages = tf.reshape(tf.cast(ages, tf.float32), [-1])
        errors = tf.abs(expected_age(logits) - ages)
        weights = tf.cast(ages >= 0, tf.float32)
        if sample_weight is not None:
            weights *= tf.reshape(tf.cast(sample_weight, tf.float32), [-1])
        self.histogram.update_state(errors, weights)

    def result(self):
        return {f"{self.prefix}mae": self.histogram.mean(), f"{self.prefix}median_ae": self.histogram.quantile(0.5)}

    def reset_state(self):
        self.histogram.reset_state()

    def get_config(self):
        return {**super().get_config(), "max_age": self.max_age, "prefix": self.prefix, "bin_width": self.bin_width}
