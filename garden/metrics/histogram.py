"""A streaming histogram of non-negative values: exact count, sum and sum of squares, and
quantiles (the median) to within one bin.

A median over every pixel of a test set cannot be kept exactly in a Keras metric without
storing all values; a fine fixed-range histogram keeps memory constant and is exact up to the
bin width (0.01 degree for angles, 0.01 year for ages with the defaults of the users), which is
far below the precision any paper reports (one decimal).
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="garden")
class StreamingHistogram(keras.metrics.Metric):
    """Histogram of values in [0, max_value] (larger values land in the last bin).

    `update_state(values, sample_weight=None)`: any shape; a weight of 0 drops a value (masks).
    `result()` is the median; `mean()`, `rms()`, `fraction_at_most(t)`, `quantile(q)` give the rest.
    """

    def __init__(self, max_value: float, num_bins: int, name: str = "histogram", **kwargs):
        super().__init__(name=name, **kwargs)
        if max_value <= 0 or num_bins < 1:
            raise ValueError(f"need max_value > 0 and num_bins >= 1, got {max_value}, {num_bins}")
        self.max_value = float(max_value)
        self.num_bins = int(num_bins)
        self.counts = self.add_variable(shape=(self.num_bins,), initializer="zeros", dtype="float64",
                                        name="counts")
        self.total = self.add_variable(shape=(), initializer="zeros", dtype="float64", name="total")
        self.sum = self.add_variable(shape=(), initializer="zeros", dtype="float64", name="sum")
        self.sum_squares = self.add_variable(shape=(), initializer="zeros", dtype="float64", name="sum_squares")

    @property
    def bin_width(self) -> float:
        return self.max_value / self.num_bins

    def update_state(self, values, sample_weight=None):
        values = tf.reshape(tf.cast(values, tf.float64), [-1])
        if sample_weight is None:
            weights = tf.ones_like(values)
        else:
            weights = tf.reshape(tf.cast(tf.broadcast_to(tf.cast(sample_weight, tf.float64),
                                                         tf.shape(values)), tf.float64), [-1])
        index = tf.cast(tf.floor(values / self.bin_width), tf.int32)
        index = tf.clip_by_value(index, 0, self.num_bins - 1)
        self.counts.assign_add(tf.math.unsorted_segment_sum(weights, index, self.num_bins))
        self.total.assign_add(tf.reduce_sum(weights))
        self.sum.assign_add(tf.reduce_sum(weights * values))
        self.sum_squares.assign_add(tf.reduce_sum(weights * values * values))

    def _safe(self, numerator):
        return tf.cast(tf.math.divide_no_nan(numerator, self.total), tf.float32)

    def mean(self):
        return self._safe(self.sum)

    def rms(self):
        return tf.sqrt(self._safe(self.sum_squares))

    def fraction_at_most(self, threshold: float):
        """Share of values <= threshold. Exact when the threshold is a bin edge (the users'
        thresholds are: 11.25, 22.5 and 30 degrees are multiples of 0.01)."""
        edge = int(round(threshold / self.bin_width))
        return self._safe(tf.reduce_sum(self.counts[:edge]))

    def quantile(self, q: float):
        """The q-quantile, interpolated linearly inside its bin."""
        cumulative = tf.cumsum(self.counts)
        target = q * self.total
        index = tf.minimum(tf.reduce_sum(tf.cast(cumulative < target, tf.int32)), self.num_bins - 1)
        before = tf.where(index > 0, tf.gather(cumulative, tf.maximum(index - 1, 0)), tf.constant(0.0, tf.float64))
        inside = tf.math.divide_no_nan(target - before, tf.gather(self.counts, index))
        value = (tf.cast(index, tf.float64) + tf.clip_by_value(inside, 0.0, 1.0)) * self.bin_width
        return tf.cast(tf.where(self.total > 0, value, tf.constant(0.0, tf.float64)), tf.float32)

    def result(self):
        return self.quantile(0.5)

    def reset_state(self):
        for v in (self.counts, self.total, self.sum, self.sum_squares):
            v.assign(tf.zeros_like(v))

    def get_config(self):
        return {**super().get_config(), "max_value": self.max_value, "num_bins": self.num_bins}
