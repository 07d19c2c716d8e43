"""The age + gender Task (IMDB-WIKI setting): losses, DEX metrics, invariants, export."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from garden.errors import ConfigError
from garden.registry import TASKS
from garden.tasks.age_gender import AgeGenderTask
from tests import invariants as inv


@keras.saving.register_keras_serializable(package="tests")
class TinyAgeGender(keras.Model):
    def __init__(self, num_ages=100, **kwargs):
        super().__init__(**kwargs)
        self.num_ages = num_ages
        self.pool = keras.layers.GlobalAveragePooling2D(dtype=self.dtype_policy)
        self.age = keras.layers.Dense(num_ages, dtype=self.dtype_policy, name="age")
        self.gender = keras.layers.Dense(2, dtype=self.dtype_policy, name="gender")

    def call(self, x, training=False):
        y = self.pool(x)
        return {"age": self.age(y), "gender": self.gender(y)}

    def get_config(self):
        return {**super().get_config(), "num_ages": self.num_ages}


def _batch():
    rng = np.random.default_rng(0)
    features = {"image": rng.uniform(0, 255, (4, 8, 8, 3)).astype(np.float32)}
    return features, {"age": np.array([25, 40, 63, -1]), "gender": np.array([0, 1, -1, 1])}


def _task(**kwargs):
    return AgeGenderTask(TinyAgeGender(), {"image_shape": [8, 8, 3]}, **kwargs)


def test_loss_by_hand_and_missing_labels():
    task = _task(loss_weights={"age": 1.0, "gender": 2.0})
    _, labels = _batch()
    pred = {"age": tf.zeros((4, 100)), "gender": tf.zeros((4, 2))}  # uniform
    loss = float(task.compute_loss(y=labels, y_pred=pred))
    assert loss == pytest.approx(np.log(100) + 2.0 * np.log(2), rel=1e-5)
    with pytest.raises(ConfigError, match="unknown head 'sex'"):
        _task(loss_weights={"sex": 1.0})


def test_fit_metrics_save_and_export(tmp_path):
    assert TASKS.get("age_gender") is AgeGenderTask
    task = _task()
    features, labels = _batch()
    history = inv.check_fit_step(task, features, labels, steps=2)
    for key in ("age_mae", "age_median_ae", "gender_accuracy", "age_loss", "gender_loss"):
        assert key in history and np.isfinite(history[key][-1]), (key, sorted(history))
    inv.check_config_round_trip(task)
    inv.check_keras_save_load(task, features, tmp_path)
    manifest = inv.check_export_parity(task, features, tmp_path / "export")
    assert set(manifest["outputs"]) == {"age", "age_probabilities", "gender", "gender_probabilities"}
    served = task.serve({"images": tf.constant(features["image"].astype(np.uint8))})
    assert served["age"].shape == (4,) and served["gender"].dtype == tf.int64
