"""The classification task: loss, metrics, preprocessing, mixed precision, serving, serialisation."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from garden.registry import TASKS
from garden.tasks.base import Task
from garden.tasks.classification import ClassificationTask
from tests.test_trainer import IMAGE_SHAPE, TinyNet

INFO = {"num_classes": 4, "class_names": ["a", "b", "c", "d"], "image_shape": list(IMAGE_SHAPE)}


def _batch(n=6, seed=0):
    rng = np.random.default_rng(seed)
    features = {"image": rng.integers(0, 256, (n, *IMAGE_SHAPE)).astype(np.float32)}
    labels = {"label": rng.integers(0, 4, n).astype(np.int64)}
    return features, labels


def _task(num_classes=4, **kwargs):
    info = dict(INFO, num_classes=num_classes, class_names=[str(i) for i in range(num_classes)])
    task = ClassificationTask(TinyNet(num_classes=num_classes), info, **kwargs)
    task(_batch()[0])
    return task


def test_registered():
    assert TASKS.get("classification") is ClassificationTask
    assert issubclass(ClassificationTask, Task)


def test_preprocess_normalises_per_channel():
    task = _task(mean=[10.0, 20.0, 30.0], std=[2.0, 4.0, 5.0])
    images = np.full((1, 2, 2, 3), 40.0, np.float32)
    np.testing.assert_allclose(task.preprocess(images)[0, 0, 0], [15.0, 5.0, 2.0])
    assert _task().preprocess(np.array([[0.0, 255.0]])).numpy().tolist() == [[-1.0, 1.0]]
    with pytest.raises(ValueError, match="mean has 2 values for 3-channel images"):
        ClassificationTask(TinyNet(), INFO, mean=[1.0, 2.0])


def test_loss_is_cross_entropy_plus_regularisation():
    task = _task()
    features, labels = _batch()
    logits = task(features)
    expected = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels["label"], logits)
    np.testing.assert_allclose(task.compute_loss(features, labels, logits), expected, rtol=1e-6)
    smooth = _task(label_smoothing=0.1)
    logits = smooth(features)
    expected = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)(
        tf.one_hot(labels["label"], 4), logits)
    np.testing.assert_allclose(smooth.compute_loss(features, labels, logits), expected, rtol=1e-6)


def test_metric_names():
    task = _task(num_classes=10)
    task.compile(optimizer="sgd")
    features, labels = _batch()
    logs = task.evaluate(features, labels, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "accuracy", "top5_accuracy"}
    assert set(_evaluate(_task(num_classes=4))) == {"loss", "accuracy"}  # top-5 of 4 classes is always 1


def _evaluate(task):
    task.compile(optimizer="sgd")
    features, labels = _batch()
    return task.evaluate(features, labels, verbose=0, return_dict=True)


def test_accuracy_matches_argmax():
    task = _task(num_classes=10)
    features, labels = _batch(n=32, seed=3)
    task.compile(optimizer="sgd")
    logs = task.evaluate(features, labels, verbose=0, return_dict=True)
    logits = task(features).numpy()
    assert logs["accuracy"] == pytest.approx(np.mean(np.argmax(logits, -1) == labels["label"]))
    top5 = np.argsort(-logits, -1)[:, :5]
    assert logs["top5_accuracy"] == pytest.approx(np.mean([l in t for l, t in zip(labels["label"], top5)]))


def test_one_training_step_gives_a_finite_loss_and_a_gradient_for_every_weight():
    task = _task()
    features, labels = _batch()
    with tf.GradientTape() as tape:
        loss = task.compute_loss(features, labels, task(features, training=True))
    grads = tape.gradient(loss, task.trainable_variables)
    assert np.isfinite(float(loss))
    assert task.trainable_variables and all(g is not None and np.any(g.numpy() != 0) for g in grads)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_logits_are_float32(policy):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        task = _task()
        assert task.model.head.compute_dtype != "float32"
        features, labels = _batch()
        logits = task(features)
        assert logits.dtype == tf.float32
        assert task.compute_loss(features, labels, logits).dtype == tf.float32
        outputs = task.serve({"images": tf.zeros((2, *IMAGE_SHAPE), tf.uint8)})
        assert outputs["probabilities"].dtype == tf.float32
    finally:
        keras.mixed_precision.set_global_policy(previous)


def test_serving():
    task = _task()
    spec = task.serving_inputs()
    assert list(spec) == ["images"]
    assert spec["images"].dtype == tf.uint8 and spec["images"].shape.as_list() == [None, *IMAGE_SHAPE]
    features, _ = _batch()
    inputs = task.to_serving_inputs(features)
    assert inputs["images"].dtype == np.uint8
    serve = tf.function(task.serve, input_signature=[spec])
    outputs = serve({"images": tf.constant(inputs["images"])})
    assert set(outputs) == {"probabilities", "class_id"}
    logits = task(features, training=False).numpy()
    np.testing.assert_allclose(outputs["probabilities"], tf.nn.softmax(logits), rtol=1e-5, atol=1e-6)
    assert outputs["class_id"].dtype == tf.int64
    np.testing.assert_array_equal(outputs["class_id"], np.argmax(logits, -1))
    assert task.export_model() is task.model


def test_config_round_trip():
    task = _task(label_smoothing=0.1, mean=[1.0, 2.0, 3.0], std=[4.0, 5.0, 6.0], top_k=3)
    config = task.get_config()
    json.dumps(config)
    restored = ClassificationTask.from_config(config)
    assert restored.get_config() == config
    features, _ = _batch()
    restored(features)
    restored.set_weights(task.get_weights())
    np.testing.assert_allclose(restored(features), task(features), rtol=1e-6)


def test_keras_save_and_load(tmp_path):
    task = _task()
    features, _ = _batch()
    path = tmp_path / "task.keras"
    task.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, ClassificationTask)
    np.testing.assert_allclose(loaded(features), task(features), rtol=1e-6, atol=1e-6)


def test_summary_images_are_in_unit_range():
    images = _task().summary_images(*_batch(), max_images=2)["inputs"]
    assert images.shape == (2, *IMAGE_SHAPE) and 0.0 <= images.min() and images.max() <= 1.0


# ----------------------------------------------------------------------------------------------
# the shared invariants (tests/invariants.py), on the tiny net and on a registered backbone
# ----------------------------------------------------------------------------------------------


def _resnet20_task():
    from garden import registry

    registry.import_all()
    model = registry.MODELS.get("resnet20")(num_classes=10, width_multiplier=0.25)
    info = dict(INFO, num_classes=10, class_names=[str(i) for i in range(10)], image_shape=[16, 16, 3])
    return ClassificationTask(model, info, label_smoothing=0.1)


@pytest.mark.parametrize("factory, shape", [(lambda: _task(), IMAGE_SHAPE), (_resnet20_task, (16, 16, 3))],
                         ids=["tiny", "resnet20"])
def test_shared_invariants(tmp_path, factory, shape):
    from tests import invariants as inv

    task = factory()
    rng = np.random.default_rng(0)
    features = {"image": rng.integers(0, 256, (4, *shape)).astype(np.float32)}
    labels = {"label": np.array([0, 1, 2, 3], np.int64)}
    task(features)
    inv.check_config_round_trip(task)
    loss = inv.check_train_step(task, features, lambda logits: task.compute_loss(features, labels, logits))
    assert np.isfinite(loss)
    inv.check_fit_step(task, features, labels)
    inv.check_keras_save_load(task, features, tmp_path)
