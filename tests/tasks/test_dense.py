"""The dense multi-task Task: losses on hand-made cases, metrics, images, invariants, export."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from garden.errors import ConfigError
from garden.registry import TASKS
from garden.tasks.dense import DenseTask, colorize_segmentation, normals_to_rgb
from tests import invariants as inv

NUM_CLASSES = 4


@keras.saving.register_keras_serializable(package="tests")
class TinyDense(keras.Model):
    """A stride-2 conv with one 1x1 head per output: tests the task's upsampling too."""

    def __init__(self, heads=("segmentation", "normals", "depth"), num_classes=NUM_CLASSES, **kwargs):
        super().__init__(**kwargs)
        self.heads_, self.num_classes = list(heads), num_classes
        self.body = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", dtype=self.dtype_policy)
        width = {"segmentation": num_classes, "normals": 3, "depth": 1}
        self.outs = {h: keras.layers.Conv2D(width[h], 1, dtype=self.dtype_policy, name=h) for h in self.heads_}

    def call(self, x, training=False):
        y = self.body(x)
        return {h: layer(y) for h, layer in self.outs.items()}

    def get_config(self):
        return {**super().get_config(), "heads": self.heads_, "num_classes": self.num_classes}


def _batch(batch=2, size=8, seed=0):
    rng = np.random.default_rng(seed)
    features = {"image": rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32)}
    normals = rng.normal(size=(batch, size, size, 3)).astype(np.float32)
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    normals[:, 0, 0] = 0.0  # no label
    segmentation = rng.integers(0, NUM_CLASSES, (batch, size, size)).astype(np.int32)
    segmentation[:, 1, 1] = 255
    depth = rng.uniform(0.5, 5.0, (batch, size, size)).astype(np.float32)
    depth[:, 2, 2] = 0.0
    return features, {"segmentation": segmentation, "normals": normals, "depth": depth}


def _task(heads=("segmentation", "normals", "depth"), **kwargs):
    info = {"image_shape": [8, 8, 3], "label_names": {"segmentation": [f"c{i}" for i in range(NUM_CLASSES)]}}
    return DenseTask(TinyDense(heads), info, heads=heads, **kwargs)


def test_registered_and_num_classes_from_the_data():
    assert TASKS.get("dense") is DenseTask
    assert _task().num_classes == NUM_CLASSES


def test_outputs_upsampled_to_the_image():
    features, _ = _batch()
    out = _task()(features)
    assert out["segmentation"].shape == (2, 8, 8, NUM_CLASSES)
    assert out["normals"].shape == (2, 8, 8, 3) and out["depth"].shape == (2, 8, 8, 1)


def test_losses_by_hand():
    task = _task(loss_weights={"segmentation": 1.0, "normals": 20.0, "depth": 0.5})
    _, labels = _batch()
    # Perfect normals and depth: those losses are 0 (invalid pixels left out even if wrong).
    logits = np.zeros((2, 8, 8, NUM_CLASSES), np.float32)  # uniform: CE = log(K) on valid pixels
    normals = labels["normals"].copy()
    normals[:, 0, 0] = [1.0, 0.0, 0.0]
    depth = labels["depth"][..., None].copy()
    depth[:, 2, 2] = 9.0
    pred = {"segmentation": tf.constant(logits), "normals": tf.constant(normals * 2.0), "depth": tf.constant(depth)}
    loss = float(task.compute_loss(y=labels, y_pred=pred))
    assert loss == pytest.approx(np.log(NUM_CLASSES), rel=1e-5)
    # Opposite normals: cosine loss 2 on every valid pixel, x20.
    pred["normals"] = tf.constant(-labels["normals"])
    loss = float(task.compute_loss(y=labels, y_pred=pred))
    assert loss == pytest.approx(np.log(NUM_CLASSES) + 20.0 * 2.0, rel=1e-5)
    # Depth off by 1 m everywhere valid: L1 = 1, x0.5.
    pred["depth"] = tf.constant(labels["depth"][..., None] + 1.0)
    loss = float(task.compute_loss(y=labels, y_pred=pred))
    assert loss == pytest.approx(np.log(NUM_CLASSES) + 40.0 + 0.5, rel=1e-5)


def test_bad_settings_are_one_line_errors():
    info = {"image_shape": [8, 8, 3], "label_names": {"segmentation": ["a", "b", "c", "d"]}}
    with pytest.raises(ConfigError, match="unknown head 'normal'.*did you mean 'normals'"):
        DenseTask(TinyDense(), info, heads=("segmentation", "normal"))
    with pytest.raises(ConfigError, match="loss_weights.*'depth'"):
        _task(heads=("segmentation",), loss_weights={"depth": 1.0})
    with pytest.raises(ConfigError, match="task.num_classes"):
        DenseTask(TinyDense(("segmentation",)), {"image_shape": [8, 8, 3]}, heads=("segmentation",))


def test_fit_metrics_images_save_and_export(tmp_path):
    task = _task(loss_weights={"normals": 20.0})
    features, labels = _batch()
    history = inv.check_fit_step(task, features, labels, steps=2)
    for key in ("segmentation_miou", "segmentation_pixel_accuracy", "normals_mean_angle", "normals_median_angle",
                "normals_within_11_25", "normals_within_22_5", "normals_within_30", "depth_abs_rel",
                "depth_rmse", "segmentation_loss", "normals_loss", "depth_loss"):
        assert key in history and np.isfinite(history[key][-1]), (key, sorted(history))
    images = task.prediction_images(features, labels, max_images=2)
    assert set(images) == {f"{h}/{k}" for h in ("segmentation", "normals", "depth")
                           for k in ("prediction", "ground_truth")}
    for value in images.values():
        assert value.shape == (2, 8, 8, 3) and value.min() >= 0.0 and value.max() <= 1.0
    inv.check_config_round_trip(task)
    inv.check_keras_save_load(task, features, tmp_path)
    manifest = inv.check_export_parity(task, features, tmp_path / "export")
    assert set(manifest["outputs"]) == {"segmentation", "segmentation_probabilities", "normals", "depth"}
    assert manifest["outputs"]["segmentation"]["shape"] == [-1, 8, 8]


def test_colour_helpers():
    colours = colorize_segmentation(np.array([[[0, 1, 255]]]), 3)
    assert colours.shape == (1, 1, 3, 3)
    assert not np.allclose(colours[0, 0, 0], colours[0, 0, 1])
    np.testing.assert_array_equal(colours[0, 0, 2], [1, 1, 1])
    rgb = normals_to_rgb(np.array([[[[0, 0, 1], [0, 0, 0]]]], np.float32))
    np.testing.assert_allclose(rgb[0, 0], [[0.5, 0.5, 1.0], [0, 0, 0]])
