"""The trainer's callbacks: exact resume, best checkpoint, NaN guard, throughput."""

from __future__ import annotations

import json
import time
import types

import keras
import numpy as np
import pytest

from garden import callbacks as cb
from garden import trainer
from garden.errors import ConfigError
from tests.test_trainer import make_config, model_arrays, use_fake_source, weights_digest


@pytest.fixture
def fake_source(monkeypatch):
    use_fake_source(monkeypatch)


class _Crash(keras.callbacks.Callback):
    """Raises at a global step: an in-process stand-in for a killed run."""

    def __init__(self, step: int):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations) == self.step:
            raise KeyboardInterrupt(f"crash at step {self.step}")


@pytest.mark.parametrize("steps_per_execution, backup_every, crash_at, resume_at", [
    (1, 3, 7 + 16, (1, 6)),   # epoch 2, one step after the backup at its 6th step
    (2, 4, 10 + 16, (1, 8)),  # two steps per execution
    (1, "epoch", 5 + 16, (1, 0)),  # backups at epoch ends only
], ids=["every-3", "steps-per-execution-2", "epoch"])
def test_crash_and_resume_matches_an_uninterrupted_run(fake_source, tmp_path, capsys, steps_per_execution,
                                                       backup_every, crash_at, resume_at):
    config = make_config(
        trainer={"epochs": 2, "deterministic": True, "seed": 2, "steps_per_execution": steps_per_execution,
                 "checkpoint": {"monitor": "val_accuracy", "backup_every": backup_every},
                 "tensorboard": {"enabled": False}},
        data={"batch_size": 4, "augment": {"horizontal_flip": True, "crop_padding": 1}})
    workdir = tmp_path / "crashed"
    with pytest.raises(KeyboardInterrupt):
        trainer.train_and_evaluate(config, workdir, callbacks=[_Crash(crash_at)])
    state = cb.read_backup_state(str(workdir / "backup"))
    assert (state.epoch, state.step_in_epoch) == resume_at and not state.finished
    capsys.readouterr()
    resumed = trainer.train_and_evaluate(config, workdir)
    assert f"resuming from the backup at epoch {resume_at[0] + 1}, step {resume_at[1]}" in capsys.readouterr().out
    assert resumed["global_step"] == 2 * 16 and resumed["resumed_from_step"] == resume_at[0] * 16 + resume_at[1]
    reference = trainer.train_and_evaluate(config, tmp_path / "reference")
    assert weights_digest(workdir / "backup" / "latest.weights.h5") == \
        weights_digest(tmp_path / "reference" / "backup" / "latest.weights.h5")
    assert resumed["test"] == reference["test"]
    # The epochs after the resumed one are whole: the best checkpoint saw the same validation figures.
    assert json.loads((workdir / "checkpoints" / "best.json").read_text())["value"] == \
        json.loads((tmp_path / "reference" / "checkpoints" / "best.json").read_text())["value"]


def test_backup_with_other_steps_per_epoch_is_refused(fake_source, tmp_path):
    trainer.train_and_evaluate(make_config(trainer={"epochs": 1}), tmp_path)
    with pytest.raises(ConfigError, match="steps_per_epoch"):
        trainer.train_and_evaluate(make_config(trainer={"epochs": 1, "steps_per_epoch": 3}), tmp_path)


def test_no_backup_and_no_best_checkpoint_after_nan(fake_source, tmp_path):
    """The last backup and the best checkpoint hold finite weights when the guard fires."""
    config = make_config(trainer={"epochs": 2, "checkpoint": {"monitor": "val_accuracy", "backup_every": 1}})
    trainer.train_and_evaluate(config, tmp_path / "ok")  # a finite run to copy the backup from
    bad = make_config(trainer={"epochs": 3, "optimizer": {"name": "sgd", "learning_rate": 1e30},
                               "checkpoint": {"monitor": "val_accuracy", "backup_every": 1}})
    with pytest.raises(trainer.TrainingDiverged):
        trainer.train_and_evaluate(bad, tmp_path / "bad")
    backup = tmp_path / "bad" / "backup" / "latest.weights.h5"
    if backup.exists():
        assert all(np.all(np.isfinite(v)) for v in model_arrays(backup).values())
    best = tmp_path / "bad" / "checkpoints" / "best.weights.h5"
    if best.exists():
        assert all(np.all(np.isfinite(v)) for v in model_arrays(best).values())


