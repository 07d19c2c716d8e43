"""train_and_evaluate(config, workdir): strategy, data, task, Keras `fit`, final evaluation, export.

    runtime     the strategy first (logical CPUs / multi-worker must precede any TF op), then
                the seed (keras.utils.set_random_seed), op determinism and the dtype policy
    data        the training split as one endless, deterministic stream of batches (fresh random
                state per iterator, so the stream depends only on the seed), skipped to the
                backup's global step on resume; validation and test as finite datasets; all through
                strategy.distribute_datasets_from_function with per-replica batches
    task        built under strategy.scope(): registered model (num_classes filled in from the
                data when the model takes it and the config does not set it) wrapped by the
                registered task, built on a sample batch, compiled with the optimiser of
                garden.optim, steps_per_execution and jit_compile
    fit         with the callbacks of garden.callbacks (backup + exact resume, best checkpoint,
                NaN guard, throughput, TensorBoard, input images, progress bar)
    evaluate    the best checkpoint on the test split -> <workdir>/metrics.json (atomic)
    export      unless told not to: export_from_workdir(config, workdir)

Workdir (non-chief workers of a multi-worker job write under `<workdir>/workers/<type>_<id>/`):

    checkpoints/best.weights.h5, checkpoints/best.json
    backup/latest.weights.h5, backup/training_metadata.json
    tensorboard/train/, tensorboard/validation/
    metrics.json
    export/...  (written by the export stage)

Everything task-specific lives in the task (garden/tasks/).
"""

from __future__ import annotations

import contextlib
import datetime
import inspect
import json
import logging
import os
import sys
import time
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from garden import callbacks as cb
from garden import distribute, optim
from garden.atomic import write_json
from garden.errors import ConfigError

__all__ = ["train_and_evaluate", "evaluate", "export_from_workdir", "build_task", "load_task",
           "setup_runtime", "TrainingDiverged", "BEST_CHECKPOINT", "METRICS_FILE"]

log = logging.getLogger(__name__)

TrainingDiverged = cb.TrainingDiverged
BEST_CHECKPOINT = os.path.join("checkpoints", "best.weights.h5")
METRICS_FILE = "metrics.json"
SAMPLE_BATCH = 8


# ----------------------------------------------------------------------------------------------
# data access (module-level so that tests can substitute an in-memory source)
# ----------------------------------------------------------------------------------------------


def _load_source(data_config, split: str) -> tf.data.Dataset:
    from garden.data.sources import load_source

    return load_source(data_config, split)


def _source_info(data_config):
    from garden.data.sources import source_info

    return source_info(data_config)


def _build_from_examples(examples, data_config, **kwargs) -> tf.data.Dataset:
    from garden.data.pipeline import build_from_examples

    return build_from_examples(examples, data_config, **kwargs)


# ----------------------------------------------------------------------------------------------
# runtime
# ----------------------------------------------------------------------------------------------


def _op_determinism_enabled() -> bool:
    try:
        from tensorflow.python.framework import config as tf_config

        return bool(tf_config.is_op_determinism_enabled())
    except (ImportError, AttributeError):
        return False


def _disable_op_determinism() -> None:
    try:
        from tensorflow.python.framework import config as tf_config

        tf_config.disable_op_determinism()
    except (ImportError, AttributeError):
        pass


@contextlib.contextmanager
def setup_runtime(trainer_config):
    """Strategy, seed, op determinism and dtype policy for one run; restored afterwards.

    Yields the strategy. The global dtype policy and op determinism are process-wide: they are
    put back as they were when the block exits, so that runs in one process do not leak.
    """
    strategy = distribute.build_strategy(trainer_config)
    keras.backend.clear_session()
    previous_policy = keras.mixed_precision.global_policy().name
    previous_determinism = _op_determinism_enabled()
    keras.utils.set_random_seed(int(trainer_config.seed))
    if trainer_config.deterministic and not previous_determinism:
        tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy(trainer_config.mixed_precision or "float32")
    try:
        yield strategy
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
        if trainer_config.deterministic and not previous_determinism:
            _disable_op_determinism()


