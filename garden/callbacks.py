"""The trainer's callbacks: backup and exact resume, best checkpoint, NaN guard, throughput, images.

`train_and_evaluate` uses, in this order (Keras appends its History and progress bar last):

    NaNGuard            stop (and make the trainer raise TrainingDiverged) at a non-finite loss
    SyncReplicaStatistics
                        (several replicas) average BatchNorm moving statistics over the replicas
    Throughput          examples/s per epoch -> logs["examples_per_second"] (TensorBoard, progress bar)
    ExactBackupAndRestore
                        keras.callbacks.BackupAndRestore that resumes mid-epoch exactly
    BestCheckpoint      <workdir>/checkpoints/best.weights.h5 by the monitored metric (+ best.json)
    TaskImages          a few input images into tensorboard/train at the start (and, for dense
                        tasks, prediction images after every epoch)
    keras.callbacks.TensorBoard
                        tensorboard/train and tensorboard/validation scalars (+ learning rate)
    StepLogger          a text line every N steps (trainer.log_every > 0)

Exact resume. Keras' BackupAndRestore restores the weights and the optimiser but restarts the
interrupted epoch from its first batch, so a run killed mid-epoch would train some batches
twice. Here the backup (one `.weights.h5`, written to a temporary name and renamed, so a kill
never leaves a half-written backup) records the global step in its HDF5 attributes; the trainer
skips that many batches of its (deterministic, repeated) training stream, and this callback ends
the resumed epoch after the batches it still lacked. With `trainer.deterministic` the resumed run
ends with the same weights as one that was never interrupted.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
import time
from dataclasses import asdict, dataclass

import keras
import numpy as np

from garden.atomic import write_json
# TrainingDiverged lives with the user-facing errors so the CLI catches it without importing TF.
from garden.errors import TrainingDiverged

__all__ = ["TrainingDiverged", "BackupState", "read_backup_state", "NaNGuard", "Throughput",
           "ExactBackupAndRestore", "SyncReplicaStatistics", "BestCheckpoint", "TaskImages", "StepLogger", "resolve_mode",
           "BACKUP_WEIGHTS", "BACKUP_METADATA"]

log = logging.getLogger(__name__)

BACKUP_WEIGHTS = "latest.weights.h5"
BACKUP_METADATA = "training_metadata.json"
_ATTR_PREFIX = "garden_"


def _diverged(model) -> str | None:
    return getattr(model, "_garden_diverged", None)


# ----------------------------------------------------------------------------------------------
# NaN guard
# ----------------------------------------------------------------------------------------------


class NaNGuard(keras.callbacks.Callback):
    """Stop training at the first non-finite loss, with a message that says where and what to try.

    The trainer raises `TrainingDiverged(guard.message)` after `fit` returns; the backup and best
    checkpoint keep the last finite state (they do not save once the guard has fired).
    """

    def __init__(self, key: str = "loss"):
        super().__init__()
        self.key = key
        self.message: str | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.message is not None or not logs or self.key not in logs:
            return
        value = float(np.asarray(logs[self.key]))
        if math.isfinite(value):
            return
        step = _global_step(self.model)
        self.message = (
            f"training diverged: {self.key} is {value} at epoch {self._epoch + 1}, batch {batch + 1} "
            f"(global step {step}); the weights of the last backup and best checkpoint are finite. "
            "Try a lower trainer.optimizer.learning_rate, a warm-up (trainer.schedule.warmup_epochs), "
            "gradient clipping (trainer.optimizer.global_clipnorm), or check the data for NaNs")
        self.model._garden_diverged = self.message
        self.model.stop_training = True
        print(f"\n{self.message}", file=sys.stderr, flush=True)


def _global_step(model) -> int:
    try:
        return int(np.asarray(model.optimizer.iterations))
    except Exception:  # noqa: BLE001 - only for messages
        return -1


# ----------------------------------------------------------------------------------------------
# throughput
# ----------------------------------------------------------------------------------------------


class Throughput(keras.callbacks.Callback):
    """Training examples per second, per epoch: `logs["examples_per_second"]`.

    Timed from the end of the epoch's first execution to the end of its last, so tracing and
    compilation (first epoch) and validation are left out. `rates` keeps one figure per epoch.
    """

    def __init__(self, global_batch_size: int, key: str = "examples_per_second"):
        super().__init__()
        self.global_batch_size = int(global_batch_size)
        self.key = key
        self.rates: list[float] = []
        self._start = self._last = None
        self._first_batch = self._last_batch = None
        self._epoch_start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = self._last = None
        self._first_batch = self._last_batch = None
        self._epoch_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if self._start is None:
            self._start, self._first_batch = now, batch
        self._last, self._last_batch = now, batch

    @property
    def current(self) -> float | None:
        """The rate so far in this epoch (None before the second execution)."""
        if self._start is None or self._last_batch == self._first_batch or self._last <= self._start:
            return None
        return (self._last_batch - self._first_batch) * self.global_batch_size / (self._last - self._start)

    def on_epoch_end(self, epoch, logs=None):
        rate = self.current
        if rate is None and self._last is not None and self._last_batch is not None:
            # A single execution this epoch: time the whole epoch up to its last batch.
            rate = (self._last_batch + 1) * self.global_batch_size / max(self._last - self._epoch_start, 1e-9)
        if rate is not None:
            self.rates.append(rate)
            if logs is not None:
                logs[self.key] = rate


# ----------------------------------------------------------------------------------------------
# backup and exact resume
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupState:
    """Where a backup was taken: `epoch` (0-based, the epoch in progress or the next one),
    `step_in_epoch` (batches of that epoch already trained), `global_step` and the run's
    `steps_per_epoch`; `finished` once the last epoch ended."""

    epoch: int
    step_in_epoch: int
    global_step: int
    steps_per_epoch: int
    finished: bool = False


def read_backup_state(backup_dir: str) -> BackupState | None:
    """The state recorded in `<backup_dir>/latest.weights.h5`, or None when there is no backup."""
    path = os.path.join(backup_dir, BACKUP_WEIGHTS)
    if not os.path.exists(path):
        return None
    import h5py

    try:
        with h5py.File(path, "r") as f:
            attrs = {k[len(_ATTR_PREFIX):]: f.attrs[k] for k in f.attrs if k.startswith(_ATTR_PREFIX)}
    except OSError as e:
        raise OSError(f"the backup {path} cannot be read ({e}); delete {backup_dir} to start afresh") from None
    if not attrs:  # a plain Keras backup: whole epochs only
        meta_path = os.path.join(backup_dir, BACKUP_METADATA)
        epoch = 0
        if os.path.exists(meta_path):
            with open(meta_path) as f:
                epoch = int(json.load(f).get("epoch", 0))
        return BackupState(epoch=epoch, step_in_epoch=0, global_step=-1, steps_per_epoch=-1)
    return BackupState(epoch=int(attrs["epoch"]), step_in_epoch=int(attrs["step_in_epoch"]),
                       global_step=int(attrs["global_step"]), steps_per_epoch=int(attrs["steps_per_epoch"]),
                       finished=bool(attrs.get("finished", False)))


class ExactBackupAndRestore(keras.callbacks.BackupAndRestore):
    """BackupAndRestore that resumes a killed run at the exact step (see the module docstring).

    Saves every `save_freq` steps (an int) and at the end of every epoch; `save_freq="epoch"`
    saves at epoch ends only. The trainer must feed `fit` a training stream that skips
    `state.global_step` batches; `state` is the `read_backup_state` the trainer used.
    The backup is kept when training ends (`delete_checkpoint=False`), so running a finished
    experiment again restores its final state instead of training again.
    """

    def __init__(self, backup_dir: str, *, steps_per_epoch: int, save_freq="epoch",
                 state: BackupState | None = None, delete_checkpoint: bool = False, before_save=None):
        super().__init__(backup_dir, save_freq=save_freq, delete_checkpoint=delete_checkpoint)
        self.steps_per_epoch = int(steps_per_epoch)
        self.before_save = before_save
        self.state = state
        self._resume_epoch = state.epoch if state else None
        self._offset = 0
        self._last_save = 0
        self._epoch = 0
        self._trimmed = False
        self.restored = False

    # -- restore -----------------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        if self.state is None or not os.path.exists(self._weights_path):
            return
        if not self.model.built:
            raise ValueError("ExactBackupAndRestore needs a built model")
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(self._weights_path)
        self.model._initial_epoch = self.state.epoch
        self.restored = True

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._offset = self.state.step_in_epoch if (self.state and epoch == self._resume_epoch) else 0
        self._last_save = self._offset
        self._trimmed = False

    def on_train_batch_end(self, batch, logs=None):
        done = self._offset + batch + 1  # batches of this epoch trained so far
        if isinstance(self.save_freq, int) and done - self._last_save >= self.save_freq \
                and done < self.steps_per_epoch:
            self._last_save = done
            self._save(self._epoch, done)
        if self._offset and done >= self.steps_per_epoch and not self.model.stop_training:
            # The resumed epoch had `offset` batches already: end it after the rest.
            self._trimmed = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self._trimmed and not _diverged(self.model):
            self.model.stop_training = False
        self._trimmed = False
        final = epoch + 1 >= self.params.get("epochs", epoch + 1) if self.params else False
        self._save(epoch + 1, 0, finished=final)

    def on_train_end(self, logs=None):
        if self.delete_checkpoint and not _diverged(self.model) and os.path.exists(self.backup_dir):
            import shutil

            shutil.rmtree(self.backup_dir)

    # -- save --------------------------------------------------------------------------------

    def _save(self, epoch: int, step_in_epoch: int, finished: bool = False) -> None:
        if _diverged(self.model):
            return
        import h5py

        if self.before_save is not None:
            self.before_save()
        os.makedirs(self.backup_dir, exist_ok=True)
        state = BackupState(epoch=epoch, step_in_epoch=step_in_epoch,
                            global_step=epoch * self.steps_per_epoch + step_in_epoch,
                            steps_per_epoch=self.steps_per_epoch, finished=finished)
        tmp = os.path.join(self.backup_dir, ".saving." + BACKUP_WEIGHTS)
        self.model.save_weights(tmp, overwrite=True)
        with h5py.File(tmp, "a") as f:
            for key, value in asdict(state).items():
                f.attrs[_ATTR_PREFIX + key] = value
        os.replace(tmp, self._weights_path)
        # Keras' own metadata file, for humans and for keras.callbacks.BackupAndRestore.
        write_json(self._training_metadata_path, {"epoch": epoch, "batch": step_in_epoch, **asdict(state)})

    def _save_model(self):  # Keras' hook: always go through _save
        self._save(self._epoch, 0)


class SyncReplicaStatistics(keras.callbacks.Callback):
    """Average the replicas' own statistics (BatchNormalization moving mean/variance) before
    validation and at the end of each epoch, so that evaluation, checkpoints and every worker
    see the same values. Place it before the checkpoint callbacks."""

    def __init__(self, strategy):
        super().__init__()
        self.strategy = strategy

    def _sync(self):
        from garden.distribute import sync_replica_variables

        sync_replica_variables(self.model, self.strategy)

    def on_test_begin(self, logs=None):
        self._sync()

    def on_epoch_end(self, epoch, logs=None):
        self._sync()


# ----------------------------------------------------------------------------------------------
# best checkpoint
# ----------------------------------------------------------------------------------------------

_HIGHER_SUBSTRINGS = ("acc", "iou", "auc", "precision", "recall", "f1", "psnr", "ssim")
_HIGHER_TOKENS = re.compile(r"(ap|map|pq|vpq|dvpq|stq|top)\d*")
_LOWER_TOKENS = ("loss", "error", "err", "mae", "mse", "rmse", "angle", "entropy")


def resolve_mode(monitor: str, mode: str = "auto") -> str:
    """'min' or 'max' for `monitor`; 'auto' is 'max' for accuracy-like names (accuracy, IoU, AP,
    PQ, top-k ...), else 'min' (losses, errors)."""
    if mode in ("min", "max"):
        return mode
    name = monitor[4:] if monitor.startswith("val_") else monitor
    tokens = [t for t in re.split(r"[^a-z0-9]+", name.lower()) if t]
    if any(t in _LOWER_TOKENS for t in tokens):
        return "min"
    if any(sub in t for t in tokens for sub in _HIGHER_SUBSTRINGS) or any(_HIGHER_TOKENS.fullmatch(t) for t in tokens):
        return "max"
    return "min"


class BestCheckpoint(keras.callbacks.Callback):
    """Keep `filepath` (a `.weights.h5`) at the best value of `monitor`, with `best.json` beside it.

    The best value survives a resume (it is read back from best.json). When the monitored value
    never appears in the logs (e.g. no validation data), the last weights are saved at the end
    with a warning, so that a best checkpoint always exists after training.
    """

    def __init__(self, filepath: str, monitor: str = "val_loss", mode: str = "auto"):
        super().__init__()
        if not filepath.endswith(".weights.h5"):
            raise ValueError(f"filepath must end in .weights.h5, got {filepath}")
        self.filepath = filepath
        self.info_path = os.path.join(os.path.dirname(filepath), "best.json")
        self.monitor = monitor
        self.mode = resolve_mode(monitor, mode)
        self.best: float | None = None
        self.best_epoch: int | None = None
        self._seen_keys: set[str] = set()
        self._saved_this_run = False

    def on_train_begin(self, logs=None):
        if os.path.exists(self.info_path) and os.path.exists(self.filepath):
            with open(self.info_path) as f:
                info = json.load(f)
            if info.get("monitor") == self.monitor and info.get("value") is not None:
                self.best, self.best_epoch = float(info["value"]), info.get("epoch")

    def _better(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self._seen_keys.update(logs)
        if _diverged(self.model) or self.monitor not in logs:
            return
        value = float(np.asarray(logs[self.monitor]))
        if self._better(value):
            self.best, self.best_epoch = value, epoch + 1
            self._write(logs)

    def on_train_end(self, logs=None):
        if _diverged(self.model) or os.path.exists(self.filepath):
            return
        if self._seen_keys and self.monitor not in self._seen_keys:
            log.warning("best checkpoint: %r never appeared in the logs (have: %s); saving the last weights",
                        self.monitor, ", ".join(sorted(self._seen_keys)))
        self._write(logs or {}, last=True)

    def _write(self, logs, last: bool = False) -> None:
        folder = os.path.dirname(self.filepath)
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, ".saving." + os.path.basename(self.filepath))
        self.model.save_weights(tmp, overwrite=True)
        os.replace(tmp, self.filepath)
        metrics = {k: float(np.asarray(v)) for k, v in logs.items() if np.asarray(v).size == 1}
        write_json(self.info_path, {"monitor": self.monitor, "mode": self.mode,
                                    "value": None if last else self.best,
                                    "epoch": self.best_epoch, "last": last, "logs": metrics})
        self._saved_this_run = True


# ----------------------------------------------------------------------------------------------
# TensorBoard extras and text logging
# ----------------------------------------------------------------------------------------------


class TaskImages(keras.callbacks.Callback):
    """Images into TensorBoard (train dir): the task's `summary_images` of a sample batch at the
    start (inputs), and its `prediction_images` of the same batch after every epoch (dense tasks;
    the base Task returns none)."""

    def __init__(self, log_dir: str, task, features, labels, max_images: int = 3, at_start: bool = True):
        super().__init__()
        self.log_dir = log_dir
        self.task = task
        self.features, self.labels = features, labels
        self.max_images = int(max_images)
        self.at_start = at_start

    def _write(self, images: dict, step: int) -> None:
        if not images:
            return
        import tensorflow as tf

        writer = tf.summary.create_file_writer(self.log_dir)
        with writer.as_default():
            for tag, value in images.items():
                value = np.asarray(value, np.float32)
                tf.summary.image(tag, value, step=step, max_outputs=len(value))
        writer.flush()
        writer.close()

    def on_train_begin(self, logs=None):
        if self.at_start:
            self._write(self.task.summary_images(self.features, self.labels, max_images=self.max_images),
                        max(_global_step(self.model), 0))

    def on_epoch_end(self, epoch, logs=None):
        if _diverged(self.model):
            return
        self._write(self.task.prediction_images(self.features, self.labels, max_images=self.max_images), epoch + 1)


class StepLogger(keras.callbacks.Callback):
    """A text line every `every` steps: epoch, step, loss and metrics, learning rate, examples/s."""

    def __init__(self, every: int, throughput: Throughput | None = None, stream=None):
        super().__init__()
        self.every = int(every)
        self.throughput = throughput
        self.stream = stream or sys.stdout
        self._epoch = 0
        self._last = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        step = _global_step(self.model)
        if step < 0 or step // self.every == self._last // self.every:
            self._last = max(step, self._last)
            return
        self._last = step
        from garden.optim import learning_rates

        parts = [f"epoch {self._epoch + 1}", f"batch {batch + 1}", f"step {step}"]
        for key, value in (logs or {}).items():
            parts.append(f"{key}={float(np.asarray(value)):.4g}")
        try:
            parts += [f"{k}={v:.4g}" for k, v in learning_rates(self.model.optimizer).items()]
        except Exception:  # noqa: BLE001 - logging only
            pass
        rate = self.throughput.current if self.throughput else None
        if rate:
            parts.append(f"examples/s={rate:.1f}")
        print("  ".join(parts), file=self.stream, flush=True)