def test_read_backup_state_absent(tmp_path):
    assert cb.read_backup_state(str(tmp_path / "nothing")) is None


@pytest.mark.parametrize("monitor, mode", [
    ("val_loss", "min"), ("val_accuracy", "max"), ("top5_accuracy", "max"), ("val_miou", "max"),
    ("val_mean_iou", "max"), ("val_cross_entropy", "min"), ("val_ap", "max"), ("val_box_loss", "min"),
])
def test_resolve_mode(monitor, mode):
    assert cb.resolve_mode(monitor) == mode
    assert cb.resolve_mode(monitor, "min") == "min"


class _Model(keras.Model):
    """The least a callback needs: weights to save, an optimizer with iterations."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(1)
        self.optimizer = types.SimpleNamespace(iterations=np.int64(7))
        self.stop_training = False

    def call(self, x):
        return self.dense(x)


def _model():
    model = _Model()
    model(np.zeros((1, 2), np.float32))
    return model


def test_best_checkpoint_keeps_the_best_and_survives_a_restart(tmp_path):
    path = str(tmp_path / "checkpoints" / "best.weights.h5")
    model = _model()
    callback = cb.BestCheckpoint(path, monitor="val_accuracy")
    callback.set_model(model)
    callback.on_train_begin()
    for epoch, value in enumerate([0.5, 0.7, float("nan"), 0.6]):
        callback.on_epoch_end(epoch, {"val_accuracy": value, "loss": 1.0})
    info = json.loads((tmp_path / "checkpoints" / "best.json").read_text())
    assert (info["value"], info["epoch"], info["mode"]) == (0.7, 2, "max")
    # A resumed run remembers the best value: 0.65 does not replace 0.7.
    again = cb.BestCheckpoint(path, monitor="val_accuracy")
    again.set_model(model)
    again.on_train_begin()
    assert again.best == 0.7
    again.on_epoch_end(4, {"val_accuracy": 0.65})
    assert json.loads((tmp_path / "checkpoints" / "best.json").read_text())["epoch"] == 2


def test_best_checkpoint_without_the_monitored_metric_saves_the_last_weights(tmp_path, caplog):
    path = tmp_path / "best.weights.h5"
    callback = cb.BestCheckpoint(str(path), monitor="val_accuracy")
    callback.set_model(_model())
    callback.on_train_begin()
    callback.on_epoch_end(0, {"loss": 1.0})
    assert not path.exists()
    callback.on_train_end({"loss": 1.0})
    assert path.exists()
    assert "never appeared" in caplog.text
    assert json.loads((tmp_path / "best.json").read_text())["last"] is True


def test_nan_guard_message_and_stop():
    model = _model()
    guard = cb.NaNGuard()
    guard.set_model(model)
    guard.on_epoch_begin(1)
    guard.on_train_batch_end(3, {"loss": 0.5})
    assert guard.message is None and not model.stop_training
    guard.on_train_batch_end(4, {"loss": float("inf")})
    assert model.stop_training
    assert guard.message.startswith("training diverged: loss is inf at epoch 2, batch 5 (global step 7)")
    assert "learning_rate" in guard.message


def test_throughput_measures_examples_per_second():
    callback = cb.Throughput(global_batch_size=32)
    callback.on_epoch_begin(0)
    for batch in range(4):
        time.sleep(0.02)
        callback.on_train_batch_end(batch)
    logs = {}
    callback.on_epoch_end(0, logs)
    # 3 batches of 32 after the first one, in about 3 x 20 ms.
    assert 32 * 3 / 0.2 < logs["examples_per_second"] < 32 * 3 / 0.055
    assert callback.rates == [logs["examples_per_second"]]