# ----------------------------------------------------------------------------------------------
# task
# ----------------------------------------------------------------------------------------------


def _accepts(factory, name: str) -> bool:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return name in params


def build_task(config, data_info) -> keras.Model:
    """The registered model wrapped by the registered task (under the current scope and policy)."""
    from garden import registry

    if config.model.name not in registry.MODELS or config.task.name not in registry.TASKS:
        registry.import_all()
    model_factory = registry.MODELS.get(config.model.name)
    model_kwargs = dict(config.model.kwargs)
    info = _info_dict(data_info)
    if "num_classes" not in model_kwargs and _accepts(model_factory, "num_classes") \
            and info.get("num_classes") is not None:
        model_kwargs["num_classes"] = int(info["num_classes"])
    model = model_factory(**model_kwargs)
    task_cls = registry.TASKS.get(config.task.name)
    return task_cls(model=model, data_info=data_info, **dict(config.task.kwargs))


def _info_dict(data_info) -> dict:
    from garden.tasks.base import info_dict

    return info_dict(data_info)


def _data_info(config, info, sample_features) -> dict:
    """SourceInfo as a dict, with the image shape the pipeline really yields."""
    out = _info_dict(info)
    image = sample_features.get("image") if isinstance(sample_features, dict) else None
    if image is not None:
        out["image_shape"] = [int(d) for d in np.shape(image)[1:]]
    return out


# ----------------------------------------------------------------------------------------------
# datasets
# ----------------------------------------------------------------------------------------------


def _options(data_config) -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = bool(data_config.deterministic)
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return options


def _train_stream_fn(config, global_batch: int, skip_steps: int):
    """dataset_fn(input_context) of the endless training stream, skipped by `skip_steps` steps.

    The pipeline is built inside a `flat_map` function, so every iterator of the stream owns
    fresh shuffle and augmentation state seeded by `trainer.seed`: the stream is a function of
    the seed alone (Keras peeks at one batch before training under a strategy; with a shared
    random state that peek would change the order of the batches that follow).
    """
    data_config = config.data
    seed = int(config.trainer.seed)

    def dataset_fn(input_context):
        examples = _load_source(data_config, data_config.train_split)

        # Plain Python that builds a dataset: autograph would transpile the whole pipeline (seconds).
        @tf.autograph.experimental.do_not_convert
        def endless(_):
            ds = _build_from_examples(examples, data_config, training=True, batch_size=global_batch,
                                      input_context=input_context, seed=seed)
            return ds.repeat()

        stream = tf.data.Dataset.from_tensors(np.int64(0)).flat_map(endless)
        skip = skip_steps * distribute.replicas_per_pipeline(input_context)
        if skip:
            stream = stream.skip(skip)
        return stream.prefetch(tf.data.AUTOTUNE).with_options(_options(data_config))

    return dataset_fn


def _eval_fn(config, split: str, global_batch: int):
    data_config = config.data

    def dataset_fn(input_context):
        examples = _load_source(data_config, split)
        ds = _build_from_examples(examples, data_config, training=False, batch_size=global_batch,
                                  input_context=input_context)
        return ds.with_options(_options(data_config))

    return dataset_fn


def _sample_batch(config, split: str, size: int) -> tuple[dict, dict]:
    data_config = config.data.model_copy(update={"cache": False}) if hasattr(config.data, "model_copy") \
        else config.data
    examples = _load_source(data_config, split)
    ds = _build_from_examples(examples, data_config, training=False, batch_size=size)
    for features, labels in ds.take(1):
        return ({k: v.numpy() for k, v in features.items()}, {k: v.numpy() for k, v in labels.items()})
    raise ConfigError(f"data.{_split_field(config, split)}: split {split!r} of {config.data.name!r} is empty")


