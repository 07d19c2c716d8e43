"""Optimisers, schedules, weight decay, clipping and per-group learning-rate multipliers."""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from garden import optim
from garden.config import ScheduleConfig, TrainerConfig
from garden.errors import ConfigError


def _values(schedule, steps):
    return [float(schedule(step)) for step in steps]


# ----------------------------------------------------------------------------------------------
# schedules
# ----------------------------------------------------------------------------------------------


def test_constant_and_step():
    assert _values(optim.ConstantSchedule(0.1), [0, 50]) == pytest.approx([0.1, 0.1])
    step = optim.StepSchedule(1.0, [10, 20], 0.1)
    assert _values(step, [0, 9, 10, 19, 20, 100]) == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_cosine_and_poly():
    cosine = optim.CosineSchedule(1.0, decay_steps=100, alpha=0.1, offset=10)
    assert _values(cosine, [0, 10, 60, 110, 500]) == pytest.approx([1.0, 1.0, 0.55, 0.1, 0.1], abs=1e-6)
    poly = optim.PolySchedule(1.0, decay_steps=100, power=2.0)
    assert _values(poly, [0, 50, 100]) == pytest.approx([1.0, 0.25, 0.0], abs=1e-6)


def test_warmup_ramps_linearly_into_the_schedule():
    schedule = optim.LinearWarmup(optim.CosineSchedule(1.0, decay_steps=90, offset=10), warmup_steps=10)
    assert _values(schedule, [0, 4, 9]) == pytest.approx([0.1, 0.5, 1.0])
    assert float(schedule(10)) == pytest.approx(1.0)
    assert float(schedule(100)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("schedule", [
    optim.ConstantSchedule(0.1),
    optim.StepSchedule(0.1, [5, 9], 0.5),
    optim.CosineSchedule(0.1, 100, 0.01, 3),
    optim.PolySchedule(0.1, 100, 0.9, 0.0, 3),
    optim.LinearWarmup(optim.CosineSchedule(0.1, 100), 5),
    optim.ScaledSchedule(optim.LinearWarmup(optim.StepSchedule(0.1, [5]), 2), 100.0),
], ids=lambda s: type(s).__name__)
def test_schedule_serialisation_round_trip(schedule):
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert type(restored) is type(schedule)
    assert restored.get_config() == schedule.get_config()
    assert _values(restored, [0, 3, 7, 50]) == pytest.approx(_values(schedule, [0, 3, 7, 50]))


def test_build_schedule_converts_epochs_to_steps():
    cfg = ScheduleConfig(name="step", boundaries=[2, 3.5], decay_factor=0.1, warmup_epochs=0.5)
    schedule = optim.build_schedule(cfg, 1.0, steps_per_epoch=10, total_steps=50)
    assert isinstance(schedule, optim.LinearWarmup) and schedule.warmup_steps == 5
    assert schedule.schedule.boundaries == [20, 35]
    assert _values(schedule, [0, 4, 19, 20, 35]) == pytest.approx([0.2, 1.0, 1.0, 0.1, 0.01])
    cosine = optim.build_schedule(ScheduleConfig(name="cosine", warmup_steps=10), 1.0, steps_per_epoch=10,
                                  total_steps=110)
    assert cosine.schedule.offset == 10 and cosine.schedule.decay_steps == 100
    with pytest.raises(ConfigError, match="warm-up"):
        optim.build_schedule(ScheduleConfig(name="constant", warmup_epochs=5), 1.0, steps_per_epoch=10,
                             total_steps=50)


# ----------------------------------------------------------------------------------------------
# optimisers
# ----------------------------------------------------------------------------------------------


def _trainer(**optimizer):
    return TrainerConfig.model_validate({"epochs": 1, "optimizer": optimizer})


def _two_layer_model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="a"), keras.layers.Dense(1, name="b")])
    return model


def _one_step(model, optimizer, x=None, y=None):
    """One step on a fixed batch; returns {path: (before, grad, after)} as numpy."""
    x = np.array([[1.0, -2.0, 0.5], [0.3, 0.1, -1.0]], np.float32) if x is None else x
    y = np.array([[1.0], [-1.0]], np.float32) if y is None else y
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean((model(x) - y) ** 2)
    grads = tape.gradient(loss, model.trainable_variables)
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    optimizer.apply(grads, model.trainable_variables)
    return {v.path: (before[v.path], g.numpy(), v.numpy()) for v, g in zip(model.trainable_variables, grads)}


@pytest.mark.parametrize("name, cls, attrs", [
    ("sgd", optim.SGD, {"momentum": 0.8, "nesterov": True}),
    ("adam", optim.Adam, {"beta_1": 0.8, "beta_2": 0.99}),
    ("adamw", optim.AdamW, {"beta_1": 0.8, "weight_decay": 0.05}),
])
def test_build_optimizer_kinds(name, cls, attrs):
    opt = optim.build_optimizer(_trainer(name=name, learning_rate=0.01, **attrs), steps_per_epoch=10)
    assert isinstance(opt, cls)
    assert isinstance(opt, {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam,
                            "adamw": keras.optimizers.AdamW}[name])
    for key, value in attrs.items():
        assert getattr(opt, key) == pytest.approx(value)
    assert float(opt.learning_rate) == pytest.approx(0.01)
    serialized = keras.saving.serialize_keras_object(opt)
    restored = keras.saving.deserialize_keras_object(json.loads(json.dumps(serialized)))
    assert type(restored) is cls and keras.saving.serialize_keras_object(restored) == serialized


