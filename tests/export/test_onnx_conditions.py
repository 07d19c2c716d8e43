"""export.onnx_conditions: an If reads its one-element condition without a Reshape to a scalar."""

import copy

import numpy as np
import onnx
import onnxruntime as ort
import tensorflow as tf
from onnx import TensorProto, helper, numpy_helper

from export.onnx_conditions import read_conditions_directly
from tests import invariants as inv


def _run(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def _conds_on_matmul_decisions():
    """Like ConvNet-AIG's gate at batch 1: a [1, 1] margin > threshold, reshaped to [] for
    tf.cond (TensorFlow needs a scalar predicate), then tf2onnx."""
    import tf2onnx

    rng = np.random.default_rng(0)
    weights = [rng.standard_normal((4, 1)).astype(np.float32) for _ in range(3)]

    def fn(x):
        y, decisions = x, []
        for w in weights:
            execute = tf.matmul(tf.reduce_mean(y, axis=[1, 2]), w) > 0.0  # [1, 1]
            decisions.append(tf.cast(tf.reshape(execute, [-1]), tf.float32))
            y = tf.cond(tf.reshape(execute, []), lambda y=y: tf.nn.relu(y * 2.0 - 1.0), lambda y=y: tf.identity(y))
        return y, tf.concat(decisions, axis=0)

    signature = [tf.TensorSpec([1, 3, 3, 4], tf.float32, name="x")]
    model, _ = tf2onnx.convert.from_function(tf.function(fn, input_signature=signature),
                                             input_signature=signature, opset=17)
    return model


def _cond_producers(model):
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    return [producers.get(n.input[0]) for n in model.graph.node if n.op_type == "If"]


def test_ifs_read_the_decision_and_the_outputs_stay():
    model = _conds_on_matmul_decisions()
    assert set(_cond_producers(model)) == {"Reshape"}, "tf2onnx no longer reshapes the condition"
    before = copy.deepcopy(model)
    assert read_conditions_directly(model) == 3
    onnx.checker.check_model(model, full_check=True)
    assert "Reshape" not in _cond_producers(model)
    assert inv.onnx_op_types(model.graph).count("Reshape") < inv.onnx_op_types(before.graph).count("Reshape")
    used = {name for node in model.graph.node for name in node.input}
    assert all(t.name in used for t in model.graph.initializer), "a dropped Reshape's shape is left behind"
    rng, decisions = np.random.default_rng(1), []
    for _ in range(8):
        x = rng.standard_normal((1, 3, 3, 4)).astype(np.float32)
        got, expected = _run(model, x), _run(before, x)
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(a, b)
        decisions += list(expected[1])
    assert set(decisions) == {0.0, 1.0}, "the test needs taken and skipped branches"


def _if_on_reshape(shape, condition_shape):
    """y = If(Reshape(c, shape)) with then = x, else = -x; c a bool input of `condition_shape`."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    c = helper.make_tensor_value_info("c", TensorProto.BOOL, condition_shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])

    def branch(name, op):
        out = helper.make_tensor_value_info(f"{name}_y", TensorProto.FLOAT, [2])
        return helper.make_graph([helper.make_node(op, ["x"], [f"{name}_y"])], name, [], [out])

    shape_tensor = numpy_helper.from_array(np.asarray(shape, np.int64), "shape")
    nodes = [helper.make_node("Reshape", ["c", "shape"], ["cond"]),
             helper.make_node("If", ["cond"], ["y"], then_branch=branch("then", "Identity"),
                              else_branch=branch("else", "Neg"))]
    graph = helper.make_graph(nodes, "g", [x, c], [y], initializer=[shape_tensor])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_reshape_goes_only_where_its_input_has_one_element():
    """A Reshape to [] proves one element by itself, a static [1, 1] input by its shape; a
    Reshape to [-1] of a tensor of unknown length stays (it may hold several elements)."""
    kept = _if_on_reshape([-1], ["n"])
    before = kept.SerializeToString()
    assert read_conditions_directly(kept) == 0
    assert kept.SerializeToString() == before
    x = np.array([1.0, -2.0], np.float32)
    for shape, condition_shape in (([], ["n"]), ([1], [1, 1])):
        dropped = _if_on_reshape(shape, condition_shape)
        assert read_conditions_directly(dropped) == 1
        assert sorted(inv.onnx_op_types(dropped.graph)) == ["Identity", "If", "Neg"]
        assert not dropped.graph.initializer
        session = ort.InferenceSession(dropped.SerializeToString(), providers=["CPUExecutionProvider"])
        for flag, expected in ((True, x), (False, -x)):
            c = np.full([1] * max(len(condition_shape), 1), flag)
            np.testing.assert_array_equal(session.run(None, {"x": x, "c": c})[0], expected)
