"""Age and gender from one face image (the IMDB-WIKI experiment of NDDR-CNN, Table 7).

    task:
      name: age_gender
      num_ages: 100                        # ages 0..99 as classes (DEX)
      loss_weights: {age: 1.0, gender: 1.0}
      mean: [122.7, 116.7, 104.0]
      std: 1.0

The wrapped model maps normalised images to a dict `{"age": logits [B, num_ages],
"gender": logits [B, 2]}`. Labels: integer `age` (years) and `gender` (0/1) in the label dict;
-1 (a missing label, as the folder source writes empty cells) is left out of loss and metrics.

Losses: softmax cross-entropy on each head (spec B.3: "two softmax CE losses"), weighted and
summed. Metrics: `age_mae`, `age_median_ae` of the DEX expected age (sum_k p(k) k, spec B.4;
`garden.metrics.ExpectedAgeError`) and `gender_accuracy`.
Serving returns `age` (expected age, float32 `[B]`), `age_probabilities`, `gender`
(int64 class id) and `gender_probabilities`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import tensorflow as tf
from keras import ops

from garden.errors import ConfigError
from garden.metrics import ExpectedAgeError, expected_age
from garden.registry import register_task
from garden.tasks._common import normalise, per_channel, replica_mean
from garden.tasks.base import Task

__all__ = ["AgeGenderTask"]

HEADS = ("age", "gender")


@register_task("age_gender")
@keras.saving.register_keras_serializable(package="garden")
class AgeGenderTask(Task):
    def __init__(self, model: keras.Model, data_info: Any = None, *, num_ages: int = 100,
                 loss_weights: Mapping[str, float] | None = None, mean: float | Sequence[float] = 127.5,
                 std: float | Sequence[float] = 127.5, name: str | None = "age_gender", **kwargs):
        super().__init__(model, data_info, name=name, **kwargs)
        self.num_ages = int(num_ages)
        if self.num_ages < 2:
            raise ConfigError(f"task.num_ages must be >= 2, got {num_ages}")
        weights = {"age": 1.0, "gender": 1.0}
        for head, value in dict(loss_weights or {}).items():
            if head not in weights:
                raise ConfigError(f"task.loss_weights: unknown head {head!r}; valid: age, gender")
            weights[head] = float(value)
        self.loss_weights = weights
        self.mean = per_channel(mean, "mean")
        self.std = per_channel(std, "std")
        self.age_loss = keras.metrics.Mean(name="age_loss")
        self.gender_loss = keras.metrics.Mean(name="gender_loss")
        self.age_errors = ExpectedAgeError(max_age=float(self.num_ages), prefix="age_")
        self.gender_accuracy = keras.metrics.SparseCategoricalAccuracy(name="gender_accuracy")

    def preprocess(self, images):
        return normalise(images, self.mean, self.std)

    def call(self, features, training=False):
        images = features["image"] if isinstance(features, Mapping) else features
        outputs = self.model(self.preprocess(images), training=training)
        missing = [h for h in HEADS if h not in outputs]
        if missing:
            raise ValueError(f"the model has no output(s) {missing}; it returns {sorted(outputs)}")
        return {h: ops.cast(outputs[h], "float32") for h in HEADS}

    @staticmethod
    def _cross_entropy(labels, logits):
        labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
        valid = (labels >= 0) & (labels < tf.shape(logits)[-1])
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.where(valid, labels, 0), logits=logits)
        return replica_mean(ce, valid)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        age = self._cross_entropy(y["age"], y_pred["age"])
        gender = self._cross_entropy(y["gender"], y_pred["gender"])
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync if context is not None else 1
        self.age_loss.update_state(age * replicas)
        self.gender_loss.update_state(gender * replicas)
        return (self.loss_weights["age"] * age + self.loss_weights["gender"] * gender
                + self.scaled_regularization_losses())

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        self.age_errors.update_state(y["age"], y_pred["age"])
        gender = tf.reshape(tf.cast(y["gender"], tf.int32), [-1])
        self.gender_accuracy.update_state(tf.maximum(gender, 0), y_pred["gender"],
                                          sample_weight=tf.cast(gender >= 0, tf.float32))
        return self.get_metrics_result()

    def serve(self, inputs):
        outputs = self({"image": ops.cast(inputs[self.image_input], "float32")}, training=False)
        return {
            "age": expected_age(outputs["age"]),
            "age_probabilities": tf.nn.softmax(outputs["age"], axis=-1),
            "gender": tf.argmax(outputs["gender"], axis=-1, output_type=tf.int64),
            "gender_probabilities": tf.nn.softmax(outputs["gender"], axis=-1),
        }

    def get_config(self):
        config = super().get_config()
        config.update(num_ages=self.num_ages, loss_weights=dict(self.loss_weights), mean=list(self.mean),
                      std=list(self.std))
        return config
