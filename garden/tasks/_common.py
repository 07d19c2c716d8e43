"""Helpers shared by the garden's tasks (a private module: not auto-imported for registration)."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
from keras import ops


def per_channel(value, name: str) -> list[float]:
    """A mean/std given as one number or a per-channel list, as a list of floats."""
    if isinstance(value, (int, float)):
        return [float(value)]
    values = [float(v) for v in value]
    if not values:
        raise ValueError(f"{name} must be a number or a non-empty list of numbers")
    return values


def normalise(images, mean: Sequence[float], std: Sequence[float]):
    x = ops.cast(images, "float32")
    return (x - ops.convert_to_tensor(mean, "float32")) / ops.convert_to_tensor(std, "float32")


def replica_mean(values, weights):
    """sum(w * v) / sum(w) on this replica, divided by the number of replicas, so that the
    cross-replica sum of the gradients is the gradient of the global mean (as Keras' Loss
    objects scale). 0 when no weight is positive (e.g. a batch with no valid pixel)."""
    values = tf.cast(values, tf.float32)
    weights = tf.cast(weights, tf.float32)
    mean = tf.math.divide_no_nan(tf.reduce_sum(values * weights), tf.reduce_sum(weights))
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync if context is not None else 1
    return mean / float(replicas)