def test_decoupled_weight_decay_skips_biases_and_norms():
    model = _two_layer_model()
    opt = optim.build_optimizer(_trainer(name="sgd", learning_rate=0.1, momentum=0.0, weight_decay=0.5),
                                steps_per_epoch=1, variables=model.trainable_variables)
    zero = [tf.zeros_like(v) for v in model.trainable_variables]
    before = [v.numpy().copy() for v in model.trainable_variables]
    opt.apply(zero, model.trainable_variables)
    for v, b in zip(model.trainable_variables, before):
        expected = b if len(v.shape) == 1 else b * (1 - 0.1 * 0.5)
        np.testing.assert_allclose(v.numpy(), expected, rtol=1e-6, err_msg=v.path)


@pytest.mark.parametrize("clip", [{"clipnorm": 0.01}, {"clipvalue": 0.001}, {"global_clipnorm": 0.01}])
def test_gradient_clipping(clip):
    model = _two_layer_model()
    opt = optim.build_optimizer(_trainer(name="sgd", learning_rate=1.0, momentum=0.0, **clip), steps_per_epoch=1)
    step = _one_step(model, opt)
    deltas = {k: b - a for k, (b, g, a) in step.items()}
    grads = {k: g for k, (b, g, a) in step.items()}
    if "clipnorm" in clip:
        for k in deltas:
            scale = min(1.0, 0.01 / np.linalg.norm(grads[k]))
            np.testing.assert_allclose(deltas[k], grads[k] * scale, rtol=1e-4, atol=2e-7)
    elif "clipvalue" in clip:
        for k in deltas:
            np.testing.assert_allclose(deltas[k], np.clip(grads[k], -0.001, 0.001), rtol=1e-4, atol=2e-7)
    else:
        norm = math.sqrt(sum(float(np.sum(g ** 2)) for g in grads.values()))
        for k in deltas:
            np.testing.assert_allclose(deltas[k], grads[k] * min(1.0, 0.01 / norm), rtol=1e-4, atol=2e-7)


def test_lr_multiplier_group_moves_100x_further():
    model = _two_layer_model()
    trainer = TrainerConfig.model_validate({
        "epochs": 1, "optimizer": {"name": "sgd", "learning_rate": 0.01, "momentum": 0.0},
        "lr_multipliers": [{"pattern": "/b/", "multiplier": 100.0}]})
    opt = optim.build_optimizer(trainer, steps_per_epoch=1, variables=model.trainable_variables)
    assert isinstance(opt, keras.optimizers.MultiOptimizer)
    step = _one_step(model, opt)
    for path, (before, grad, after) in step.items():
        factor = 100.0 if "/b/" in path else 1.0
        np.testing.assert_allclose(before - after, 0.01 * factor * grad, rtol=1e-4, atol=2e-7, err_msg=path)
    moved = {p: np.abs(b - a).sum() / np.abs(g).sum() for p, (b, g, a) in step.items()}
    ratio = moved[next(p for p in moved if "/b/" in p)] / moved[next(p for p in moved if "/a/" in p)]
    assert ratio == pytest.approx(100.0, rel=1e-3)
    rates = optim.learning_rates(opt)
    assert rates == pytest.approx({"learning_rate_sgd_default": 0.01, "learning_rate_sgd_group0": 1.0})


def test_lr_multipliers_first_match_wins_and_joint_global_clipnorm():
    model = _two_layer_model()
    trainer = TrainerConfig.model_validate({
        "epochs": 1, "optimizer": {"name": "sgd", "learning_rate": 1.0, "momentum": 0.0, "global_clipnorm": 0.01},
        "lr_multipliers": [{"pattern": "b/kernel", "multiplier": 2.0}, {"pattern": "/b/", "multiplier": 0.0}]})
    opt = optim.build_optimizer(trainer, steps_per_epoch=1, variables=model.trainable_variables)
    step = _one_step(model, opt)
    norm = math.sqrt(sum(float(np.sum(g ** 2)) for _, g, _ in step.values()))
    for path, (before, grad, after) in step.items():
        factor = 2.0 if path.endswith("b/kernel") else (0.0 if "/b/" in path else 1.0)
        np.testing.assert_allclose(before - after, factor * grad * min(1.0, 0.01 / norm), rtol=1e-4, atol=2e-7,
                                   err_msg=path)


def test_lr_multiplier_pattern_must_match_a_variable():
    model = _two_layer_model()
    trainer = TrainerConfig.model_validate({"epochs": 1, "lr_multipliers": [{"pattern": "nddr", "multiplier": 100}]})
    with pytest.raises(ConfigError, match=r"lr_multipliers\.0\.pattern: 'nddr' matches no trainable variable"):
        optim.build_optimizer(trainer, steps_per_epoch=1, variables=model.trainable_variables)


def test_grouped_optimizer_state_saves_and_loads(tmp_path):
    def build():
        model = _two_layer_model()
        trainer = TrainerConfig.model_validate({
            "epochs": 1, "optimizer": {"name": "sgd", "learning_rate": 0.01, "momentum": 0.9},
            "lr_multipliers": [{"pattern": "/b/", "multiplier": 10.0}]})
        model.compile(optimizer=optim.build_optimizer(trainer, steps_per_epoch=1,
                                                      variables=model.trainable_variables), loss="mse")
        model.optimizer.build(model.trainable_variables)
        return model

    x, y = np.ones((4, 3), np.float32), np.ones((4, 1), np.float32)
    model = build()
    model.fit(x, y, epochs=2, verbose=0)
    model.save_weights(tmp_path / "w.weights.h5")
    other = build()
    other.load_weights(tmp_path / "w.weights.h5")
    for a, b in zip(model.optimizer.variables, other.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    model.fit(x, y, epochs=1, verbose=0)
    other.fit(x, y, epochs=1, verbose=0)
    for a, b in zip(model.weights, other.weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
