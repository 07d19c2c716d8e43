"""The aig_classification task: target-rate loss (Eq. 5.8), gate metrics, fit, serving and the
export stage (SavedModel + ONNX parity; the ONNX graph keeps the conditional execution)."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from garden.errors import ConfigError
from garden.methods.aig.analysis import plot_rates, rate_report, rates_by_class
from garden.methods.aig.model import aig_resnet20
from garden.methods.aig.task import AIGClassificationTask
from garden.nn.resnet import resnet20
from tests import invariants as inv

SHAPE = (16, 16, 1)
INFO = {"num_classes": 4, "class_names": ["a", "b", "c", "d"], "image_shape": list(SHAPE)}


def _task(**kw):
    keras.utils.set_random_seed(0)  # the gate tests need mixed decisions: not every initialisation gives them
    model = aig_resnet20(width_multiplier=0.25, num_classes=4)
    return AIGClassificationTask(model, INFO, **kw)


def _batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    features = {"image": rng.uniform(0, 255, (n, *SHAPE)).astype(np.float32)}
    labels = {"label": rng.integers(0, 4, n).astype(np.int64)}
    return features, labels


def test_target_rate_loss_formula():
    task = _task(target_rate=0.6)
    gated = task.model.gated_indices
    gates = np.ones((4, 9), np.float32)
    gates[:2, gated[0]] = 0.0  # rate 0.5 on the first gated block, 1.0 elsewhere
    rates = gates[:, gated].mean(axis=0)
    expected = np.sum((rates - 0.6) ** 2)
    assert float(task.target_rate_loss(tf.constant(gates))) == pytest.approx(expected, rel=1e-6)
    task = _task(target_rate=[0.5] * len(gated), rate_loss_reduction="mean", rate_loss_weight=2.0)
    assert float(task.target_rate_loss(tf.constant(gates))) == pytest.approx(2 * np.mean((rates - 0.5) ** 2), rel=1e-6)


def test_fit_step_trains_every_weight_and_logs_gate_metrics():
    task = _task()
    features, labels = _batch()
    task(features)
    history = inv.check_fit_step(task, features, labels)
    names = set(history)
    assert {"loss", "accuracy", "rate_loss", "executed_fraction", "mmacs"} <= names
    assert {f"rate_{task.model.blocks[i].name}" for i in task.model.gated_indices} <= names
    logs = task.evaluate(tf.data.Dataset.from_tensors((features, labels)), return_dict=True, verbose=0)
    # Init: every deterministic gate opens, so the expected MACs are those of all blocks.
    assert logs["executed_fraction"] == pytest.approx(1.0)
    from garden.methods.aig.flops import count_macs

    assert logs["mmacs"] == pytest.approx(count_macs(task.model, SHAPE[:2]).total / 1e6, rel=1e-5)


def test_task_config_round_trip_and_errors():
    task = _task(target_rate=0.5, rate_loss_reduction="mean")
    config = task.get_config()
    assert config["target_rate"] == 0.5 and config["rate_loss_reduction"] == "mean"
    revived = AIGClassificationTask.from_config(config)
    assert revived.target_rate == 0.5 and revived.model.gated_indices == task.model.gated_indices
    with pytest.raises(ConfigError, match="7 gated blocks"):
        _task(target_rate=[0.5, 0.5])
    with pytest.raises(ConfigError, match="valid: mean, sum"):
        _task(rate_loss_reduction="max")
    with pytest.raises(ConfigError, match="in \\[0, 1\\]"):
        _task(target_rate=1.5)
    with pytest.raises(ConfigError, match="ConvNet-AIG model"):
        AIGClassificationTask(resnet20(width_multiplier=0.25, num_classes=4), INFO)


def _mixed_gates(task, rng):
    """Random gate kernels so that decisions differ per image (some blocks on, some off)."""
    for gate in task.model.gates:
        gate.fc2.kernel.assign(rng.standard_normal(gate.fc2.kernel.shape).astype(np.float32) * 3)
        gate.fc2.bias.assign(np.zeros(2, np.float32))


def test_export_parity_and_conditional_onnx_graph(tmp_path):
    """Through the real export stage: SavedModel and ONNX reproduce Keras with gates that skip
    blocks for some images; the ONNX graph holds an If per gated block and the SavedModel keeps
    (Stateless)If ops: skipping survives the export."""
    import onnx

    task = _task()
    features, _ = _batch(8, seed=1)
    task(features)
    _mixed_gates(task, np.random.default_rng(0))
    served = task.serve({"images": tf.constant(features["image"].astype(np.uint8))})
    executed = served["executed_blocks"].numpy()
    gated = executed[:, task.model.gated_indices]
    assert 0 < gated.mean() < 1, "the test needs some skipped and some executed blocks"
    manifest = inv.check_export_parity(task, features, tmp_path)
    assert manifest["parity"]["onnx"]["integer_mismatches"]["executed_blocks"] == 0
    graph = onnx.load(os.path.join(tmp_path, "export", "model.onnx")).graph
    assert sum(node.op_type == "If" for node in graph.node) == len(task.model.gated_indices)
    # Any batch size: the executed rows are gathered, and scattered back unless all of them ran.
    assert {"ScatterND", "GatherND", "NonZero"} <= set(inv.onnx_op_types(graph))
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(tmp_path, "export", "saved_model", "model", "1", "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    ops = {node.op for graph_def in [proto.meta_graphs[0].graph_def]
           for function in graph_def.library.function for node in function.node_def}
    assert ops & {"If", "StatelessIf"}


def test_batch_of_one_export_has_one_plain_if_per_gated_block(tmp_path):
    """export.batch_size = 1 (latency serving): both artifacts agree with Keras image by image,
    and the ONNX graph decides each gated block with one If whose branches hold no gather,
    scatter or nested If (the any-batch graph has all three)."""
    import onnx

    from export import export_task

    task = _task()
    features, _ = _batch(6, seed=2)
    task(features)
    _mixed_gates(task, np.random.default_rng(0))
    manifest = export_task(task, workdir=os.fspath(tmp_path), name="model", sample_features=features,
                           batch_size=1, tolerance=1e-4)
    assert manifest["inputs"]["images"]["shape"] == [1, *SHAPE]
    assert manifest["parity"]["onnx"]["integer_mismatches"]["executed_blocks"] == 0
    assert manifest["parity"]["saved_model"]["integer_mismatches"]["executed_blocks"] == 0
    served = task.serve({"images": tf.constant(features["image"].astype(np.uint8))})
    gated = served["executed_blocks"].numpy()[:, task.model.gated_indices]
    assert 0 < gated.mean() < 1, "the test needs some skipped and some executed blocks"
    graph = onnx.load(os.path.join(tmp_path, "export", "model.onnx")).graph
    types = inv.onnx_op_types(graph)
    assert types.count("If") == len(task.model.gated_indices)
    assert not {"ScatterND", "GatherND", "NonZero"} & set(types)
    # Each If reads the gate's comparison itself: no Squeeze or Reshape in between.
    producers = {o: n.op_type for n in graph.node for o in n.output}
    assert {producers[n.input[0]] for n in graph.node if n.op_type == "If"} == {"Greater"}


def test_prediction_images():
    task = _task()
    features, labels = _batch(3)
    images = task.prediction_images(features, labels)["executed_blocks"]
    assert images.shape == (1, 3 * 8, 9 * 8, 3) and images.min() >= 0 and images.max() <= 1


def test_rates_by_class_and_plot(tmp_path):
    gates = np.array([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 1]], np.float32)
    labels = np.array([0, 0, 1, 1])
    rates = rates_by_class(gates, labels, 3)
    np.testing.assert_allclose(rates[:2], [[1, 0.5, 0], [1, 1, 1]])
    assert np.all(np.isnan(rates[2]))
    report = rate_report(gates, labels, 3, ["b1", "b2", "b3"], [False, True, True])
    assert report["executed_gated_blocks"]["histogram"] == [1, 1, 2]
    assert report["rate_per_block"] == [1.0, 0.75, 0.5]
    path = tmp_path / "rates.png"
    plot_rates(rates, ["stage1_block1", "stage1_block2", "stage1_block3"], ["x", "y", "z"], [False, True, True], path)
    assert path.stat().st_size > 1000
