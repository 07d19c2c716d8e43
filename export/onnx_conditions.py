"""If conditions read their one-element tensor directly: no Reshape or Squeeze before an If.

TensorFlow's `tf.cond` needs a scalar predicate, so a decision computed as a [1] or [1, 1]
tensor (ConvNet-AIG's gate at batch 1) is reshaped before each cond, and tf2onnx keeps a
Reshape (or Squeeze) before every ONNX If. ONNX's If only asks that its condition "contain a
single element" (operator spec, If, input `cond`), and onnxruntime accepts any such tensor.
Each of those reshapes is one op launch per gated block, a few microseconds of a ~0.1 ms block
at batch 1.

`read_conditions_directly(model)` feeds each top-level If with the reshape's input where that
input provably has one element (a Reshape to shape [], or a static shape whose dims multiply
to 1), then removes the reshapes nobody reads any more, with their shape constants. The export
stage's parity check runs on the rewritten model.
"""

from __future__ import annotations

import numpy as np
import onnx

from export.onnx_graph import constant_value, drop_unread, reads, static_shapes

__all__ = ["read_conditions_directly"]

_RESHAPES = ("Reshape", "Squeeze")


def read_conditions_directly(model: onnx.ModelProto) -> int:
    """Feed each top-level If with its condition's one-element source; returns how many."""
    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output}
    shapes = None  # shape inference only when a candidate needs it
    rewired, constants = 0, set()
    for node in (n for n in graph.node if n.op_type == "If"):
        source = node.input[0]
        while True:  # along a chain: tf.cond's Reshape to [] of a Reshape to [-1] of [1, 1]
            reshape = producers.get(source)
            if reshape is None or reshape.op_type not in _RESHAPES:
                break
            target = constant_value(graph, reshape.input[1]) if reshape.op_type == "Reshape" else None
            if target is None or target.size != 0:  # a reshape to [] proves one element by itself
                shapes = static_shapes(model) if shapes is None else shapes
                source_shape = shapes.get(reshape.input[0])
                if source_shape is None or int(np.prod(source_shape)) != 1:
                    break
            source = reshape.input[0]
            constants.update(reshape.input[1:])
        if source != node.input[0]:
            node.input[0] = source
            rewired += 1
    # The reshapes and their shape constants (Constant nodes or initializers) nobody reads now.
    drop_unread(graph, *_RESHAPES, "Constant")
    for tensor in [t for t in graph.initializer if t.name in constants and not reads(graph, t.name)]:
        graph.initializer.remove(tensor)
    return rewired
