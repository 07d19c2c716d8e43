"""Visual-variation tasks: the loss combination, labels, stripping at export, invariants."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from garden.errors import ConfigError
from garden.methods.vvl import labels as vlabels
from garden.methods.vvl.model import VisualVariationNet
from garden.methods.vvl.task import VariationEmbeddingTask, VariationTask
from garden.nn.alexnet import alexnet_bn
from tests import invariants as inv

SHAPE = (32, 32, 3)
TINY_ALEXNET = {"width_multiplier": 0.125, "fc_width": 16, "small_inputs": True}
INFO = {"num_classes": 4, "image_shape": list(SHAPE),
        "label_names": {"azimuth": [f"a{i}" for i in range(3)], "elevation": [f"e{i}" for i in range(2)],
                        "lighting": ["l0", "l1", "l2"], "label": ["c0", "c1", "c2", "c3"]}}
POSE_LIGHT = {"pose": ["azimuth", "elevation"], "lighting": ["lighting"]}


def model(variations=None, embedding_dim=0, injections=(5,)):
    return VisualVariationNet(backbone_kwargs=TINY_ALEXNET, num_classes=4, variations=variations or {},
                              injections=injections, embedding_dim=embedding_dim)


def batch(n=4, seed=0, partners=False):
    rng = np.random.default_rng(seed)
    features = {"image": rng.integers(0, 256, (n, *SHAPE)).astype("float32")}  # uint8-exact
    labels = {"label": rng.integers(0, 4, n), "azimuth": rng.integers(0, 3, n), "elevation": rng.integers(0, 2, n),
              "lighting": rng.integers(0, 3, n)}
    if partners:
        labels["image_positive"] = rng.uniform(0, 255, (n, *SHAPE)).astype("float32")
        labels["image_negative"] = rng.uniform(0, 255, (n, *SHAPE)).astype("float32")
    return features, labels


def ce(labels, logits):
    return float(np.mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)))


def test_pose_id_is_mixed_radix():
    pose = vlabels.combine({"azimuth": np.array([0, 2, 1]), "elevation": np.array([1, 0, 1])},
                           ["azimuth", "elevation"], [3, 2])
    np.testing.assert_array_equal(np.asarray(pose), [1, 4, 3])  # azimuth * 2 + elevation


@pytest.mark.parametrize("alpha", [0.5, 2 / 3])
def test_loss_is_the_weighted_sum(alpha):
    """A.3: (1 - alpha) L_class + alpha L_var; two variations share alpha (2/3 -> 1/3 each, I_[5]+LP)."""
    task = VariationTask(model({"pose": 6, "lighting": 3}), INFO, alpha=alpha, variations=POSE_LIGHT)
    x, y = batch()
    out = task(x, training=False)
    loss = float(task.compute_loss(x, y, out, training=False))
    pose = y["azimuth"] * 2 + y["elevation"]
    expected = (1 - alpha) * ce(y["label"], out["logits"]) + alpha / 2 * (
        ce(pose, out["pose_logits"]) + ce(y["lighting"], out["lighting_logits"]))
    assert loss == pytest.approx(expected, rel=1e-5)


def test_baseline_is_plain_classification():
    task = VariationTask(model(), INFO, alpha=0.0, variations={})
    x, y = batch()
    out = task(x, training=False)
    assert set(out) == {"logits"}
    assert float(task.compute_loss(x, y, out, training=False)) == pytest.approx(ce(y["label"], out["logits"]), rel=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    ({"alpha": 1.0}, "task.alpha must be in"),
    ({"variations": {"pose": ["azimuth"]}}, r"model.variations.pose: 6 classes, but .* has 3 = 3"),
    ({"variations": {"light": ["lighting"]}}, "must name the model's variation heads"),
    ({"variations": {"pose": ["azimuth", "focus"]}}, "task.variation_sizes.focus"),
])
def test_bad_task_settings_fail_in_one_line(kwargs, message):
    with pytest.raises(ConfigError, match=message) as error:
        VariationTask(model({"pose": 6}), INFO, **{"variations": {"pose": ["azimuth", "elevation"]}, **kwargs})
    assert "\n" not in str(error.value)


def test_alpha_needs_an_auxiliary_task():
    with pytest.raises(ConfigError, match="needs an auxiliary task"):
        VariationTask(model(), INFO, alpha=0.5, variations={})


def test_variation_sizes_override_missing_class_names():
    info = {**INFO, "label_names": {}}
    task = VariationTask(model({"pose": 6}), info, variations={"pose": ["azimuth", "elevation"]},
                         variation_sizes={"azimuth": 3, "elevation": 2})
    assert task._sizes == {"pose": [3, 2]}


def _count(variables) -> int:
    """Parameters among a SavedModel's variables (dropout's integer seed states left out)."""
    return int(sum(np.prod(v.shape) for v in variables if v.dtype.is_floating))


def test_export_strips_the_auxiliary_heads(tmp_path):
    """The exported SavedModel holds exactly the baseline's parameters and matches Keras."""
    task = VariationTask(model({"pose": 6, "lighting": 3}, injections=(1, 3, 5)), INFO, variations=POSE_LIGHT)
    x, y = batch()
    inv.check_fit_step(task, x, y)
    baseline = alexnet_bn(num_classes=4, **TINY_ALEXNET)
    baseline(x["image"][:1])
    assert task.export_model().count_params() == baseline.count_params()
    assert task.model.count_params() > baseline.count_params()
    manifest = inv.check_export_parity(task, x, tmp_path)
    loaded = tf.saved_model.load(os.path.join(tmp_path, "export", manifest["artifacts"]["saved_model"]))
    assert _count(loaded.variables) == baseline.count_params()
    assert set(manifest["outputs"]) == {"probabilities", "class_id"}
    served = loaded.signatures["serving_default"](images=tf.constant(np.uint8(x["image"])))
    np.testing.assert_allclose(served["probabilities"].numpy(),
                               tf.nn.softmax(task(x, training=False)["logits"]).numpy(), atol=1e-4)


