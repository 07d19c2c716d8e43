"""The export stage: SavedModel (TF Serving layout) + ONNX, parity-checked, with a manifest.

Layout under the workdir:
    export/saved_model/<name>/<version>/   SavedModel with a `serving_default` signature
    export/<name>.onnx                     the same serving function in ONNX
    export/manifest.json                   specs, class names, parity figures, versions

Everything is written into a staging folder and swapped in only after parity passed, so a
failed export never leaves or damages an exported model.
"""

from __future__ import annotations

import datetime
import os
import platform

import numpy as np
import tensorflow as tf

from export.errors import ExportError
from export.onnx_model import run_onnx, write_onnx
from export.parity import compare
from export.saved_model import run_saved_model, write_saved_model
from export.serving import serving_function, serving_inputs_from_features, serving_signature
from garden.atomic import staged_directory, write_json

FORMATS = ("saved_model", "onnx")


def _library_versions() -> dict[str, str]:
    import keras
    import onnx
    import onnxruntime
    import tf2onnx

    return {"python": platform.python_version(), "numpy": np.__version__, "tensorflow": tf.__version__,
            "keras": keras.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "tf2onnx": tf2onnx.__version__}


def _spec_json(spec: tf.TensorSpec) -> dict:
    return {"dtype": spec.dtype.name, "shape": [d if d is not None else -1 for d in spec.shape.as_list()]}


def _whole_batches(inputs: dict[str, np.ndarray], batch_size: int | None) -> dict[str, np.ndarray]:
    """The parity inputs cut to a multiple of `batch_size` rows (repeated to fill one batch when
    there are fewer)."""
    if batch_size is None:
        return inputs
    rows = int(next(iter(inputs.values())).shape[0])
    keep = np.arange(max(batch_size, rows - rows % batch_size)) % rows
    return {k: v[keep] for k, v in inputs.items()}


def _run_batched(run, path: str, inputs: dict[str, np.ndarray], batch_size: int | None) -> dict[str, np.ndarray]:
    """`run(path, inputs)` for an artifact with a fixed batch size: batch by batch, concatenated."""
    if batch_size is None:
        return run(path, inputs)
    rows = int(next(iter(inputs.values())).shape[0])
    parts = [run(path, {k: v[i:i + batch_size] for k, v in inputs.items()}) for i in range(0, rows, batch_size)]
    return {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}


def export_task(task, *, workdir: str, name: str, version: int = 1, formats=FORMATS,
                tolerance: float = 1e-4, sample_features: dict, extra_manifest: dict | None = None,
                batch_size: int | None = None) -> dict:
    """Export `task`'s serving function and check it against Keras on `sample_features`.

    `batch_size` fixes the serving signature's batch size (None: any). Returns the manifest.
    Raises ExportError (nothing written) when an artifact's outputs differ from Keras' by more
    than `tolerance`.
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ExportError(f"unknown export format(s) {unknown}; valid: {', '.join(FORMATS)}")
    if batch_size is not None and int(batch_size) < 1:
        raise ExportError(f"export batch size must be >= 1 or None (any), got {batch_size}")
    inputs = _whole_batches(serving_inputs_from_features(task, sample_features), batch_size)
    reference = {k: v.numpy() for k, v in task.serve({k: tf.constant(v) for k, v in inputs.items()}).items()}
    export_dir = os.path.join(workdir, "export")
    parity, artifacts = {}, {}
    with staged_directory(export_dir) as stage:
        if "saved_model" in formats:
            relative = os.path.join("saved_model", name, str(version))
            write_saved_model(task, os.path.join(stage, relative), batch_size)
            parity["saved_model"] = compare(
                reference, _run_batched(run_saved_model, os.path.join(stage, relative), inputs, batch_size))
            artifacts["saved_model"] = relative
        if "onnx" in formats:
            relative = f"{name}.onnx"
            write_onnx(serving_function(task, batch_size), serving_signature(task, batch_size),
                       os.path.join(stage, relative))
            parity["onnx"] = compare(reference, _run_batched(run_onnx, os.path.join(stage, relative), inputs,
                                                             batch_size))
            artifacts["onnx"] = relative
        too_far = {fmt: p["max_abs_diff_overall"] for fmt, p in parity.items()
                   if p["max_abs_diff_overall"] > tolerance}
        if too_far:
            figures = ", ".join(f"{fmt} {diff:.3g}" for fmt, diff in too_far.items())
            raise ExportError(f"export parity failed: max |Keras - export| {figures} > tolerance {tolerance:g}; "
                              f"nothing was written to {export_dir}")
        manifest = {
            "name": name,
            "version": version,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "artifacts": artifacts,
            "inputs": {k: _spec_json(s) for k, s in serving_signature(task, batch_size).items()},
            "outputs": {k: {"dtype": str(v.dtype), "shape": [batch_size or -1, *v.shape[1:]]}
                        for k, v in reference.items()},
            "parity": {"tolerance": tolerance, "num_examples": int(next(iter(inputs.values())).shape[0]),
                       **parity},
            "versions": _library_versions(),
            **(extra_manifest or {}),
        }
        write_json(os.path.join(stage, "manifest.json"), manifest)
    return manifest
