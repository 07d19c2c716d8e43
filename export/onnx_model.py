"""ONNX export through tf2onnx (the converter Keras' own ONNX export uses), checked and run."""

from __future__ import annotations

import numpy as np

from export.errors import ExportError
from export.onnx_conditions import read_conditions_directly
from export.onnx_layout import move_transposes_out_of_ifs

# tf2onnx's default opset range is the one its CI covers (anchors.md section 7).
DEFAULT_OPSET = 17


def write_onnx(serving_fn, signature: dict, path: str, opset: int = DEFAULT_OPSET) -> None:
    """Convert the traced serving function to ONNX at `path` and validate it with the checker."""
    import onnx
    import tf2onnx

    model_proto, _ = tf2onnx.convert.from_function(serving_fn, input_signature=[signature], opset=opset)
    move_transposes_out_of_ifs(model_proto)  # conditional graphs: NCHW across If boundaries
    read_conditions_directly(model_proto)  # and no Reshape to a scalar before each If
    onnx.checker.check_model(model_proto, full_check=True)
    names = [i.name for i in model_proto.graph.input]
    if sorted(names) != sorted(signature):
        raise ExportError(f"ONNX inputs are named {names}, not after the serving inputs {sorted(signature)}")
    onnx.save(model_proto, path)


def run_onnx(path: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs)))
