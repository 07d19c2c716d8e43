"""train_and_evaluate end to end on a tiny model and an in-memory source.

The helpers at the top (TinyNet, the in-memory source, `make_config`, `run_child`) are shared
with tests/test_distribute.py and tests/test_callbacks.py. Runs that need a fresh process
(logical CPUs, multi-worker, SIGKILL) go through `run_child`, which runs `child_main` below.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from garden import trainer
from garden.config import ExperimentConfig
from garden.registry import MODELS, register_model

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = "_test_tiny_net"
NUM_CLASSES = 4
IMAGE_SHAPE = (8, 8, 3)
SPLIT_SIZES = {"train": 64, "validation": 32, "test": 32}


# ----------------------------------------------------------------------------------------------
# a tiny model and an in-memory source
# ----------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="garden_tests")
class TinyNet(keras.Model):
    """conv(4) - BN - ReLU - global pool - dense: a few hundred parameters.

    `norm`: "batch", "sync" (BatchNormalization(synchronized=True)) or "none" (conv with bias).
    """

    def __init__(self, num_classes: int = NUM_CLASSES, width: int = 4, dropout: float = 0.0, norm: str = "batch",
                 **kwargs):
        super().__init__(**kwargs)
        self.num_classes, self.width, self.dropout_rate, self.norm = num_classes, width, dropout, norm
        self.conv = keras.layers.Conv2D(width, 3, padding="same", use_bias=norm == "none", name="conv")
        self.bn = (keras.layers.BatchNormalization(synchronized=norm == "sync", name="bn") if norm != "none"
                   else keras.layers.Identity())
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.drop = keras.layers.Dropout(dropout) if dropout else None
        self.head = keras.layers.Dense(num_classes, name="head")

    def call(self, x, training=False):
        x = keras.ops.relu(self.bn(self.conv(x), training=training))
        x = self.pool(x)
        if self.drop is not None:
            x = self.drop(x, training=training)
        return self.head(x)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "width": self.width,
                "dropout": self.dropout_rate, "norm": self.norm}


if TINY_MODEL not in MODELS:
    register_model(TINY_MODEL)(TinyNet)


def make_examples(split: str) -> dict[str, np.ndarray]:
    """Learnable toy images: the class sets which colour channel is bright, plus noise."""
    n = SPLIT_SIZES[split]
    rng = np.random.default_rng({"train": 0, "validation": 1, "test": 2}[split])
    labels = rng.integers(0, NUM_CLASSES, n)
    images = rng.integers(0, 96, (n, *IMAGE_SHAPE))
    for i, label in enumerate(labels):
        images[i, :, :, label % 3] += 100 + 50 * (label // 3)
    return {"image": np.clip(images, 0, 255).astype(np.uint8), "label": labels.astype(np.int64)}


def fake_load_source(data_config, split):
    return tf.data.Dataset.from_tensor_slices(make_examples(split))


def fake_source_info(data_config):
    from garden.data.sources import SourceInfo

    return SourceInfo(name=data_config.name, image_shape=IMAGE_SHAPE, feature_keys=("image", "label"),
                      num_classes=NUM_CLASSES, class_names=tuple(f"c{i}" for i in range(NUM_CLASSES)),
                      split_sizes=dict(SPLIT_SIZES))


def use_fake_source(monkeypatch=None) -> None:
    if monkeypatch is not None:
        monkeypatch.setattr(trainer, "_load_source", fake_load_source)
        monkeypatch.setattr(trainer, "_source_info", fake_source_info)
    else:
        trainer._load_source = fake_load_source
        trainer._source_info = fake_source_info


def make_config(**sections) -> ExperimentConfig:
    """A tiny experiment; keyword arguments update the sections (dicts are merged one level deep)."""
    data = {
        "experiment": "tiny",
        "model": {"name": TINY_MODEL},
        "data": {"name": "memory:tiny", "batch_size": 16, "shuffle_buffer": 64, "cache": True},
        "task": {"name": "classification"},
        "trainer": {"epochs": 2, "optimizer": {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9},
                    "seed": 1, "checkpoint": {"monitor": "val_accuracy"},
                    "tensorboard": {"image_summaries": 2}},
        "export": {"enabled": False},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return ExperimentConfig.model_validate(data)


def weights_digest(path: str | os.PathLike) -> str:
    """sha256 over the model (not optimizer) arrays of a .weights.h5 file, in file order."""
    import h5py

    digest = hashlib.sha256()
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and not name.startswith("optimizer"):
                digest.update(name.encode())
                digest.update(np.ascontiguousarray(obj[()]).tobytes())
        f.visititems(visit)
    return digest.hexdigest()


def model_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset)
                     and not name.startswith("optimizer") else None)
    return out


# ----------------------------------------------------------------------------------------------
# child processes
# ----------------------------------------------------------------------------------------------


class _HangAt(keras.callbacks.Callback):
    """At global step `step`, writes `marker` and sleeps, so that a test can SIGKILL the run there."""

    def __init__(self, step: int, marker: str):
        super().__init__()
        self.step, self.marker = step, marker

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations) == self.step:
            Path(self.marker).write_text(str(self.step))
            time.sleep(600)


def child_main() -> None:
    """Entry point of `run_child`: argv[1] is a JSON job description."""
    job = json.loads(sys.argv[1])
    use_fake_source()
    config = make_config(**job["sections"])
    extra = [_HangAt(job["hang_at"], job["marker"])] if job.get("hang_at") else []
    if job.get("mode") == "compare_default_mirrored":
        _compare_default_mirrored(config, job)
        return
    metrics = trainer.train_and_evaluate(config, job["workdir"], callbacks=extra)
    print("CHILD_METRICS " + json.dumps(metrics, default=str), flush=True)


def _compare_default_mirrored(config, job) -> None:
    """In one process with 2 logical CPUs: the same run under default and mirrored."""
    from garden import distribute

    distribute.configure_cpu_replicas(2)
    out = {}
    for strategy in ("default", "mirrored"):
        cfg = config.model_copy(update={"trainer": config.trainer.model_copy(
            update={"strategy": strategy, "cpu_replicas": 2 if strategy == "mirrored" else None})})
        workdir = os.path.join(job["workdir"], strategy)
        metrics = trainer.train_and_evaluate(cfg, workdir)
        out[strategy] = {"metrics": metrics,
                         "weights": {k: v.tolist() for k, v in
                                     model_arrays(os.path.join(workdir, "backup", "latest.weights.h5")).items()}}
    print("CHILD_COMPARE " + json.dumps(out, default=str), flush=True)


def child_command(job: dict) -> list[str]:
    return [sys.executable, "-c", "from tests.test_trainer import child_main; child_main()", json.dumps(job)]


def child_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.update({"PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", ""), "TF_CPP_MIN_LOG_LEVEL": "2",
                "CUDA_VISIBLE_DEVICES": ""})
    env.update(extra or {})
    return env


def run_child(job: dict, *, timeout: float = 240, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(child_command(job), cwd=REPO, env=child_env(env), capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"child failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result


def child_payload(result: subprocess.CompletedProcess, tag: str) -> dict:
    for line in result.stdout.splitlines():
        if line.startswith(tag + " "):
            return json.loads(line[len(tag) + 1:])
    raise AssertionError(f"no {tag} line in the child's output:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


# ----------------------------------------------------------------------------------------------
# tests
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def fake_source(monkeypatch):
    use_fake_source(monkeypatch)


def test_train_and_evaluate_writes_the_workdir(fake_source, tmp_path, capsys):
    metrics = trainer.train_and_evaluate(make_config(trainer={"log_every": 3}), tmp_path)
    out = capsys.readouterr().out
    assert "garden: default strategy, 1 replica(s), batch 16 (16/replica), 4 steps x 2 epochs" in out
    assert "epoch 1  batch 3  step 3  " in out and "learning_rate=0.05" in out  # trainer.log_every
    assert "test: accuracy=" in out
    assert (tmp_path / "checkpoints" / "best.weights.h5").exists()
    assert (tmp_path / "backup" / "latest.weights.h5").exists()
    assert (tmp_path / "tensorboard" / "train").is_dir() and (tmp_path / "tensorboard" / "validation").is_dir()
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["test"] == metrics["test"]
    assert set(metrics["test"]) == {"loss", "accuracy"}  # 4 classes: no top-5
    assert np.isfinite(metrics["test"]["loss"])
    assert metrics["global_step"] == 2 * (64 // 16)
    assert metrics["examples_per_second"] > 0
    best = json.loads((tmp_path / "checkpoints" / "best.json").read_text())
    assert best["monitor"] == "val_accuracy" and best["mode"] == "max"


def test_tiny_model_learns(fake_source, tmp_path):
    config = make_config(trainer={"epochs": 6, "optimizer": {"name": "adam", "learning_rate": 0.03}})
    metrics = trainer.train_and_evaluate(config, tmp_path)
    assert metrics["test"]["accuracy"] > 0.6, metrics


def test_tensorboard_tags(fake_source, tmp_path):
    trainer.train_and_evaluate(make_config(), tmp_path)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def tags(sub):
        acc = EventAccumulator(str(tmp_path / "tensorboard" / sub), size_guidance={"tensors": 0, "images": 0})
        acc.Reload()
        return set(acc.Tags()["tensors"]) | set(acc.Tags()["images"])

    train, validation = tags("train"), tags("validation")
    assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate", "epoch_examples_per_second", "inputs"} <= train
    assert {"epoch_loss", "epoch_accuracy"} <= validation


def test_rerun_of_a_finished_experiment_does_not_train_again(fake_source, tmp_path):
    config = make_config(trainer={"epochs": 1})
    first = trainer.train_and_evaluate(config, tmp_path)
    digest = weights_digest(tmp_path / "backup" / "latest.weights.h5")
    second = trainer.train_and_evaluate(config, tmp_path)
    assert weights_digest(tmp_path / "backup" / "latest.weights.h5") == digest
    assert second["test"] == pytest.approx(first["test"])


def test_evaluate_mode_rewrites_test_metrics(fake_source, tmp_path):
    config = make_config(trainer={"epochs": 1})
    metrics = trainer.train_and_evaluate(config, tmp_path)
    (tmp_path / "metrics.json").unlink()
    again = trainer.evaluate(config, tmp_path)
    assert again["test"] == pytest.approx(metrics["test"], rel=1e-5)
    assert json.loads((tmp_path / "metrics.json").read_text())["test"] == again["test"]


def test_evaluate_without_checkpoint_is_a_config_error(fake_source, tmp_path):
    from garden.errors import ConfigError

    with pytest.raises(ConfigError, match="no checkpoint"):
        trainer.evaluate(make_config(), tmp_path)


def test_num_classes_comes_from_the_data(fake_source, tmp_path):
    info = fake_source_info(make_config().data)
    task = trainer.build_task(make_config(), trainer._info_dict(info))
    assert task.model.num_classes == NUM_CLASSES
    task = trainer.build_task(make_config(model={"name": TINY_MODEL, "num_classes": 7}), trainer._info_dict(info))
    assert task.model.num_classes == 7


def test_nan_guard_stops_with_a_clear_error(fake_source, tmp_path):
    config = make_config(trainer={"epochs": 3, "optimizer": {"name": "sgd", "learning_rate": 1e30}})
    with pytest.raises(trainer.TrainingDiverged, match="training diverged: loss is (nan|inf)"):
        trainer.train_and_evaluate(config, tmp_path)
    assert not (tmp_path / "metrics.json").exists()


def test_deterministic_runs_give_identical_weights(fake_source, tmp_path):
    config = make_config(trainer={"deterministic": True, "seed": 3, "epochs": 2,
                                  "checkpoint": {"monitor": "val_accuracy", "backup_every": 3}},
                         data={"augment": {"horizontal_flip": True, "crop_padding": 1}})
    trainer.train_and_evaluate(config, tmp_path / "a")
    trainer.train_and_evaluate(config, tmp_path / "b")
    a = tmp_path / "a" / "backup" / "latest.weights.h5"
    b = tmp_path / "b" / "backup" / "latest.weights.h5"
    assert weights_digest(a) == weights_digest(b)
    # ... and a different seed gives different weights.
    trainer.train_and_evaluate(make_config(trainer={"deterministic": True, "seed": 4, "epochs": 2}), tmp_path / "c")
    assert weights_digest(tmp_path / "c" / "backup" / "latest.weights.h5") != weights_digest(a)


@pytest.mark.parametrize("options", [
    {"jit_compile": True},
    {"steps_per_execution": 2},
    {"mixed_precision": "mixed_float16"},
    {"mixed_precision": "mixed_bfloat16"},
    {"mixed_precision": "mixed_float16", "lr_multipliers": [{"pattern": "head", "multiplier": 10.0}],
     "optimizer": {"name": "adamw", "learning_rate": 0.01, "weight_decay": 0.01, "global_clipnorm": 1.0}},
], ids=["jit_compile", "steps_per_execution=2", "mixed_float16", "mixed_bfloat16",
        "mixed_float16-lr_multipliers-adamw-clip"])
def test_one_epoch_with_trainer_options(fake_source, tmp_path, options):
    config = make_config(trainer={"epochs": 1, **options})
    metrics = trainer.train_and_evaluate(config, tmp_path)
    assert np.isfinite(metrics["test"]["loss"])
    assert np.isfinite(metrics["train"]["loss"])
    assert keras.mixed_precision.global_policy().name == "float32"  # restored


def test_resume_after_sigkill_matches_an_uninterrupted_run(fake_source, tmp_path):
    sections = {"trainer": {"epochs": 2, "deterministic": True, "seed": 5,
                            "checkpoint": {"monitor": "val_accuracy", "backup_every": 2},
                            "tensorboard": {"enabled": False}},
                "data": {"batch_size": 4, "augment": {"horizontal_flip": True}}}
    steps_per_epoch = 64 // 4
    # A run killed with SIGKILL in the middle of its second epoch, one step after a backup ...
    workdir = tmp_path / "killed"
    marker = tmp_path / "hanging"
    hang_at = steps_per_epoch + 5
    process = subprocess.Popen(
        child_command({"sections": sections, "workdir": str(workdir), "hang_at": hang_at, "marker": str(marker)}),
        cwd=REPO, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert process.poll() is None, f"the run ended before it could be killed:\n{process.stdout.read()}"
            assert time.monotonic() < deadline, "the run never reached the step to kill it at"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
    metadata = workdir / "backup" / "training_metadata.json"
    killed_at = json.loads(metadata.read_text())
    assert (killed_at["epoch"], killed_at["step_in_epoch"]) == (1, 4)  # the last backup before the kill
    assert not (workdir / "metrics.json").exists()
    # ... started again with the same command, continues from its backup ...
    result = run_child({"sections": sections, "workdir": str(workdir)})
    assert "resuming from the backup at epoch 2, step 4 (global step 20)" in result.stdout
    final = json.loads(metadata.read_text())
    assert final["finished"] and final["global_step"] == 2 * steps_per_epoch
    # ... and ends with the weights of a run that was never interrupted.
    trainer.train_and_evaluate(make_config(**sections), tmp_path / "reference")
    assert weights_digest(workdir / "backup" / "latest.weights.h5") == \
        weights_digest(tmp_path / "reference" / "backup" / "latest.weights.h5")
    assert json.loads((workdir / "metrics.json").read_text())["test"] == \
        json.loads((tmp_path / "reference" / "metrics.json").read_text())["test"]
