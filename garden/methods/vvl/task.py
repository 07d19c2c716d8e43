"""The visual-variation tasks: category classification with auxiliary variation losses.

    task:
      name: vvl_classification
      alpha: 0.5                       # L = (1 - alpha) L_class + alpha L_var (A.3)
      variations:                      # variation -> the label keys that make its class
        pose: [azimuth, elevation]     #   (mixed radix: azimuth * n_elevation + elevation)
      variation_sizes: {}              # classes per key when the data has no class names

    task:
      name: vvl_embedding              # Siamese / triplet pose embedding (A.2.3, A.3)
      embedding_loss: triplet          # or contrastive
      margin: null                     # default: 1 (triplet), 0.5 (contrastive), Sec. 5.2
      alpha: 0.5

Several variations share the auxiliary weight equally: L = (1 - alpha) L_class + alpha / k
sum_v L_v, so the paper's I_[5]+LP weights 0.33 / 0.33 / 0.33 (A.3) are alpha = 2/3. The
embedding task adds alpha L_emb to the same sum (its weight split with any variation heads;
the paper's combination is not stated, A.3 [GUESS]).

Only the category path is served and exported (`export_model()` is the bare backbone), so the
SavedModel and ONNX model have exactly the baseline's parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import tensorflow as tf
from keras import ops

from garden.errors import ConfigError
from garden.methods.vvl import labels as vlabels
from garden.nn import metric_learning as ml
from garden.registry import register_task
from garden.tasks.classification import ClassificationTask

__all__ = ["VariationTask", "VariationEmbeddingTask"]

EMBEDDING_LOSSES = {"triplet": 1.0, "contrastive": 0.5}  # default margins (seed 000, Sec. 5.2)
POSITIVE_KEY, NEGATIVE_KEY = "image_positive", "image_negative"


@keras.saving.register_keras_serializable(package="garden")
class _PerExample(keras.losses.Loss):
    """A mean over per-example loss values computed elsewhere (passed as `y_pred`), reduced by
    Keras like any other loss."""

    def call(self, y_true, y_pred):
        return y_pred


@register_task("vvl_classification")
@keras.saving.register_keras_serializable(package="garden")
class VariationTask(ClassificationTask):
    """Category classification + variation classification heads (pose, lighting, ...).

    Logs `loss`, `accuracy`, `class_loss` and per variation `<v>_loss`, `<v>_accuracy`.
    """

    def __init__(self, model: keras.Model, data_info: Any = None, *, alpha: float = 0.5,
                 variations: Mapping[str, Sequence[str]] | None = None,
                 variation_sizes: Mapping[str, int] | None = None, label_key: str = "label",
                 label_smoothing: float = 0.0, mean: float | Sequence[float] = 127.5,
                 std: float | Sequence[float] = 127.5, top_k: int = 5, name: str | None = "vvl_classification",
                 **kwargs):
        super().__init__(model, data_info, label_key=label_key, label_smoothing=label_smoothing, mean=mean,
                         std=std, top_k=top_k, name=name, **kwargs)
        self.alpha = float(alpha)
        if not 0.0 <= self.alpha < 1.0:
            raise ConfigError(f"task.alpha must be in [0, 1) (alpha = 1 would not train the category head), "
                              f"got {alpha}")
        self.variations = {str(k): [str(key) for key in v] for k, v in dict(variations or {}).items()}
        self.variation_sizes = {str(k): int(v) for k, v in dict(variation_sizes or {}).items()}
        model_variations = dict(getattr(model, "variations", {}))
        self._sizes = vlabels.variation_sizes(self.variations, self.data_info.get("label_names", {}),
                                              self.variation_sizes)
        vlabels.check_heads(model_variations, self._sizes, self.variations)
        if self.alpha > 0 and not self._aux_terms():
            raise ConfigError(f"task.alpha = {self.alpha} needs an auxiliary task: set task.variations "
                              "(and model.variations), or alpha: 0 for the single-task baseline")
        self._variation_ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, name="variation_ce")
        self.class_loss = keras.metrics.Mean(name="class_loss")
        self.variation_metrics = [
            (keras.metrics.Mean(name=f"{v}_loss"), keras.metrics.SparseCategoricalAccuracy(name=f"{v}_accuracy"))
            for v in self.variations
        ]

    def _aux_terms(self) -> int:
        return len(self.variations)

    # -- forward ------------------------------------------------------------------------------

    def call(self, features, training=False):
        images = features["image"] if isinstance(features, Mapping) else features
        outputs = self.model(self.preprocess(images), training=training)
        return {k: ops.cast(v, "float32") for k, v in outputs.items()}

    # -- loss and metrics -----------------------------------------------------------------------

    def _weights(self) -> tuple[float, float]:
        """(weight of L_class, weight of each auxiliary term)."""
        terms = self._aux_terms()
        return 1.0 - self.alpha, (self.alpha / terms if terms else 0.0)

    def _variation_losses(self, y, y_pred, sample_weight):
        for (name, keys), (loss_metric, acc_metric) in zip(self.variations.items(), self.variation_metrics):
            target = vlabels.combine(y, keys, self._sizes[name])
            logits = y_pred[f"{name}_logits"]
            loss = self._variation_ce(target, logits, sample_weight=sample_weight)
            loss_metric.update_state(loss)
            acc_metric.update_state(target, logits, sample_weight=sample_weight)
            yield loss

    def _class_term(self, y, y_pred, sample_weight):
        logits = y_pred["logits"]
        labels = self._labels(y)
        targets = ops.one_hot(labels, ops.shape(logits)[-1], dtype="float32") if self.label_smoothing > 0 else labels
        loss = self._loss_fn(targets, logits, sample_weight=sample_weight)
        self.class_loss.update_state(loss)
        return loss

    def _aux_losses(self, x, y, y_pred, sample_weight, training):
        return list(self._variation_losses(y, y_pred, sample_weight))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        w_class, w_aux = self._weights()
        total = w_class * self._class_term(y, y_pred, sample_weight)
        for aux in self._aux_losses(x, y, y_pred, sample_weight, training):
            total = total + w_aux * aux
        return total + self.scaled_regularization_losses()

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, y, y_pred["logits"], sample_weight=sample_weight)

    # -- serving: the category path only ----------------------------------------------------------

    def export_model(self) -> keras.Model:
        return self.model.deployed_model()

    def serve(self, inputs):
        images = inputs[self.image_input]
        logits = ops.cast(self.export_model()(self.preprocess(images), training=False), "float32")
        return {"probabilities": ops.softmax(logits, axis=-1),
                "class_id": tf.argmax(logits, axis=-1, output_type=tf.int64)}

    def get_config(self):
        config = super().get_config()
        config.update(alpha=self.alpha, variations={k: list(v) for k, v in self.variations.items()},
                      variation_sizes=dict(self.variation_sizes))
        return config


@register_task("vvl_embedding")
@keras.saving.register_keras_serializable(package="garden")
class VariationEmbeddingTask(VariationTask):
    """Category classification + a Siamese (contrastive) or triplet pose-embedding loss.

    Each training example is an anchor with a neighbouring-pose (`image_positive`) and a
    distant-pose (`image_negative`) image of the same object instance (the `vvl_triplets`
    dataset). The anchor alone gets L_class (A.2.3 [GUESS]); the Siamese loss averages its two
    pairs (anchor, positive: similar; anchor, negative: dissimilar; margin 0.5 on the Euclidean
    distance), the triplet loss uses squared distances with margin 1 (A.3). Logs
    `embedding_loss` and `triplet_accuracy` (positive closer than negative).
    """

    def __init__(self, model: keras.Model, data_info: Any = None, *, embedding_loss: str = "triplet",
                 margin: float | None = None, alpha: float = 0.5,
                 variations: Mapping[str, Sequence[str]] | None = None,
                 variation_sizes: Mapping[str, int] | None = None, label_key: str = "label",
                 label_smoothing: float = 0.0, mean: float | Sequence[float] = 127.5,
                 std: float | Sequence[float] = 127.5, top_k: int = 5, name: str | None = "vvl_embedding",
                 **kwargs):
        if embedding_loss not in EMBEDDING_LOSSES:
            raise ConfigError(f"task.embedding_loss: unknown {embedding_loss!r}; valid: {', '.join(EMBEDDING_LOSSES)}")
        if not getattr(model, "embedding_dim", 0):
            raise ConfigError("task vvl_embedding needs an embedding head: set model.embedding_dim (paper: 32)")
        self.embedding_loss = embedding_loss
        self.margin = float(EMBEDDING_LOSSES[embedding_loss] if margin is None else margin)
        if self.margin <= 0:
            raise ConfigError(f"task.margin must be > 0, got {margin}")
        super().__init__(model, data_info, alpha=alpha, variations=variations, variation_sizes=variation_sizes,
                         label_key=label_key, label_smoothing=label_smoothing, mean=mean, std=std, top_k=top_k,
                         name=name, **kwargs)
        self.embedding_metric = keras.metrics.Mean(name="embedding_loss")
        self.triplet_accuracy = keras.metrics.Mean(name="triplet_accuracy")
        self._per_example = _PerExample(name="embedding")

    def _aux_terms(self) -> int:
        return len(self.variations) + 1

    def _aux_losses(self, x, y, y_pred, sample_weight, training):
        losses = list(self._variation_losses(y, y_pred, sample_weight))
        for key in (POSITIVE_KEY, NEGATIVE_KEY):
            if key not in y:
                raise ConfigError(f"task vvl_embedding needs '{key}' in the labels: use data.name vvl_triplets "
                                  f"and keep {POSITIVE_KEY}, {NEGATIVE_KEY} in data.label_keys")
        anchor = y_pred["embedding"]
        # Positive and negative share the trunk (the paper's "shared parameters"): one pass.
        pair = ops.concatenate([y[POSITIVE_KEY], y[NEGATIVE_KEY]], axis=0)
        embedded = ops.cast(self.model(self.preprocess(pair), training=training)["embedding"], "float32")
        positive, negative = ops.split(embedded, 2, axis=0)
        if self.embedding_loss == "triplet":
            values = ml.triplet_margin_loss(anchor, positive, negative, margin=self.margin, squared=True)
        else:
            similar = ml.contrastive_loss(anchor, positive, ops.ones_like(anchor[:, 0]), margin=self.margin)
            dissimilar = ml.contrastive_loss(anchor, negative, ops.zeros_like(anchor[:, 0]), margin=self.margin)
            values = 0.5 * (similar + dissimilar)
        loss = self._per_example(ops.zeros_like(values), values, sample_weight=sample_weight)
        self.embedding_metric.update_state(loss)
        self.triplet_accuracy.update_state(ml.triplet_correct(anchor, positive, negative))
        return losses + [loss]

    def get_config(self):
        config = super().get_config()
        config.update(embedding_loss=self.embedding_loss, margin=self.margin)
        return config
