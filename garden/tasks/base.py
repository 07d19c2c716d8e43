"""The Task base class: a `keras.Model` that wraps a network with its losses, metrics and serving.

The contract (docs/design/contracts.md, "Models, tasks, trainer, export"):

* built as `TaskClass(model=model, data_info=info, **task_kwargs)` by the trainer;
* `call(features, training=False)` takes the pipeline's features dict (`image` float32 in
  [0, 255]) and applies `preprocess` itself, so training and serving share one preprocessing;
* it owns its losses and metrics (`compute_loss` / `compute_metrics`, or its own `train_step`
  / `test_step`), so the trainer only calls `compile(optimizer=..., steps_per_execution=...,
  jit_compile=...)`;
* `serving_inputs()` names the raw serving inputs, `serve(inputs)` maps them to named outputs
  (preprocessing + model(training=False) + post-processing), and `export_model()` is the Keras
  model whose variables the exported graph holds (training-only heads stripped).

Losses computed in `compute_loss` must be *per-replica* means scaled for the cross-replica sum:
Keras' `keras.losses.Loss` objects do that (they divide by the number of replicas); use
`self.scaled_regularization_losses()` for the layers' `add_loss`/regulariser terms.

A task disables Keras' input autocasting: the pipeline's float32 [0, 255] images are
preprocessed in float32, then the wrapped model casts to its compute dtype under mixed
precision; tasks cast outputs back to float32 before losses and serving.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

__all__ = ["Task", "info_dict"]


def _multi_worker(strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and \
        strategy.extended._in_multi_worker_mode()


def info_dict(data_info: Any) -> dict:
    """A JSON-able dict of what a task may need from a `SourceInfo` (or a dict, or None)."""
    if data_info is None:
        return {}
    if dataclasses.is_dataclass(data_info):
        raw = {f.name: getattr(data_info, f.name) for f in dataclasses.fields(data_info)}
    elif isinstance(data_info, Mapping):
        raw = dict(data_info)
    else:
        raw = {k: getattr(data_info, k) for k in ("num_classes", "class_names", "image_shape", "label_names")
               if hasattr(data_info, k)}
    out = {}
    if raw.get("num_classes") is not None:
        out["num_classes"] = int(raw["num_classes"])
    if raw.get("class_names") is not None:
        out["class_names"] = [str(c) for c in raw["class_names"]]
    if raw.get("image_shape") is not None:
        out["image_shape"] = [None if d is None else int(d) for d in raw["image_shape"]]
    if raw.get("label_names"):
        out["label_names"] = {str(k): [str(n) for n in v] for k, v in dict(raw["label_names"]).items()}
    return out


class Task(keras.Model):
    """Base of the garden's tasks. Subclasses implement `call`, the loss/metrics and `serve`."""

    #: The serving input name of the images.
    image_input = "images"

    def __init__(self, model: keras.Model, data_info: Any = None, *, name: str | None = None, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(name=name, **kwargs)
        self.model = model
        self.data_info = info_dict(data_info)

    # -- Keras internals ----------------------------------------------------------------------

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Skip Keras' symbolic build when there is nothing left to build.

        Under a tf.distribute strategy, Keras 3 (TF backend) peeks at one batch of the data before
        `fit`/`evaluate` to build the model symbolically; under MultiWorkerMirroredStrategy that
        peek fails on dict inputs (`strategy.reduce` of a nest). The trainer builds the task on a
        sample batch and builds the optimiser itself, so the peek is not needed.
        """
        unbuilt = (
            not all(layer.built for layer in self._flatten_layers())
            or (getattr(self, "_compile_metrics", None) is not None and not self._compile_metrics.built)
            or (getattr(self, "_compile_loss", None) is not None and not self._compile_loss.built)
            or (self.optimizer is not None and not self.optimizer.built)
        )
        if unbuilt:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        return None

    def _make_function(self, step_function):
        """Work around Keras 3 `fit`/`evaluate` under MultiWorkerMirroredStrategy.

        Keras reduces the step's logs with `strategy.reduce("MEAN", value, axis=0)` there, which
        fails on scalars ("Invalid reduction dimension 0 for input with 0 dimensions",
        tensorflow/tensorflow#72388). Scalars leave the step as shape [1]; the reduction then
        averages them over the workers back to scalars.
        """
        if _multi_worker(self.distribute_strategy):
            inner = step_function

            def step_function(data):
                logs = inner(data)
                return tf.nest.map_structure(
                    lambda v: tf.reshape(v, [1]) if isinstance(v, tf.Tensor) and v.shape.rank == 0 else v, logs)

        return super()._make_function(step_function)

    # -- preprocessing ----------------------------------------------------------------------

    def preprocess(self, images):
        """Raw images (any numeric dtype, [0, 255]) -> the model's float32 input. Default: cast."""
        return ops.cast(images, "float32")

    # -- losses -------------------------------------------------------------------------------

    def scaled_regularization_losses(self):
        """The layers' `add_loss` / regulariser terms, scaled for the cross-replica sum, summed (or 0)."""
        losses = [self._aggregate_additional_loss(loss) for loss in self.losses]
        if not losses:
            return ops.zeros((), "float32")
        return ops.sum(ops.stack([ops.cast(loss, "float32") for loss in losses]))

    # -- serving ------------------------------------------------------------------------------

    @property
    def image_shape(self) -> tuple:
        """(H, W, C) of the serving images (None for unknown sizes)."""
        shape = self.data_info.get("image_shape")
        return tuple(shape) if shape else (None, None, None)

    def serving_inputs(self) -> dict[str, tf.TensorSpec]:
        """Raw serving inputs: uint8 images `[batch, H, W, C]` under `image_input`."""
        return {self.image_input: tf.TensorSpec([None, *self.image_shape], tf.uint8, name=self.image_input)}

    def serve(self, inputs: Mapping[str, Any]) -> dict[str, tf.Tensor]:
        raise NotImplementedError(f"{type(self).__name__} does not define serve()")

    def export_model(self) -> keras.Model:
        """The model whose variables the exported serving graph holds."""
        return self.model

    def to_serving_inputs(self, features: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Serving inputs for a batch of pipeline features (for export parity on real data)."""
        images = np.asarray(features["image"])
        return {self.image_input: np.clip(np.rint(images), 0, 255).astype(np.uint8)}

    # -- summaries ----------------------------------------------------------------------------

    def summary_images(self, features: Mapping[str, Any], labels: Mapping[str, Any] | None = None,
                       max_images: int = 3) -> dict[str, np.ndarray]:
        """Images for TensorBoard at the start of training: {tag: float [N, H, W, C] in [0, 1]}."""
        images = np.asarray(features["image"])[:max_images].astype(np.float32) / 255.0
        if images.ndim == 5:  # video: first frame
            images = images[:, 0]
        return {"inputs": np.clip(images, 0.0, 1.0)}

    def prediction_images(self, features: Mapping[str, Any], labels: Mapping[str, Any] | None = None,
                          max_images: int = 3) -> dict[str, np.ndarray]:
        """Images of the predictions on a fixed sample batch, written after every epoch:
        {tag: float [N, H, W, C] in [0, 1]}. Dense tasks override it; the default writes none."""
        return {}

    # -- serialisation ------------------------------------------------------------------------

    def get_config(self):
        config = super().get_config()
        config.update(model=keras.saving.serialize_keras_object(self.model), data_info=dict(self.data_info))
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        model = keras.saving.deserialize_keras_object(config.pop("model"), custom_objects=custom_objects)
        return cls(model=model, **config)
