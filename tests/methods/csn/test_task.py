"""The csn_triplet task: the loss of Eq. 3.7 by hand, the triplet error's orientation, per-notion
metrics, a real fit step, .keras save/load, and export parity through the real export stage."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from garden.errors import ConfigError
from garden.methods.csn.models import ConditionalSimilarityNetwork, SpecialistNetworks
from garden.methods.csn.task import ConditionalTripletTask
from tests import invariants as inv

TINY_TRUNK = {"stages": [[4], [8]], "pooling": "avg", "hidden_units": []}
NOTIONS = ["shape", "color", "texture"]
INFO = {"image_shape": [3, 16, 16, 3], "label_names": {"condition": NOTIONS}}


def _task(masks="learned", **kwargs):
    model = ConditionalSimilarityNetwork("conv", TINY_TRUNK, 8, 3, masks, mask_seed=0)
    task = ConditionalTripletTask(model, INFO, **kwargs)
    task(_features())
    return task


def _features(batch=6, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.integers(0, 256, (batch, 3, 16, 16, 3)).astype(np.float32)}


def _labels(batch=6):
    return {"condition": (np.arange(batch) % 3).astype(np.int64)}


class _FixedEmbeddings(keras.Model):
    """Outputs given embeddings (a [3B, d] table in triplet order) and a learned 2-notion mask."""

    num_conditions = 2

    def __init__(self, table, masks):
        super().__init__(name="fixed_embeddings")
        self.table, self.masks = tf.constant(table, tf.float32), tf.constant(masks, tf.float32)

    def call(self, inputs, training=False):
        mask = tf.gather(self.masks, tf.cast(inputs["condition"], tf.int32))
        return {"embedding": self.table, "masked_embedding": self.table * mask}

    def mask_l1(self):
        return tf.reduce_sum(tf.abs(self.masks))


def test_loss_is_eq_3_7_by_hand():
    # The task flattens [B, 3, ...] row-major: triplet b is rows 3b (anchor), 3b + 1 (close), 3b + 2 (far).
    a0, c0, f0 = [0.0, 0.0], [3.0, 4.0], [0.0, 6.0]      # D(a, close) 5, D(a, far) 6
    a1, c1, f1 = [1.0, 1.0], [1.0, 1.0], [1.0, 3.0]      # D 0 and 2
    table = np.array([a0, c0, f0, a1, c1, f1], np.float32)
    masks = np.array([[1.0, 1.0], [0.5, 2.0]], np.float32)
    task = ConditionalTripletTask(_FixedEmbeddings(table, masks), {"label_names": {"condition": ["p", "q"]}},
                                  margin=2.0, embed_weight=0.1, mask_weight=0.01)
    outputs = task({"image": np.zeros((2, 3, 4, 4, 3), np.float32), "condition": np.array([0, 0])})
    total, triplet, norm, l1 = (float(v) for v in task._loss_terms(outputs))
    # L_T: max(0, 5 - 6 + 2) = 1 and max(0, 0 - 2 + 2) = 0 -> mean 0.5.
    assert triplet == pytest.approx(0.5)
    assert norm == pytest.approx(np.mean((table ** 2).sum(1)))  # L_W: mean squared norm of all images
    assert l1 == pytest.approx(4.5)  # L_M: ‖m‖₁ of the whole matrix
    assert total == pytest.approx(0.5 + 0.1 * norm + 0.01 * 4.5)
    # Condition 1 scales the first dimension by 0.5 and the second by 2: D(a0, c0) = ‖(1.5, 8)‖, D(a0, f0) = 12.
    outputs = task({"image": np.zeros((2, 3, 4, 4, 3), np.float32), "condition": np.array([1, 1])})
    _, triplet, _, _ = (float(v) for v in task._loss_terms(outputs))
    d_close, d_far = np.hypot(1.5, 8.0), 12.0
    assert triplet == pytest.approx(np.mean([max(0, d_close - d_far + 2), max(0, 0 - 4 + 2)]), rel=1e-5)


def test_triplet_error_orientation_and_per_notion_metrics():
    # Triplet 0 (notion p) is right (close nearer), triplet 1 (notion q) is wrong.
    table = np.array([[0, 0], [1, 0], [5, 0], [0, 0], [5, 0], [1, 0]], np.float32)
    task = ConditionalTripletTask(_FixedEmbeddings(table, np.ones((2, 2), np.float32)),
                                  {"label_names": {"condition": ["p", "q"]}})
    labels = {"condition": np.array([0, 1])}
    outputs = task._forward({"image": np.zeros((2, 3, 4, 4, 3), np.float32)}, labels, training=False)
    logs = task._update_metrics(outputs, labels, task._loss_terms(outputs))
    assert float(logs["triplet_error"]) == pytest.approx(0.5)
    assert float(logs["triplet_error_p"]) == 0.0 and float(logs["triplet_error_q"]) == 1.0


def test_fit_step_changes_every_weight_and_logs_every_metric():
    task = _task()
    history = inv.check_fit_step(task, _features(), _labels(), optimizer=keras.optimizers.Adam(1e-2))
    for name in ("loss", "triplet_loss", "embedding_norm", "mask_l1", "triplet_error",
                 "triplet_error_shape", "triplet_error_color", "triplet_error_texture"):
        assert name in history and np.isfinite(history[name][0]), name


def test_fit_step_specialists():
    model = SpecialistNetworks("conv", TINY_TRUNK, 8, 3)
    task = ConditionalTripletTask(model, INFO)
    task(_features())
    inv.check_fit_step(task, _features(), _labels())


@pytest.mark.parametrize("masks", ["learned", "fixed", "none"])
def test_export_parity_through_the_export_stage(masks, tmp_path):
    task = _task(masks)
    manifest = inv.check_export_parity(task, _features(), tmp_path)
    assert manifest["inputs"] == {"images": {"dtype": "uint8", "shape": [-1, 16, 16, 3]},
                                  "condition": {"dtype": "int32", "shape": [-1]}}
    assert set(manifest["outputs"]) == {"masked_embedding", "embedding"}
    # Served outputs are the model's on the anchors with each condition.
    inputs = task.to_serving_inputs(_features())
    np.testing.assert_array_equal(inputs["condition"], [0, 1, 2, 0, 1, 2])
    served = task.serve({k: tf.constant(v) for k, v in inputs.items()})
    direct = task({"image": inputs["images"].astype(np.float32), "condition": inputs["condition"]})
    np.testing.assert_allclose(served["masked_embedding"], direct["masked_embedding"], atol=1e-6)


def test_task_config_round_trip_and_keras_save_load(tmp_path):
    task = _task()
    config = task.get_config()
    json.dumps(config)
    assert config["margin"] == 0.2 and config["embed_weight"] == 5e-3 and config["mask_weight"] == 5e-4
    x = {"image": _features()["image"], "condition": np.array([0, 1, 2, 0, 1, 2])}
    inv.check_keras_save_load(task, x, tmp_path)


def test_pictures():
    task = _task()
    images = task.summary_images(_features(), max_images=2)["triplets_anchor_close_far"]
    assert images.shape == (2, 16, 48, 3)
    masks = task.prediction_images(_features())["masks"]
    assert masks.shape == (1, 3 * 8, 8 * 4, 3) and 0.0 <= masks.min() and masks.max() == pytest.approx(1.0)
    assert _task("none").prediction_images(_features())["masks"].min() == 1.0


def test_mismatched_notions_fail_with_one_line():
    model = ConditionalSimilarityNetwork("conv", TINY_TRUNK, 8, 4)
    with pytest.raises(ConfigError, match="model.num_conditions is 4 but the data has 3 notions"):
        ConditionalTripletTask(model, INFO)
    with pytest.raises(ConfigError, match="must be >= 0"):
        ConditionalTripletTask(ConditionalSimilarityNetwork("conv", TINY_TRUNK, 8, 3), INFO, margin=-1)