def _split_field(config, split: str) -> str:
    for field in ("train_split", "validation_split", "test_split"):
        if getattr(config.data, field, None) == split:
            return field
    return "name"


def _split_size(config, info, split: str) -> int | None:
    size = None
    if info is not None and hasattr(info, "split_size"):
        try:
            size = info.split_size(split)
        except Exception:  # noqa: BLE001 - fall back to the dataset's cardinality
            size = None
    if size is None:
        cardinality = int(_load_source(config.data, split).cardinality())
        size = cardinality if cardinality >= 0 else None
    return size


def _steps_per_epoch(config, info, global_batch: int) -> int:
    steps = config.trainer.steps_per_epoch
    if steps:
        return int(steps)
    size = _split_size(config, info, config.data.train_split)
    if size is None:
        raise ConfigError(f"trainer.steps_per_epoch: the size of split {config.data.train_split!r} of "
                          f"{config.data.name!r} is unknown; set trainer.steps_per_epoch")
    steps = size // global_batch
    if steps < 1:
        raise ConfigError(f"data.batch_size: the global batch {global_batch} is larger than the training split "
                          f"({size} examples)")
    return steps


def _eval_steps(config, info, split: str, global_batch: int, given: int | None, strategy) -> int | None:
    """None (the whole split) unless given; multi-worker: full global batches only, so that every
    worker runs the same number of steps (a worker that ran out early would hang the others)."""
    if given:
        return int(given)
    if config.trainer.strategy != "multi_worker":
        return None
    size = _split_size(config, info, split)
    if size is None:
        return None
    steps = size // global_batch
    if steps < 1:
        raise ConfigError(f"data.batch_size: with multi_worker, split {split!r} ({size} examples) needs at least "
                          f"one global batch of {global_batch}")
    return steps


def _has_split(split: str | None) -> bool:
    return bool(split)


def _batch_sizes(config, num_replicas: int) -> tuple[int, int]:
    try:
        from garden.config import batch_sizes
    except ImportError:  # pragma: no cover - config.py always exists in the garden
        batch_sizes = None
    if batch_sizes is not None and hasattr(config, "model_dump"):
        return batch_sizes(config, num_replicas)
    global_batch = int(config.data.batch_size)
    if global_batch % num_replicas:
        raise ConfigError(f"data.batch_size: {global_batch} does not divide over {num_replicas} replicas")
    return global_batch, global_batch // num_replicas


# ----------------------------------------------------------------------------------------------
# train_and_evaluate
# ----------------------------------------------------------------------------------------------


def _verbose(chief: bool) -> int:
    if not chief:
        return 0
    return 1 if sys.stdout.isatty() else 2


def _config_hash(config) -> str | None:
    try:
        from garden.config import config_hash

        return config_hash(config)
    except Exception:  # noqa: BLE001 - a minimal config object (tests)
        return None


def _floats(logs: dict | None) -> dict:
    out = {}
    for key, value in (logs or {}).items():
        arr = np.asarray(value)
        if arr.size == 1 and np.issubdtype(arr.dtype, np.number):
            out[key] = float(arr)
    return out


def _read_json(path: str) -> dict:
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return {}


def _build_compiled_task(config, strategy, data_info, sample_features, steps_per_epoch: int | None):
    with strategy.scope():
        task = build_task(config, data_info)
        task(sample_features, training=False)  # build every variable before the backup restores
        if steps_per_epoch is None:
            optimizer = None
        else:
            optimizer = optim.build_optimizer(config.trainer, steps_per_epoch=steps_per_epoch,
                                              variables=task.trainable_variables)
        compile_kwargs = dict(steps_per_execution=int(config.trainer.steps_per_execution),
                              jit_compile=bool(config.trainer.jit_compile))
        if optimizer is not None:
            compile_kwargs["optimizer"] = optimizer
        task.compile(**compile_kwargs)
        if optimizer is not None:
            task.optimizer.build(task.trainable_variables)
    return task