def test_task_invariants(tmp_path):
    task = VariationTask(model({"pose": 6}), INFO, alpha=0.8, variations={"pose": ["azimuth", "elevation"]})
    x, y = batch()
    task(x)
    revived = inv.check_config_round_trip(task)
    assert revived.alpha == 0.8 and revived.variations == {"pose": ["azimuth", "elevation"]}
    history = inv.check_fit_step(task, x, y)
    assert {"class_loss", "pose_loss", "pose_accuracy", "accuracy"} <= set(history)
    inv.check_keras_save_load(task, x, tmp_path)


@pytest.mark.parametrize("loss_name", ["triplet", "contrastive"])
def test_embedding_loss_by_hand(loss_name):
    """A.3: triplet [|a-p|^2 - |a-n|^2 + 1]_+; Siamese 1/2 D^2 (similar), 1/2 max(0, 0.5 - D)^2."""
    task = VariationEmbeddingTask(model(embedding_dim=3), INFO, embedding_loss=loss_name, alpha=0.5)
    x, y = batch(partners=True)
    out = task(x, training=False)
    loss = float(task.compute_loss(x, y, out, training=False))
    a = out["embedding"].numpy()
    pn = task.model(task.preprocess(np.concatenate([y["image_positive"], y["image_negative"]])))["embedding"]
    p, n = np.split(pn.numpy(), 2)
    d_p, d_n = np.sum((a - p) ** 2, 1), np.sum((a - n) ** 2, 1)
    if loss_name == "triplet":
        aux = np.mean(np.maximum(d_p - d_n + 1.0, 0))
    else:
        aux = np.mean(0.5 * (0.5 * d_p + 0.5 * np.maximum(0.5 - np.sqrt(d_n), 0) ** 2))
    expected = 0.5 * ce(y["label"], out["logits"]) + 0.5 * aux
    assert loss == pytest.approx(expected, rel=1e-4)
    assert task.margin == {"triplet": 1.0, "contrastive": 0.5}[loss_name]


def test_embedding_task_trains_and_exports(tmp_path):
    task = VariationEmbeddingTask(model({"pose": 6}, embedding_dim=4), INFO, variations={"pose": ["azimuth", "elevation"]})
    x, y = batch(partners=True)
    history = inv.check_fit_step(task, x, y)
    assert {"embedding_loss", "triplet_accuracy", "pose_loss"} <= set(history)
    assert inv.check_config_round_trip(task).embedding_loss == "triplet"
    inv.check_keras_save_load(task, x, tmp_path, filename="embedding.keras")
    manifest = inv.check_export_parity(task, x, tmp_path)
    loaded = tf.saved_model.load(os.path.join(tmp_path, "export", manifest["artifacts"]["saved_model"]))
    assert _count(loaded.variables) == task.export_model().count_params()
    assert json.loads((tmp_path / "export" / "manifest.json").read_text())["parity"]["onnx"]["max_abs_diff_overall"] <= 1e-4


def test_embedding_task_needs_partners_and_a_head():
    with pytest.raises(ConfigError, match="model.embedding_dim"):
        VariationEmbeddingTask(model(), INFO)
    with pytest.raises(ConfigError, match="embedding_loss"):
        VariationEmbeddingTask(model(embedding_dim=2), INFO, embedding_loss="npair")
    task = VariationEmbeddingTask(model(embedding_dim=2), INFO)
    x, y = batch()
    with pytest.raises(ConfigError, match="vvl_triplets"):
        task.compute_loss(x, y, task(x), training=False)
