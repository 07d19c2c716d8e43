"""Small queries and edits on an ONNX graph and its If branches, for the export's graph passes."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

__all__ = ["branches", "walk", "reads", "drop_unread", "constant_value", "static_shapes"]


def branches(node):
    """The subgraphs of a node (an If's then and else branches)."""
    return [a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH]


def walk(graph):
    """Every node of `graph` and of its subgraphs, recursively."""
    for node in graph.node:
        yield node
        for branch in branches(node):
            yield from walk(branch)


def reads(graph, name) -> bool:
    """Whether a node of `graph` or of its subgraphs, or an output of `graph`, reads `name`."""
    return any(name in node.input for node in walk(graph)) or any(o.name == name for o in graph.output)


def drop_unread(graph, *op_types: str) -> None:
    """Remove the top-level nodes of `op_types` whose outputs nobody reads, until none is left
    (a removed node can leave its producer unread, of the same type or another of them)."""
    while True:
        unread = [n for n in graph.node if n.op_type in op_types and not any(reads(graph, o) for o in n.output)]
        if not unread:
            return
        for node in unread:
            graph.node.remove(node)


def constant_value(graph, name) -> np.ndarray | None:
    """The value of `name` when an initializer or a top-level Constant node holds it, else None."""
    for tensor in graph.initializer:
        if tensor.name == name:
            return numpy_helper.to_array(tensor)
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            return None if value is None else numpy_helper.to_array(value)
    return None


def static_shapes(model: onnx.ModelProto) -> dict:
    """{tensor name: tuple of dims} for the top-level tensors whose shape ONNX's shape inference
    knows fully (every dim a number), inputs and outputs included."""
    inferred = onnx.shape_inference.infer_shapes(model).graph
    shapes = {}
    for info in [*inferred.input, *inferred.value_info, *inferred.output]:
        shape = info.type.tensor_type.shape
        if info.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in shape.dim):
            shapes[info.name] = tuple(d.dim_value for d in shape.dim)
    return shapes