def train_and_evaluate(config, workdir, *, export: bool | None = None,
                       callbacks: Sequence[keras.callbacks.Callback] = ()) -> dict:
    """Train `config` in `workdir`, evaluate the best checkpoint on the test split, export.

    Resumes from `<workdir>/backup` when there is one (same config). Returns the metrics
    written to `<workdir>/metrics.json`. `export` overrides `config.export.enabled`; extra
    Keras `callbacks` run after the garden's. Raises `TrainingDiverged` when the loss becomes
    NaN or infinite, `ConfigError` for settings that only turn out wrong at run time.
    """
    workdir = os.fspath(workdir)
    tcfg = config.trainer
    with setup_runtime(tcfg) as strategy:
        chief = distribute.is_chief(strategy)
        outdir = distribute.worker_dir(workdir, strategy)
        os.makedirs(outdir, exist_ok=True)
        replicas = strategy.num_replicas_in_sync
        global_batch, per_replica = _batch_sizes(config, replicas)
        info = _source_info(config.data)
        steps_per_epoch = _steps_per_epoch(config, info, global_batch)

        backup_dir = os.path.join(outdir, "backup")
        state = cb.read_backup_state(backup_dir)
        if state is not None and state.steps_per_epoch not in (-1, steps_per_epoch):
            raise ConfigError(f"trainer.steps_per_epoch: the backup in {backup_dir} was made with "
                              f"{state.steps_per_epoch} steps per epoch, this run has {steps_per_epoch}; "
                              "resume with the same config or delete the backup")
        skip = max(state.global_step, 0) if state is not None else 0
        if state is not None and state.global_step < 0:  # a plain Keras backup: whole epochs
            skip = state.epoch * steps_per_epoch

        validation_split = config.data.validation_split if _has_split(config.data.validation_split) else None
        sample_split = validation_split or config.data.test_split or config.data.train_split
        sample_features, sample_labels = _sample_batch(config, sample_split, SAMPLE_BATCH)
        data_info = _data_info(config, info, sample_features)

        train_data = distribute.distribute_datasets(strategy, _train_stream_fn(config, global_batch, skip))
        val_data = None
        if validation_split:
            val_data = distribute.distribute_datasets(strategy, _eval_fn(config, validation_split, global_batch))
        validation_steps = _eval_steps(config, info, validation_split, global_batch, tcfg.validation_steps,
                                       strategy) if validation_split else None

        task = _build_compiled_task(config, strategy, data_info, sample_features, steps_per_epoch)

        # -- callbacks ---------------------------------------------------------------------
        tb_cfg = tcfg.tensorboard
        ckpt_cfg = tcfg.checkpoint
        tb_dir = os.path.join(outdir, "tensorboard")
        monitor = ckpt_cfg.monitor
        if val_data is None and monitor.startswith("val_"):
            log.warning("no validation split: the best checkpoint follows %r instead of %r", monitor[4:], monitor)
            monitor = monitor[4:]
        nan_guard = cb.NaNGuard() if tcfg.nan_guard else None
        throughput = cb.Throughput(global_batch)
        several = replicas > 1
        backup = cb.ExactBackupAndRestore(
            backup_dir, steps_per_epoch=steps_per_epoch, save_freq=ckpt_cfg.backup_every, state=state,
            before_save=(lambda: distribute.sync_replica_variables(task, strategy)) if several else None)
        best = cb.BestCheckpoint(os.path.join(outdir, BEST_CHECKPOINT), monitor=monitor, mode=ckpt_cfg.mode)
        sync = cb.SyncReplicaStatistics(strategy) if several else None
        garden_callbacks: list = [c for c in (nan_guard, sync, throughput, backup, best) if c is not None]
        if tb_cfg.enabled:
            if tb_cfg.image_summaries:
                garden_callbacks.append(cb.TaskImages(os.path.join(tb_dir, "train"), task, sample_features,
                                                      sample_labels, tb_cfg.image_summaries, at_start=state is None))
            garden_callbacks.append(keras.callbacks.TensorBoard(
                log_dir=tb_dir, update_freq=tb_cfg.update_freq, write_graph=False))
        if tcfg.log_every and chief:
            garden_callbacks.append(cb.StepLogger(tcfg.log_every, throughput))
        garden_callbacks.extend(callbacks)

        print(_start_line(config, strategy, global_batch, per_replica, steps_per_epoch, state, task),
              flush=True)
        started = time.perf_counter()
        history = task.fit(
            train_data, epochs=int(tcfg.epochs), steps_per_epoch=steps_per_epoch,
            validation_data=val_data, validation_steps=validation_steps,
            validation_freq=int(tcfg.validation_freq), callbacks=garden_callbacks, verbose=_verbose(chief),
            shuffle=False)
        train_seconds = time.perf_counter() - started
        global_step = int(np.asarray(_iterations(task)))
        if nan_guard is not None and nan_guard.message:
            raise TrainingDiverged(nan_guard.message)

        # -- final evaluation on the best weights -------------------------------------------
        best_path = os.path.join(outdir, BEST_CHECKPOINT)
        if os.path.exists(best_path):
            task.load_weights(best_path)
        test_metrics: dict = {}
        test_split = config.data.test_split
        if _has_split(test_split):
            test_data = distribute.distribute_datasets(strategy, _eval_fn(config, test_split, global_batch))
            test_steps = _eval_steps(config, info, test_split, global_batch, tcfg.test_steps, strategy)
            test_metrics = _floats(task.evaluate(test_data, steps=test_steps, return_dict=True,
                                                 verbose=_verbose(chief)))

        epochs_logs = {k: v[-1] for k, v in (history.history or {}).items() if v}
        previous = _read_json(os.path.join(workdir, METRICS_FILE)) if chief else {}
        metrics = {
            **previous,
            "experiment": getattr(config, "experiment", None),
            "config_hash": _config_hash(config),
            "test_split": test_split,
            "test": test_metrics,
            "best_checkpoint": _read_json(os.path.join(outdir, "checkpoints", "best.json")) or None,
            "epochs": int(tcfg.epochs),
            "steps_per_epoch": steps_per_epoch,
            "global_step": global_step,
            "strategy": tcfg.strategy,
            "num_replicas": replicas,
            "global_batch_size": global_batch,
            "per_replica_batch_size": per_replica,
            "mixed_precision": tcfg.mixed_precision,
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        if history.history:
            metrics.update({
                "train": {k: v for k, v in _floats(epochs_logs).items() if not k.startswith("val_")},
                "validation": {k[4:]: v for k, v in _floats(epochs_logs).items() if k.startswith("val_")},
                "train_seconds": round(train_seconds, 3),
                "examples_per_second": round(float(np.mean(throughput.rates[1:] or throughput.rates)), 3)
                if throughput.rates else None,
                "resumed_from_step": skip if state is not None else None,
            })
        if chief:
            write_json(os.path.join(workdir, METRICS_FILE), metrics)
        print("test: " + ", ".join(f"{k}={v:.4f}" for k, v in test_metrics.items()), flush=True)

    do_export = config.export.enabled if export is None else export
    if do_export and chief:
        manifest = export_from_workdir(config, workdir)
        if manifest is not None:
            metrics["export"] = {k: manifest.get(k) for k in ("artifacts", "parity") if k in manifest}
    return metrics


def _iterations(task):
    try:
        return task.optimizer.iterations
    except AttributeError:
        return 0


def _start_line(config, strategy, global_batch, per_replica, steps_per_epoch, state, task) -> str:
    params = int(sum(np.prod(v.shape) for v in task.trainable_variables))
    resume = "from scratch"
    if state is not None:
        resume = (f"resuming from the backup at epoch {state.epoch + 1}, step {state.step_in_epoch} "
                  f"(global step {state.global_step})")
        if state.finished:
            resume = "training already finished (backup of the last epoch); evaluating"
    tcfg = config.trainer
    return (f"garden: {tcfg.strategy} strategy, {strategy.num_replicas_in_sync} replica(s), "
            f"batch {global_batch} ({per_replica}/replica), {steps_per_epoch} steps x {tcfg.epochs} epochs, "
            f"{params:,} trainable parameters, policy {keras.mixed_precision.global_policy().name}; {resume}")


# ----------------------------------------------------------------------------------------------
# eval and export from a workdir
# ----------------------------------------------------------------------------------------------


def load_task(config, workdir, *, strategy=None, compile: bool = False, sample_split: str | None = None):
    """A task built from `config` with the best checkpoint of `workdir` loaded.

    Returns `(task, sample_features)`. Built under `strategy` (default: the current one) and the
    current dtype policy; the export stage calls it under float32.
    """
    workdir = os.fspath(workdir)
    path = os.path.join(workdir, BEST_CHECKPOINT)
    if not os.path.exists(path):
        raise ConfigError(f"--workdir: no checkpoint at {path}; train first (--mode train)")
    strategy = strategy or tf.distribute.get_strategy()
    info = _source_info(config.data)
    split = sample_split or config.data.test_split or config.data.validation_split or config.data.train_split
    sample_features, _ = _sample_batch(config, split, SAMPLE_BATCH)
    data_info = _data_info(config, info, sample_features)
    with strategy.scope():
        task = build_task(config, data_info)
        task(sample_features, training=False)
        task.load_weights(path)  # before compile: the checkpoint's optimizer state is not needed
        if compile:
            task.compile(steps_per_execution=int(config.trainer.steps_per_execution),
                         jit_compile=bool(config.trainer.jit_compile))
    return task, sample_features


def evaluate(config, workdir) -> dict:
    """`--mode eval`: the best checkpoint of `workdir` on the test split, into metrics.json."""
    workdir = os.fspath(workdir)
    tcfg = config.trainer
    with setup_runtime(tcfg) as strategy:
        chief = distribute.is_chief(strategy)
        global_batch, _ = _batch_sizes(config, strategy.num_replicas_in_sync)
        info = _source_info(config.data)
        task, _ = load_task(config, workdir, strategy=strategy, compile=True)
        split = config.data.test_split
        data = distribute.distribute_datasets(strategy, _eval_fn(config, split, global_batch))
        steps = _eval_steps(config, info, split, global_batch, tcfg.test_steps, strategy)
        test_metrics = _floats(task.evaluate(data, steps=steps, return_dict=True, verbose=_verbose(chief)))
        metrics = {**_read_json(os.path.join(workdir, METRICS_FILE)), "test_split": split, "test": test_metrics,
                   "evaluated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        if chief:
            write_json(os.path.join(workdir, METRICS_FILE), metrics)
        print("test: " + ", ".join(f"{k}={v:.4f}" for k, v in test_metrics.items()), flush=True)
    return metrics


def export_from_workdir(config, workdir) -> dict:
    """`--mode export`: export the best checkpoint of `workdir` through the export stage (float32).

    Returns the manifest.
    """
    from export import export_task  # imported here: the export stage pulls in tf2onnx and onnx

    workdir = os.fspath(workdir)
    previous_policy = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("float32")  # exported models are float32
    try:
        with tf.distribute.get_strategy().scope():
            task, _ = load_task(config, workdir)
        split = config.data.test_split or config.data.validation_split or config.data.train_split
        features, _ = _sample_batch(config, split, int(config.export.num_parity_examples))
        extra = {"experiment": getattr(config, "experiment", None), "config_hash": _config_hash(config),
                 "class_names": task.data_info.get("class_names"), "checkpoint": BEST_CHECKPOINT}
        manifest = export_task(task, workdir=workdir, name=config.export_name, version=int(config.export.version),
                               formats=tuple(config.export.formats), tolerance=float(config.export.tolerance),
                               sample_features=features, extra_manifest=extra,
                               batch_size=config.export.batch_size)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    return manifest
