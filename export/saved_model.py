"""SavedModel in TF Serving layout: `<root>/<name>/<version>/` with a `serving_default` signature."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from export.serving import serving_signature


def write_saved_model(task, path: str, batch_size: int | None = None) -> None:
    """Write the task's serving function as `serving_default` at `path` (a new folder), for
    inputs of `batch_size` rows (None: any number).

    Only the exported model's variables are tracked: a serving function that touches a
    training-only head fails here instead of shipping it.
    """
    archive = keras.export.ExportArchive()
    archive.track(task.export_model())
    archive.add_endpoint(name="serving_default", fn=lambda inputs: task.serve(inputs),
                         input_signature=[serving_signature(task, batch_size)])
    archive.write_out(path, verbose=False)


def run_saved_model(path: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Load with TensorFlow alone (no garden objects) and run `serving_default`."""
    loaded = tf.saved_model.load(path)
    outputs = loaded.signatures["serving_default"](**{k: tf.constant(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in outputs.items()}
