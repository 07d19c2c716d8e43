"""export.onnx_layout: NHWC/NCHW Transposes moved out of If branches keep what the graph computes."""

import copy

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tensorflow as tf
from onnx import TensorProto, helper

from export.onnx_layout import move_transposes_out_of_ifs
from tests import invariants as inv

TO_NCHW, TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]


def _run(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def _gated_convolutions():
    """A TF function like a ConvNet-AIG at batch 1: a chain of conds, each running a conv block
    or passing its NHWC input through, decided from the input's spatial mean; then tf2onnx."""
    import tf2onnx

    rng = np.random.default_rng(0)
    kernels = [rng.standard_normal((3, 3, 4, 4)).astype(np.float32) * 0.3 for _ in range(4)]

    def fn(x):
        y = tf.nn.relu(tf.nn.conv2d(x, kernels[0], 1, "SAME"))
        decisions = []
        for kernel in kernels[1:]:
            pooled = tf.reduce_mean(y, axis=[1, 2])  # the gate's input
            execute = tf.reshape(tf.reduce_sum(pooled) > 1.0, [])
            decisions.append(tf.cast(execute, tf.float32))
            y = tf.cond(execute, lambda y=y, k=kernel: tf.nn.relu(y + tf.nn.conv2d(y, k, 1, "SAME")),
                        lambda y=y: tf.identity(y))
        return tf.reduce_mean(y, axis=[1, 2]), tf.stack(decisions)

    signature = [tf.TensorSpec([1, 8, 8, 4], tf.float32, name="x")]
    model, _ = tf2onnx.convert.from_function(tf.function(fn, input_signature=signature),
                                             input_signature=signature, opset=17)
    return model


def test_transposes_leave_the_branches_and_the_outputs_stay():
    model = _gated_convolutions()
    before = copy.deepcopy(model)
    assert move_transposes_out_of_ifs(model) == 3
    onnx.checker.check_model(model, full_check=True)
    for node in (n for n in model.graph.node if n.op_type == "If"):
        for branch in node.attribute:
            assert "Transpose" not in inv.onnx_op_types(branch.g), "a branch still changes the layout"
    assert inv.onnx_op_types(model.graph).count("Transpose") < inv.onnx_op_types(before.graph).count("Transpose")
    rng = np.random.default_rng(1)
    decisions = []
    for scale in (0.05, 0.2, 0.5, 1.0, 3.0):  # small inputs skip the blocks, large ones run them
        x = (rng.standard_normal((1, 8, 8, 4)) * scale + scale).astype(np.float32)
        got, expected = _run(model, x), _run(before, x)
        for a, b in zip(got, expected):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
        decisions += list(expected[1])
    assert set(decisions) == {0.0, 1.0}, "the test needs executed and skipped blocks"


def test_a_graph_without_if_is_left_alone():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 4, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])
    graph = helper.make_graph([helper.make_node("Transpose", ["x"], ["y"], perm=TO_NCHW)], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    before = model.SerializeToString()
    assert move_transposes_out_of_ifs(model) == 0
    assert model.SerializeToString() == before


@pytest.mark.parametrize("keepdims, rewritten", [(0, True), (1, False)])
def test_reduce_mean_reads_the_untransposed_input_when_the_axes_map_in_order(keepdims, rewritten):
    """mean over H, W of Transpose(NCHW -> NHWC)(t) is mean over axes 2, 3 of t (keepdims 0: the
    result's axes N, C keep their order); with keepdims 1 the shapes differ, so it stays."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 5])
    out = helper.make_tensor_value_info("m", TensorProto.FLOAT, None)
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=TO_NHWC),
             helper.make_node("ReduceMean", ["t"], ["m"], axes=[1, 2], keepdims=keepdims)]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [out]), opset_imports=[helper.make_opsetid("", 17)])
    before = copy.deepcopy(model)
    from export.onnx_graph import drop_unread
    from export.onnx_layout import _cancel

    assert _cancel(model.graph) == rewritten
    drop_unread(model.graph, "Transpose")
    assert ("Transpose" in inv.onnx_op_types(model.graph)) != rewritten
    value = np.random.default_rng(0).standard_normal((1, 3, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(_run(model, value)[0], _run(before, value)[0], rtol=1e-6)
