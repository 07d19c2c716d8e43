"""The serving function of a task: raw inputs in, named outputs out.

One `tf.function` with a fixed input signature is the single source for both artifacts: the
SavedModel's `serving_default` signature and the ONNX graph are traced from it, so they cannot
drift apart.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def serving_signature(task, batch_size: int | None = None) -> dict[str, tf.TensorSpec]:
    """The task's raw serving inputs, with each spec named after its key (ONNX input names).

    `batch_size` fixes the leading dimension (None keeps any batch size): a graph traced for a
    known batch size can be specialised, e.g. ConvNet-AIG's one-cond path at batch 1.
    """
    return {name: tf.TensorSpec([batch_size, *spec.shape[1:]] if batch_size else spec.shape, spec.dtype,
                                name=name)
            for name, spec in task.serving_inputs().items()}


def serving_function(task, batch_size: int | None = None) -> tf.types.experimental.PolymorphicFunction:
    signature = serving_signature(task, batch_size)

    # The parameter's name prefixes graph input names when it equals a key ("inputs" would
    # become "inputs_inputs" in ONNX), so it is one no task uses as a serving input.
    def serve(_garden_serving_inputs):
        return task.serve(_garden_serving_inputs)

    return tf.function(serve, input_signature=[signature])


def serving_inputs_from_features(task, features: dict) -> dict[str, np.ndarray]:
    """Serving inputs for a batch of pipeline features (used for parity on real data).

    Tasks whose serving inputs are not simply their features cast to the serving dtype
    define `to_serving_inputs(features)`.
    """
    if hasattr(task, "to_serving_inputs"):
        return {k: np.asarray(v) for k, v in task.to_serving_inputs(features).items()}
    out = {}
    for name, spec in task.serving_inputs().items():
        key = name if name in features else name.rstrip("s")  # "images" serves the "image" feature
        if key not in features:
            raise KeyError(f"serving input {name!r} has no matching feature; features: {sorted(features)}")
        value = np.asarray(features[key])
        if spec.dtype == tf.uint8:
            value = np.clip(np.rint(value), 0, 255)
        out[name] = value.astype(spec.dtype.as_numpy_dtype)
    return out
