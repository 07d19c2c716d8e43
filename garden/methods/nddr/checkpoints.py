"""Two-stage training: initialise a fused network's towers from trained single-task runs.

NDDR-CNN trains each single-task network first, then initialises both towers of the NDDR-CNN
from them (spec B.3, "Initialization order"; Table 3: this beats a generic initialisation).
A single-task run is any garden run (a workdir with config.yaml and checkpoints/best.weights.h5)
whose model is a `MultiTaskNet` with that task and no shared stages; its tower stages, shortcut
and head are copied into the fused model's layers for the same task.
"""

from __future__ import annotations

import os

from garden.errors import ConfigError


def load_single_task_weights(model, task: str, workdir: str) -> None:
    """Copy task `task`'s tower, shortcut and head weights from the run in `workdir` into `model`."""
    from garden.config import load_config
    from garden.trainer import BEST_CHECKPOINT, load_task

    workdir = os.path.expanduser(workdir)
    config_path = os.path.join(workdir, "config.yaml")
    if not os.path.exists(config_path) or not os.path.exists(os.path.join(workdir, BEST_CHECKPOINT)):
        raise ConfigError(f"model.init_checkpoints.{task}: no trained run at {workdir!r} (need config.yaml and "
                          f"{BEST_CHECKPOINT}); train the single-task config first")
    source_task, _ = load_task(load_config(config_path), workdir)
    source = source_task.model
    if type(source).__name__ != type(model).__name__ or task not in getattr(source, "tasks", {}):
        raise ConfigError(f"model.init_checkpoints.{task}: the run in {workdir!r} has no {task!r} tower "
                          f"(its model is {type(source).__name__} with tasks {getattr(source, 'tasks', None)})")
    if source.shared_stages:
        raise ConfigError(f"model.init_checkpoints.{task}: the run in {workdir!r} shares stages between tasks; "
                          "initialise from single-task runs (shared_stages: 0)")
    target_layers = list(model.shared) + model.task_layers(task)
    source_layers = source.task_layers(task)
    if not model.shortcut:
        source_layers = [layer for layer in source_layers if layer not in source.shortcuts.values()]
    elif not source.shortcut:
        raise ConfigError(f"model.init_checkpoints.{task}: the model has a shortcut, the run in {workdir!r} has none")
    if len(target_layers) != len(source_layers):
        raise ConfigError(f"model.init_checkpoints.{task}: the run in {workdir!r} has {len(source_layers)} layers "
                          f"for {task!r}, the model {len(target_layers)}: different architectures")
    for target, origin in zip(target_layers, source_layers):
        weights = origin.get_weights()
        shapes = [tuple(w.shape) for w in target.weights]
        if shapes != [tuple(w.shape) for w in weights]:
            raise ConfigError(f"model.init_checkpoints.{task}: layer {target.name} has weights {shapes}, the run in "
                              f"{workdir!r} {[tuple(w.shape) for w in weights]}: different architectures")
        target.set_weights(weights)
