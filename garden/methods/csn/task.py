"""`csn_triplet`: conditional triplet training of CSN and its baselines (Veit, thesis Sec. 3.3).

    task:
      name: csn_triplet
      margin: 0.2            # h of Eq. 3.4; not given in the thesis, 0.2 is the authors' code default
      embed_weight: 5.0e-3   # λ1 of Eq. 3.7 (Sec. 3.4)
      mask_weight: 5.0e-4    # λ2 of Eq. 3.7 (Sec. 3.4)
      mean: 127.5            # input normalisation on the [0, 255] scale (a number or one per
      std: 127.5             # channel), inside the exported graph

Batches come from the `csn_triplets` dataset: features `image` [B, 3, H, W, C] (anchor, close,
far) and labels `condition` [B]. The loss (Eq. 3.7) is

    L = mean_b max{0, D(a, close; m_c) − D(a, far; m_c) + h}      L_T, Eq. 3.4 (Euclidean D, Eq. 3.3)
      + λ1 · mean over the 3B images of ‖f(x)‖₂²                  L_W, Eq. 3.5
      + λ2 · ‖m‖₁ over the whole mask matrix                        L_M, Eq. 3.6

Choices (docs/methods/csn.md): Eq. 3.4 is oriented anchor-close < anchor-far (the thesis' triplet
definition and test rule; Eq. 3.4 read literally would pull the far image in); L_W is the text's
squared norm per image (the code uses a batch Frobenius norm / sqrt(B)) and is applied to the
baselines too, so that only the masks differ between the compared models; L_M is the text's
‖m‖₁ of the whole matrix (the code uses the selected masks' mean L1, n_c times weaker).

Metrics: `loss`, `triplet_loss`, `embedding_norm` (mean ‖f(x)‖₂²), `mask_l1`, and the triplet
prediction error (Sec. 3.4: a triplet is right iff D(a, close; m_c) < D(a, far; m_c); chance 0.5)
overall, `triplet_error`, and per notion, `triplet_error_<notion>`.

Serving: `images` uint8 [B, H, W, C] and `condition` int32 [B] (ids 0..n_c−1 in the order of the
dataset's notions) -> `masked_embedding` and `embedding` (float32 [B, d]).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from garden.errors import ConfigError
from garden.nn.metric_learning import triplet_correct, triplet_margin_loss
from garden.registry import register_task
from garden.tasks.base import Task

# Sec. 3.4: "λ1 = 5e-3 and λ2 = 5e-4"; margin: the authors' code default (the thesis gives none).
PAPER_EMBED_WEIGHT = 5e-3
PAPER_MASK_WEIGHT = 5e-4
DEFAULT_MARGIN = 0.2


def _per_channel(value, name: str):
    """A number, or one number per channel (e.g. ImageNet's mean for the Zappos ResNet)."""
    if isinstance(value, (int, float)):
        return float(value)
    values = [float(v) for v in value]
    if not values:
        raise ConfigError(f"task.{name} must be a number or a non-empty list of numbers")
    return values


def _metric_name(notion: str) -> str:
    return "triplet_error_" + "".join(ch if ch.isalnum() else "_" for ch in notion)


@register_task("csn_triplet")
@keras.saving.register_keras_serializable(package="garden.csn")
class ConditionalTripletTask(Task):
    def __init__(self, model: keras.Model, data_info: Any = None, *, margin: float = DEFAULT_MARGIN,
                 embed_weight: float = PAPER_EMBED_WEIGHT, mask_weight: float = PAPER_MASK_WEIGHT,
                 mean: float | list[float] = 127.5, std: float | list[float] = 127.5,
                 name: str | None = "csn_triplet", **kwargs):
        super().__init__(model, data_info, name=name, **kwargs)
        if float(margin) < 0 or float(embed_weight) < 0 or float(mask_weight) < 0:
            raise ConfigError(f"task: margin, embed_weight and mask_weight must be >= 0, got {margin}, "
                              f"{embed_weight}, {mask_weight}")
        self.mean, self.std = _per_channel(mean, "mean"), _per_channel(std, "std")
        if min(np.atleast_1d(self.std)) <= 0:
            raise ConfigError(f"task.std must be > 0, got {std}")
        self.margin, self.embed_weight, self.mask_weight = float(margin), float(embed_weight), float(mask_weight)
        num_conditions = int(getattr(model, "num_conditions", 1))
        notions = list(self.data_info.get("label_names", {}).get("condition", []))
        if notions and len(notions) != num_conditions:
            raise ConfigError(f"model.num_conditions is {num_conditions} but the data has {len(notions)} notions "
                              f"({', '.join(notions)}); set model.num_conditions: {len(notions)}")
        self.notions = notions or [f"condition{c}" for c in range(num_conditions)]
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.triplet_loss_tracker = keras.metrics.Mean(name="triplet_loss")
        self.norm_tracker = keras.metrics.Mean(name="embedding_norm")
        self.mask_tracker = keras.metrics.Mean(name="mask_l1")
        self.error = keras.metrics.Mean(name="triplet_error")
        self.notion_errors = [keras.metrics.Mean(name=_metric_name(n)) for n in self.notions]

    # -- forward ------------------------------------------------------------------------------

    @property
    def image_shape(self) -> tuple:
        shape = super().image_shape
        return tuple(shape[-3:])  # the dataset's images are triplets [3, H, W, C]

    def preprocess(self, images):
        mean = ops.convert_to_tensor(self.mean, "float32")
        std = ops.convert_to_tensor(self.std, "float32")
        return (ops.cast(images, "float32") - mean) / std

    def call(self, features, training=False):
        """`{"image": [B, H, W, C] or triplets [B, 3, H, W, C], "condition": [B] (default 0)}` ->
        `{"embedding", "masked_embedding"}` of shape [B, d] or [B, 3, d]."""
        images = features["image"]
        condition = features.get("condition") if isinstance(features, Mapping) else None
        batch = ops.shape(images)[0]
        condition = ops.zeros((batch,), "int32") if condition is None else \
            ops.reshape(ops.cast(condition, "int32"), (-1,))
        triplets = len(images.shape) == 5
        if triplets:
            # [B, 3, H, W, C] -> [3B, H, W, C]: one pass of the net over all images (one BN batch).
            images = ops.reshape(images, (-1, *images.shape[2:]))
            condition = ops.repeat(condition, 3)
        outputs = self.model({"images": self.preprocess(images), "condition": condition}, training=training)
        outputs = {k: ops.cast(outputs[k], "float32") for k in ("embedding", "masked_embedding")}
        if triplets:
            outputs = {k: ops.reshape(v, (batch, 3, -1)) for k, v in outputs.items()}
        return outputs

    # -- loss ---------------------------------------------------------------------------------

    def _condition(self, y):
        return ops.reshape(ops.cast(y["condition"] if isinstance(y, Mapping) else y, "int32"), (-1,))

    def _forward(self, x, y, training):
        return self({"image": x["image"], "condition": self._condition(y)}, training=training)

    def _loss_terms(self, outputs):
        masked, full = outputs["masked_embedding"], outputs["embedding"]
        triplet = ops.mean(triplet_margin_loss(masked[:, 0], masked[:, 1], masked[:, 2], margin=self.margin))
        norm = ops.mean(ops.sum(ops.square(full), axis=-1))
        mask_l1 = ops.cast(self.model.mask_l1(), "float32") if hasattr(self.model, "mask_l1") else 0.0
        total = triplet + self.embed_weight * norm + self.mask_weight * mask_l1
        return total, triplet, norm, mask_l1

    def _update_metrics(self, outputs, y, terms):
        total, triplet, norm, mask_l1 = terms
        self.loss_tracker.update_state(total)
        self.triplet_loss_tracker.update_state(triplet)
        self.norm_tracker.update_state(norm)
        self.mask_tracker.update_state(mask_l1)
        masked = outputs["masked_embedding"]
        wrong = 1.0 - triplet_correct(masked[:, 0], masked[:, 1], masked[:, 2])
        self.error.update_state(wrong)
        condition = self._condition(y)
        for c, metric in enumerate(self.notion_errors):
            metric.update_state(wrong, sample_weight=ops.cast(ops.equal(condition, c), "float32"))
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            outputs = self._forward(x, y, training=True)
            terms = self._loss_terms(outputs)
            # Per-replica mean scaled for the cross-replica gradient sum (garden/tasks/base.py).
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            loss = terms[0] / replicas + self.scaled_regularization_losses()
            scaled = self.optimizer.scale_loss(loss)
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply(grads, variables)
        return self._update_metrics(outputs, y, terms)

    def test_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        outputs = self._forward(x, y, training=False)
        return self._update_metrics(outputs, y, self._loss_terms(outputs))

    @property
    def metrics(self):
        return [self.loss_tracker, self.triplet_loss_tracker, self.norm_tracker, self.mask_tracker, self.error,
                *self.notion_errors]

    # -- serving ------------------------------------------------------------------------------

    def serving_inputs(self) -> dict[str, tf.TensorSpec]:
        return {self.image_input: tf.TensorSpec([None, *self.image_shape], tf.uint8, name=self.image_input),
                "condition": tf.TensorSpec([None], tf.int32, name="condition")}

    def serve(self, inputs):
        outputs = self({"image": ops.cast(inputs[self.image_input], "float32"), "condition": inputs["condition"]},
                       training=False)
        return {"masked_embedding": outputs["masked_embedding"], "embedding": outputs["embedding"]}

    def to_serving_inputs(self, features):
        images = np.asarray(features["image"])
        if images.ndim == 5:
            images = images[:, 0]  # the anchors
        # Every condition id in turn, so that parity covers every mask.
        condition = np.arange(len(images), dtype=np.int32) % len(self.notions)
        return {self.image_input: np.clip(np.rint(images), 0, 255).astype(np.uint8), "condition": condition}

    # -- summaries ----------------------------------------------------------------------------

    def summary_images(self, features, labels=None, max_images: int = 3):
        """Each triplet as one picture: anchor | close | far."""
        images = np.asarray(features["image"])[:max_images].astype(np.float32) / 255.0
        if images.ndim == 5:
            images = np.concatenate(list(np.moveaxis(images, 1, 0)), axis=2)
        return {"triplets_anchor_close_far": np.clip(images, 0.0, 1.0)}

    def prediction_images(self, features, labels=None, max_images: int = 3):
        """The masks as a heat map after every epoch (rows: notions, columns: dimensions)."""
        matrix = self.model.mask_matrix() if hasattr(self.model, "mask_matrix") else None
        if matrix is None:
            return {}
        matrix = np.asarray(ops.convert_to_numpy(matrix), np.float32)
        scaled = matrix / max(float(matrix.max()), 1e-6)
        picture = np.kron(scaled, np.ones((8, 4), np.float32))  # 8x4 pixels per entry
        return {"masks": np.repeat(picture[None, :, :, None], 3, axis=-1)}

    # -- serialisation ------------------------------------------------------------------------

    def get_config(self):
        config = super().get_config()
        config.update(margin=self.margin, embed_weight=self.embed_weight, mask_weight=self.mask_weight,
                      mean=self.mean, std=self.std)
        return config
