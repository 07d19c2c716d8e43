"""The typed experiment config: YAML -> validated pydantic objects.

One YAML per experiment with the sections `experiment` (the name), `model`, `data`, `task`,
`trainer` and `export`. Validation has two stages, both run by `load_config`:

1. the schema (`validate_schema`): unknown keys, wrong types and out-of-range values. Pure
   pydantic; this module never imports TensorFlow, so a typo fails in a fraction of a second.
2. the names (`check_names`): `model.name`, `task.name` and `data.name` against the registries
   and data sources, and the model's and task's keyword arguments against their constructors'
   signatures. This stage imports the registering modules (`garden.registry.import_all()`), and
   with them TensorFlow.

Every failure is a `garden.errors.ConfigError` whose message is one line: the dotted key path,
the bad value and what is valid (with "did you mean ...?" for near misses).

`python -m garden.config --doc [FILE]` prints (or rewrites between its markers in FILE) the
table of every field with its default and range that `docs/configs.md` shows.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import inspect
import json
import os
import re
import sys
import tempfile
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from garden.data.config import DataConfig
from garden.errors import ConfigError, did_you_mean, unknown_choice

__all__ = [
    "OptimizerConfig", "ScheduleConfig", "LrMultiplier", "CheckpointConfig", "TensorBoardConfig",
    "TrainerConfig", "ExportConfig", "ModelConfig", "TaskConfig", "ExperimentConfig",
    "load_config", "load_yaml", "apply_overrides", "validate_schema", "validate_config",
    "check_names", "config_hash", "dump_config", "to_yaml", "config_diff", "batch_sizes",
    "format_validation_error", "dataset_names", "TRAINER_PROVIDED_TASK_ARGS",
]

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def _field_error(field: str, message: str) -> PydanticCustomError:
    """A model-validator error that names the offending field (relative to the section)."""
    return PydanticCustomError("field_error", "{field}: {message}", {"field": field, "message": message})


class _Strict(BaseModel):
    """Base of the config sections: unknown keys are errors; assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ----------------------------------------------------------------------------------------------
# trainer
# ----------------------------------------------------------------------------------------------


class OptimizerConfig(_Strict):
    """The optimiser (Keras 3 natives)."""

    name: Literal["sgd", "adam", "adamw"] = Field("sgd", description="sgd (with momentum/Nesterov), adam or adamw")
    learning_rate: float = Field(0.1, gt=0, description="base (peak) learning rate, for the global batch")
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd only")
    nesterov: bool = Field(False, description="sgd only")
    weight_decay: float = Field(
        0.0, ge=0, description="Keras' decoupled weight decay (w -= lr*wd*w each step); adamw's default in Keras is 0.004")
    decay_norm_and_bias: bool = Field(
        False, description="apply weight_decay to 1-D variables too (batch-norm scales/offsets, biases)")
    beta_1: float = Field(0.9, ge=0, lt=1, description="adam/adamw")
    beta_2: float = Field(0.999, ge=0, lt=1, description="adam/adamw")
    epsilon: float = Field(1e-7, gt=0, description="adam/adamw")
    clipnorm: float | None = Field(None, gt=0, description="clip each gradient to this norm")
    clipvalue: float | None = Field(None, gt=0, description="clip each gradient element to [-v, v]")
    global_clipnorm: float | None = Field(None, gt=0, description="clip all gradients jointly to this global norm")

    @model_validator(mode="after")
    def _one_clip(self):
        given = [k for k in ("clipnorm", "clipvalue", "global_clipnorm") if getattr(self, k) is not None]
        if len(given) > 1:
            raise _field_error(given[1], "only one of clipnorm, clipvalue, global_clipnorm may be set "
                                          f"(got {', '.join(given)})")
        return self


class ScheduleConfig(_Strict):
    """The learning-rate schedule, with optional linear warm-up from 0."""

    name: Literal["constant", "step", "cosine", "poly"] = Field(
        "constant", description="constant; step (multiply by decay_factor at each boundary); cosine; poly")
    warmup_epochs: float = Field(0.0, ge=0, description="linear warm-up length in epochs")
    warmup_steps: int | None = Field(None, ge=0, description="linear warm-up length in steps (instead of warmup_epochs)")
    boundaries: list[float] = Field(
        default_factory=list, description="step: epochs at which the rate is multiplied by decay_factor")
    boundary_steps: list[int] = Field(
        default_factory=list, description="step: the boundaries in steps (instead of epochs)")
    decay_factor: float = Field(0.1, gt=0, le=1, description="step: factor applied at each boundary")
    power: float = Field(1.0, gt=0, description="poly: exponent of (1 - progress)")
    alpha: float = Field(0.0, ge=0, le=1, description="cosine/poly: final rate as a fraction of learning_rate")

    @field_validator("boundaries", "boundary_steps")
    @classmethod
    def _increasing(cls, value):
        if any(b <= 0 for b in value):
            raise ValueError(f"must be > 0, got {list(value)}")
        if any(b2 <= b1 for b1, b2 in zip(value, value[1:])):
            raise ValueError(f"must increase strictly, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _consistent(self):
        if self.warmup_steps is not None and self.warmup_epochs > 0:
            raise _field_error("warmup_steps", "set warmup_epochs or warmup_steps, not both "
                               f"(got warmup_epochs={self.warmup_epochs}, warmup_steps={self.warmup_steps})")
        if self.boundaries and self.boundary_steps:
            raise _field_error("boundary_steps", "set boundaries (epochs) or boundary_steps, not both")
        if self.name == "step" and not (self.boundaries or self.boundary_steps):
            raise _field_error("boundaries", "schedule 'step' needs boundaries (epochs) or boundary_steps")
        return self


class LrMultiplier(_Strict):
    """Per-variable-group learning rate: variables whose path matches `pattern` train at lr * multiplier."""

    pattern: str = Field(..., description="regular expression, searched (re.search) in each variable's path")
    multiplier: float = Field(..., ge=0, description="factor on the learning rate (0 freezes the group)")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value):
        try:
            re.compile(value)
        except re.error as e:
            raise ValueError(f"{value!r} is not a valid regular expression ({e})") from None
        return value


class CheckpointConfig(_Strict):
    """Best-checkpoint saving and the BackupAndRestore backup."""

    monitor: str = Field("val_loss", min_length=1, description="metric that picks the best checkpoint")
    mode: Literal["auto", "min", "max"] = Field("auto", description="whether the monitored metric is better low or high")
    backup_every: Literal["epoch"] | int = Field(
        "epoch", description="BackupAndRestore frequency: 'epoch' or every N steps (N >= 1)")

    @field_validator("backup_every")
    @classmethod
    def _positive(cls, value):
        if isinstance(value, int) and value < 1:
            raise ValueError(f"must be 'epoch' or an integer >= 1, got {value}")
        return value


class TensorBoardConfig(_Strict):
    """TensorBoard logs in tensorboard/{train,validation}/ (scalars, learning rate, examples/s, images)."""

    enabled: bool = Field(True, description="write TensorBoard logs")
    update_freq: Literal["epoch", "batch"] | int = Field(
        "epoch", description="write train scalars every 'epoch', every 'batch', or every N steps")
    image_summaries: int = Field(3, ge=0, description="number of input (and, for dense tasks, prediction) images logged")

    @field_validator("update_freq")
    @classmethod
    def _positive(cls, value):
        if isinstance(value, int) and value < 1:
            raise ValueError(f"must be 'epoch', 'batch' or an integer >= 1, got {value}")
        return value


class TrainerConfig(_Strict):
    """How to train: loop lengths, optimiser, schedule, distribution, precision, logging."""

    epochs: int = Field(1, ge=1, description="training epochs")
    steps_per_epoch: int | None = Field(None, ge=1, description="default: one pass over the training split")
    validation_steps: int | None = Field(None, ge=1, description="default: the whole validation split")
    validation_freq: int = Field(1, ge=1, description="validate every N epochs")
    test_steps: int | None = Field(None, ge=1, description="final evaluation on the test split; default: all of it")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    lr_multipliers: list[LrMultiplier] = Field(
        default_factory=list, description="per-variable-group rates; the first matching pattern wins, others x1")
    strategy: Literal["default", "mirrored", "multi_worker", "tpu"] = Field(
        "default", description="tf.distribute strategy; multi_worker reads TF_CONFIG")
    cpu_replicas: int | None = Field(
        None, ge=1, description="mirrored on a machine without GPUs: split the CPU into N logical devices")
    tpu: str | None = Field(None, description="tpu: the TPU name or address for the cluster resolver")
    per_replica_batch_size: int | None = Field(
        None, ge=1, description="if set, must equal data.batch_size / number of replicas (checked at run time)")
    mixed_precision: Literal["mixed_float16", "mixed_bfloat16"] | None = Field(
        None, description="Keras dtype policy; null trains in float32. Export is always float32")
    jit_compile: bool = Field(False, description="XLA-compile the train and test steps")
    steps_per_execution: int = Field(1, ge=1, description="steps run per tf.function call")
    seed: int = Field(0, ge=0, description="seeds Python, NumPy, TF and the data pipeline")
    deterministic: bool = Field(False, description="TF op determinism: same seed, same weights")
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    nan_guard: bool = Field(True, description="stop with a clear error when the loss becomes NaN or inf")
    tensorboard: TensorBoardConfig = Field(default_factory=TensorBoardConfig)
    log_every: int = Field(0, ge=0, description="log a text line (loss, lr, examples/s) every N steps; 0: progress bar only")


# ----------------------------------------------------------------------------------------------
# export
# ----------------------------------------------------------------------------------------------


class ExportConfig(_Strict):
    """The export stage: SavedModel (TF Serving layout) and ONNX, parity-checked against Keras."""

    enabled: bool = Field(True, description="export after training (mode train_and_export)")
    formats: list[Literal["saved_model", "onnx"]] = Field(
        default_factory=lambda: ["saved_model", "onnx"], min_length=1, description="what to write")
    name: str | None = Field(
        None, pattern=_NAME_PATTERN, description="model name in export/saved_model/<name>/<version>/; default: experiment")
    version: int = Field(1, ge=1, description="TF Serving version directory")
    tolerance: float = Field(1e-4, gt=0, description="largest allowed |Keras - SavedModel| and |Keras - ONNX|")
    num_parity_examples: int = Field(16, ge=1, description="real inputs used for the parity check")
    batch_size: int | None = Field(
        None, ge=1, description="fixed batch size of the serving signature (e.g. 1 for latency serving, "
        "where ConvNet-AIG skips blocks with one cond each); null: any batch size")

    @field_validator("formats")
    @classmethod
    def _unique(cls, value):
        if len(set(value)) != len(value):
            raise ValueError(f"must not repeat, got {list(value)}")
        return value


# ----------------------------------------------------------------------------------------------
# model and task: a registry name plus the constructor's keyword arguments, flat
# ----------------------------------------------------------------------------------------------


class _NamedCall(BaseModel):
    """`name` plus keyword arguments (extra keys), checked against the registry by `check_names`."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(..., min_length=1)

    @property
    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments for the registered constructor (everything but `name`)."""
        return dict(self.model_extra or {})


class ModelConfig(_NamedCall):
    """`model: {name: resnet20, num_classes: 10, ...}`: a registered model and its constructor's kwargs."""


class TaskConfig(_NamedCall):
    """`task: {name: classification, ...}`: a registered task and its kwargs (model and data_info come from the trainer)."""


# ----------------------------------------------------------------------------------------------
# the experiment
# ----------------------------------------------------------------------------------------------


class ExperimentConfig(_Strict):
    experiment: str = Field(
        ..., pattern=_NAME_PATTERN, description="the run's name; default workdir runs/<experiment>; default: the YAML file's stem")
    model: ModelConfig
    data: DataConfig
    task: TaskConfig
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)

    @model_validator(mode="after")
    def _batch(self):
        per_replica = self.trainer.per_replica_batch_size
        if per_replica is not None and self.trainer.strategy == "default" and per_replica != self.data.batch_size:
            raise _field_error(
                "trainer.per_replica_batch_size",
                f"{per_replica} must equal data.batch_size ({self.data.batch_size}) with strategy 'default' "
                "(one replica); data.batch_size is the global batch")
        return self

    @property
    def export_name(self) -> str:
        return self.export.name or self.experiment


# ----------------------------------------------------------------------------------------------
# batch sizes (run time, once the replica count is known)
# ----------------------------------------------------------------------------------------------


def batch_sizes(config: ExperimentConfig, num_replicas: int) -> tuple[int, int]:
    """(global, per-replica) batch sizes for `num_replicas`, or ConfigError.

    `data.batch_size` is the global batch; it must divide evenly over the replicas, and when
    `trainer.per_replica_batch_size` is given, global == per_replica * num_replicas.
    """
    global_batch = config.data.batch_size
    per_replica = config.trainer.per_replica_batch_size
    if per_replica is not None and per_replica * num_replicas != global_batch:
        raise ConfigError(
            f"trainer.per_replica_batch_size: {per_replica} x {num_replicas} replicas = {per_replica * num_replicas} "
            f"!= data.batch_size {global_batch} (the global batch); make them agree")
    if global_batch % num_replicas:
        raise ConfigError(
            f"data.batch_size: {global_batch} does not divide over {num_replicas} replicas; "
            f"use a multiple of {num_replicas}")
    return global_batch, global_batch // num_replicas


# ----------------------------------------------------------------------------------------------
# YAML
# ----------------------------------------------------------------------------------------------

# YAML 1.1 (PyYAML) reads `1e-4` as a string; accept it as a float, as people write it.
_FLOAT_RE = re.compile(r"""^(?:
     [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X)


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads 1e-4 as a float and refuses duplicate keys."""


_Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, list("-+0123456789."))


def _construct_mapping(loader, node, deep=False):
    loader.flatten_mapping(node)
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _parse_yaml(text: str, where: str):
    try:
        return yaml.load(text, Loader=_Loader)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        at = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{where}:{at} YAML syntax error: {' '.join(str(problem).split())}") from None


def load_yaml(path: str | os.PathLike) -> dict:
    """Read a config YAML into a dict (no validation). ConfigError if missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found")
    data = _parse_yaml(path.read_text(encoding="utf-8"), str(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections "
                          f"(experiment, model, data, task, trainer, export), got {type(data).__name__}")
    return data


# ----------------------------------------------------------------------------------------------
# --set overrides
# ----------------------------------------------------------------------------------------------


def _parse_override(item: str) -> tuple[list[str], Any]:
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {item!r}: expected key.path=value, e.g. trainer.epochs=2")
    value = _parse_yaml(text, f"--set {key}") if text.strip() else None
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str] | None) -> dict:
    """Apply `a.b.c=value` overrides (values parsed as YAML) to a copy of the raw config dict.

    Missing sections are created (unknown keys are then reported by validation); a numeric part
    indexes a list (`trainer.lr_multipliers.0.multiplier=10`).
    """
    data = copy.deepcopy(data) if data else {}
    for item in overrides or []:
        parts, value = _parse_override(item)
        node = data
        for depth, part in enumerate(parts[:-1]):
            here = ".".join(parts[:depth + 1])
            if isinstance(node, list):
                node = node[_list_index(node, part, here, item)]
                continue
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item}: {'.'.join(parts[:depth])} is a value ({node!r}), not a section")
            if node.get(part) is None:
                if parts[depth + 1].isdigit():
                    raise ConfigError(f"--set {item}: {here} is not a list with item {parts[depth + 1]} (it is unset)")
                node[part] = {}
            node = node[part]
        last = parts[-1]
        if isinstance(node, list):
            node[_list_index(node, last, ".".join(parts), item)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"--set {item}: {'.'.join(parts[:-1])} is a value ({node!r}), not a section")
    return data


def _list_index(node: list, part: str, here: str, item: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"--set {item}: {here}: {part!r} is not an index of a list of {len(node)} items "
                          f"(valid: 0..{len(node) - 1})")
    return int(part)


# ----------------------------------------------------------------------------------------------
# pydantic errors -> one line
# ----------------------------------------------------------------------------------------------


def _unwrap(annotation):
    """Strip Annotated and Optional; returns the remaining annotation."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) == 1:
                annotation = args[0]
                continue
        return annotation


def _is_model(annotation) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _literal_choices(annotation) -> list | None:
    """The values of a Literal annotation (with None when Optional), else None."""
    nullable = False
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = typing.get_args(annotation)
        nullable = type(None) in args
        annotation = _unwrap(annotation)
    if typing.get_origin(annotation) is Literal:
        return list(typing.get_args(annotation)) + ([None] if nullable else [])
    return None


def _walk(root: type[BaseModel], loc: tuple) -> tuple[list[str], type[BaseModel] | None, Any]:
    """Follow a pydantic error location: (path parts, the model owning the last key, its annotation)."""
    parts: list[str] = []
    current: Any = root
    owner: type[BaseModel] | None = None
    annotation: Any = None
    for seg in loc:
        cur = _unwrap(current)
        if isinstance(seg, int):
            parts.append(str(seg))
            args = typing.get_args(cur)
            current = args[0] if typing.get_origin(cur) in (list, tuple, set) and args else None
            annotation = current
            continue
        if _is_model(cur):
            parts.append(seg)
            owner = cur
            field = cur.model_fields.get(seg)
            annotation = current = field.annotation if field else None
            continue
        if typing.get_origin(cur) is dict:
            parts.append(str(seg))
            args = typing.get_args(cur)
            current = args[1] if len(args) == 2 else None
            continue
        if typing.get_origin(cur) in (Union, types.UnionType):
            # A union member tag such as 'int' or "literal['epoch']": not part of the key path.
            members = [m for m in typing.get_args(cur) if getattr(m, "__name__", None) == seg]
            current = members[0] if members else None
            continue
        if current is None:
            continue
        parts.append(str(seg))
        current = None
    return parts, owner, annotation


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _alternative(msg: str) -> str:
    msg = msg.removeprefix("Input should be ").removeprefix("Value error, ")
    return msg


# Common abbreviations and spellings of field names, for "did you mean".
_ALIASES = {"lr": "learning_rate", "wd": "weight_decay", "bs": "batch_size", "batch": "batch_size",
            "optimiser": "optimizer", "opt": "optimizer", "lr_schedule": "schedule", "scheduler": "schedule",
            "num_epochs": "epochs", "steps": "steps_per_epoch", "distribution_strategy": "strategy",
            "precision": "mixed_precision", "xla": "jit_compile", "random_seed": "seed"}


def _suggest(key: str, valid) -> str:
    """did_you_mean over whole names, else over their underscore-separated words (widht -> width_multiplier)."""
    if _ALIASES.get(str(key)) in valid:
        return f" (did you mean {_ALIASES[key]!r}?)"
    hint = did_you_mean(key, valid)
    if hint:
        return hint
    words: dict[str, str] = {}
    for name in valid:
        for word in str(name).split("_"):
            if len(word) > 2:
                words.setdefault(word, name)
    close = difflib.get_close_matches(str(key), list(words), n=1, cutoff=0.75)
    return f" (did you mean {words[close[0]]!r}?)" if close else ""


def _field_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Dotted paths of every field of `model`, recursing into sections."""
    out = []
    for name, field in model.model_fields.items():
        out.append(prefix + name)
        inner = _unwrap(field.annotation)
        if _is_model(inner):
            out.extend(_field_paths(inner, prefix + name + "."))
    return out


def _elsewhere(root: type[BaseModel], key: str, prefix: str, exact: bool) -> str:
    """' (did you mean 'a.b.key'?)' when `key` (exact, or else a near miss) is a field of another section."""
    paths = _field_paths(root, prefix + "." if prefix else "")
    by_leaf: dict[str, str] = {}
    for path in paths:
        by_leaf.setdefault(path.rsplit(".", 1)[-1], path)
    if exact:
        return f" (did you mean {by_leaf[key]!r}?)" if key in by_leaf else ""
    close = difflib.get_close_matches(key, list(by_leaf), n=1, cutoff=0.8)
    return f" (did you mean {by_leaf[close[0]]!r}?)" if close else ""


def _one_error(root: type[BaseModel], errors: list[dict], prefix: str) -> tuple[str, str]:
    """(path, message) for the errors that share one path (several when a union failed)."""
    err = errors[0]
    parts, owner, annotation = _walk(root, tuple(err["loc"]))
    path = ".".join(([prefix] if prefix else []) + parts)
    kind = err["type"]
    value = err.get("input")
    if kind == "extra_forbidden":
        key = parts[-1] if parts else "?"
        valid = sorted(owner.model_fields) if owner else []
        hint = (_elsewhere(root, key, prefix, exact=True) or _suggest(key, valid)
                or (key in _ALIASES and _elsewhere(root, _ALIASES[key], prefix, exact=True))
                or _elsewhere(root, key, prefix, exact=False))
        return path, f"{path}: unknown key{hint}; valid: {', '.join(valid)}"
    if kind == "missing":
        if parts and parts[-1].isdigit():
            return path, f"{path}: item missing (too few items)"
        return path, f"{path}: required key missing"
    if kind == "string_pattern_mismatch":
        pattern = err.get("ctx", {}).get("pattern", "")
        return path, f"{path}: bad value {_short(value)}: must match {pattern!r}"
    if kind == "field_error":
        ctx = err.get("ctx", {})
        full = ".".join(([path] if path else []) + [ctx["field"]])
        return full, f"{full}: {ctx['message']}"
    if kind in ("value_error", "assertion_error"):
        msg = _alternative(str(err.get("ctx", {}).get("error", err["msg"])) if kind == "value_error" else err["msg"])
        return path, f"{path}: {msg}" if path else msg
    if kind == "literal_error" and len(errors) == 1:
        choices = _literal_choices(annotation) or []
        shown = ["null" if c is None else str(c) for c in choices]
        if choices:
            return path, f"{path}: unknown value {_short(value)}{did_you_mean(value, shown)}; valid: {', '.join(shown)}"
    alternatives = []
    for e in errors:
        alt = _alternative(e["msg"])
        if alt not in alternatives:
            alternatives.append(alt)
    return path, f"{path}: bad value {_short(value)}: expected {' or '.join(alternatives)}"


def format_validation_error(error: ValidationError, root: type[BaseModel], prefix: str = "") -> str:
    """One line for a pydantic ValidationError: the first problem, plus 'and N more'."""
    groups: dict[str, list[dict]] = {}
    for err in error.errors():
        parts, _, _ = _walk(root, tuple(err["loc"]))
        groups.setdefault(".".join(parts), []).append(err)
    # An unknown key first: a misspelt key also makes the intended one "missing".
    ordered = sorted(groups.values(), key=lambda errs: errs[0]["type"] != "extra_forbidden")
    messages = [_one_error(root, errs, prefix) for errs in ordered]
    path, line = messages[0]
    more = len(messages) - 1
    if more:
        line += f" (and {more} more error{'s' if more > 1 else ''})"
    return " ".join(line.split())


# ----------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------


def validate_schema(data: dict, *, overrides: list[str] | None = None) -> ExperimentConfig:
    """Stage 1: the pydantic schema (no registry, no TensorFlow). ConfigError on failure."""
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_blame_override(format_validation_error(e, ExperimentConfig), overrides)) from None


def _blame_override(message: str, overrides: list[str] | None) -> str:
    """Append '(set by --set k=v)' when the failing key came from an override."""
    path = message.split(":", 1)[0]
    for item in reversed(overrides or []):
        key = item.partition("=")[0].strip()
        if path == key or path.startswith(key + ".") or key.startswith(path + "."):
            return f"{message} (set by --set {item})"
    return message


# Task constructor arguments that the trainer passes itself (docs/design/contracts.md).
TRAINER_PROVIDED_TASK_ARGS = ("model", "data_info")
# Model constructor arguments that the trainer passes itself (none at present).
TRAINER_PROVIDED_MODEL_ARGS: tuple[str, ...] = ()
# Required arguments the trainer fills in when the config leaves them out (num_classes from the data).
TRAINER_FILLED_ARGS = ("num_classes",)
# Keras layer/model base keyword arguments accepted by constructors that forward **kwargs.
_KERAS_BASE_KWARGS = ("dtype", "trainable")

def _plain_annotation(annotation) -> bool:
    """Whether an annotation is made only of builtins / Literal / unions / containers (safe to validate)."""
    if annotation in (int, float, bool, str, type(None), Any):
        return annotation is not Any
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return True
    if origin in (Union, types.UnionType, list, tuple, dict):
        return all(a is Ellipsis or _plain_annotation(a) for a in typing.get_args(annotation))
    return False


def _check_kwargs(section: str, what: str, registered_name: str, factory, kwargs: dict, provided: tuple) -> None:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return
    params = {n: p for n, p in signature.parameters.items()
              if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    var_keyword = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    valid = [n for n in params if n not in provided and n != "name"]
    accepted = set(valid) | (set(_KERAS_BASE_KWARGS) if var_keyword else set())
    fixed = getattr(factory, "fixed_arguments", None) or {}
    for key in kwargs:
        if key in fixed:
            raise ConfigError(f"{section}.{key}: fixed to {fixed[key]!r} by {what} {registered_name!r}; "
                              f"valid arguments: {', '.join(valid) or '(none)'}")
        if key in provided:
            raise ConfigError(f"{section}.{key}: set by the trainer, not in the config; "
                              f"valid arguments of {what} {registered_name!r}: {', '.join(valid) or '(none)'}")
        if key not in accepted:
            raise ConfigError(f"{section}.{key}: unknown argument of {what} {registered_name!r}"
                              f"{_suggest(key, valid)}; valid: {', '.join(valid) or '(none)'}")
    missing = [n for n, p in params.items() if p.default is p.empty and n not in kwargs
               and n not in provided and n not in TRAINER_FILLED_ARGS and n != "name"]
    if missing:
        raise ConfigError(f"{section}.{missing[0]}: required argument of {what} {registered_name!r} missing "
                          f"(required: {', '.join(missing)})")
    # Best effort: check values against plain annotations (int, float, Literal, ...).
    try:
        hints = typing.get_type_hints(factory.__init__ if inspect.isclass(factory) else factory)
    except Exception:  # noqa: BLE001 - annotations that do not resolve are simply not checked
        return
    from pydantic import TypeAdapter
    for key, value in kwargs.items():
        annotation = hints.get(key)
        if annotation is None or not _plain_annotation(annotation):
            continue
        try:
            TypeAdapter(annotation).validate_python(value)
        except ValidationError as e:
            msgs = []
            for err in e.errors():
                alt = _alternative(err["msg"])
                if alt not in msgs:
                    msgs.append(alt)
            raise ConfigError(f"{section}.{key}: bad value {_short(value)} for {what} {registered_name!r}: "
                              f"expected {' or '.join(msgs)}") from None
        except Exception:  # noqa: BLE001 - an annotation pydantic cannot handle is not checked
            continue


def _toyworld_variants() -> dict | None:
    """The toyworld VARIANTS, or None while the variants module does not exist."""
    try:
        from garden.data.toyworld import variants
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("garden.data.toyworld"):
            return None
        raise
    return getattr(variants, "VARIANTS", None)


def dataset_names() -> list[str]:
    """Every accepted `data.name`: registered datasets, toyworld variants, the built-in source forms."""
    from garden.registry import DATASETS
    names = set(DATASETS.names()) | {"fashion_mnist", "folder"}
    variants = _toyworld_variants()
    names |= {f"toyworld:{v}" for v in variants} if variants else {"toyworld:<variant>"}
    return sorted(names) + ["tfds:<name>[/<config>]"]


def _check_data(data: DataConfig) -> None:
    """data.name against the registry and the data layer's sources; toyworld options and splits."""
    from garden.data.errors import DataError
    from garden.registry import DATASETS
    if data.name in DATASETS:
        return
    registered_hint = did_you_mean(data.name, DATASETS.names())
    if registered_hint:
        raise ConfigError(f"data.name: unknown dataset {data.name!r}{registered_hint}; valid: "
                          f"{', '.join(dataset_names())}")
    from garden.data import sources
    try:
        kind, rest = sources.parse_source_name(data.name)
    except DataError as e:
        extra = f"; registered datasets: {', '.join(DATASETS.names())}" if DATASETS.names() else ""
        raise ConfigError(f"data.name: {e}{extra}") from None
    if kind != "toyworld" or _toyworld_variants() is None:
        return
    from garden.data.toyworld import builder
    try:
        builder.get_variant(rest)
    except DataError as e:
        raise ConfigError(f"data.name: {e} (write toyworld:<variant>)") from None
    try:
        builder.validate_options(rest, dict(data.options))
    except DataError as e:
        raise ConfigError(f"data.options: {e}") from None
    for field in ("train_split", "validation_split", "test_split"):
        try:
            builder.check_split(rest, dict(data.options), getattr(data, field))
        except DataError as e:
            raise ConfigError(f"data.{field}: {e}") from None


def check_names(config: ExperimentConfig) -> ExperimentConfig:
    """Stage 2: names against the registries and kwargs against the constructors (imports them)."""
    from garden import registry
    registry.import_all()
    for section, reg, provided in (("model", registry.MODELS, TRAINER_PROVIDED_MODEL_ARGS),
                                   ("task", registry.TASKS, TRAINER_PROVIDED_TASK_ARGS)):
        named = getattr(config, section)
        if named.name not in reg:
            raise ConfigError(f"{section}.name: {unknown_choice(reg.kind, named.name, reg.names())}")
        _check_kwargs(section, reg.kind, named.name, reg.get(named.name), named.kwargs, provided)
    _check_data(config.data)
    return config


def validate_config(data: dict, *, overrides: list[str] | None = None, check_registry: bool = True,
                    default_name: str | None = None, before_registry=None) -> ExperimentConfig:
    """Raw dict -> overrides -> schema -> registry names. ConfigError with one line on failure.

    `before_registry()`, if given, runs between the two stages (the CLI imports TensorFlow there).
    """
    data = apply_overrides(data, overrides)
    if default_name is not None and "experiment" not in data:
        data["experiment"] = default_name
    config = validate_schema(data, overrides=overrides)
    if check_registry:
        if before_registry is not None:
            before_registry()
        try:
            check_names(config)
        except ConfigError as e:
            raise ConfigError(_blame_override(str(e), overrides)) from None
    return config


def load_config(path: str | os.PathLike, overrides: list[str] | None = None, *,
                check_registry: bool = True) -> ExperimentConfig:
    """Read, override (`a.b.c=value`) and validate a config YAML.

    `experiment` defaults to the file's stem. With `check_registry=False` only the schema is
    checked (no TensorFlow import).
    """
    return validate_config(load_yaml(path), overrides=overrides, check_registry=check_registry,
                           default_name=Path(path).stem)


# ----------------------------------------------------------------------------------------------
# writing, hashing, comparing
# ----------------------------------------------------------------------------------------------


def _plain(config: ExperimentConfig) -> dict:
    return config.model_dump(mode="json")


def config_hash(config: ExperimentConfig) -> str:
    """sha256 (hex) of the canonical JSON of the resolved config."""
    canonical = json.dumps(_plain(config), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class _Dumper(yaml.SafeDumper):
    pass


def _represent_list(dumper, value):
    flow = all(not isinstance(v, (dict, list)) for v in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def to_yaml(config: ExperimentConfig) -> str:
    return yaml.dump(_plain(config), Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=100)


def dump_config(config: ExperimentConfig, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML, atomically (temporary file + os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (f"# Resolved config of experiment {config.experiment!r} (config hash {config_hash(config)[:12]}).\n"
            + to_yaml(config))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def config_diff(a: ExperimentConfig | dict, b: ExperimentConfig | dict) -> list[tuple[str, Any, Any]]:
    """The differing leaves as (dotted key, value in a, value in b), in field order."""
    a = _plain(a) if isinstance(a, BaseModel) else a
    b = _plain(b) if isinstance(b, BaseModel) else b
    out: list[tuple[str, Any, Any]] = []
    _missing = "<absent>"

    def rec(x, y, prefix):
        if isinstance(x, dict) and isinstance(y, dict):
            for key in list(x) + [k for k in y if k not in x]:
                rec(x.get(key, _missing), y.get(key, _missing), f"{prefix}.{key}" if prefix else str(key))
        elif x != y:
            out.append((prefix, x, y))

    rec(a, b, "")
    return out


# ----------------------------------------------------------------------------------------------
# the field table for docs/configs.md
# ----------------------------------------------------------------------------------------------

DOC_BEGIN = "<!-- BEGIN GENERATED: python -m garden.config --doc docs/configs.md -->"
DOC_END = "<!-- END GENERATED -->"


def _type_name(annotation) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin is Literal:
        return " \\| ".join("null" if a is None else str(a) for a in typing.get_args(annotation))
    if origin in (Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin in (list, tuple, dict):
        args = ", ".join("..." if a is Ellipsis else _type_name(a) for a in typing.get_args(annotation))
        return f"{origin.__name__}[{args}]"
    if annotation is type(None):
        return "null"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def _range(field) -> str:
    bounds = []
    for meta in field.metadata:
        for attr, symbol in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤"), ("min_length", "length ≥"),
                             ("pattern", "matches")):
            value = getattr(meta, attr, None)
            if value is not None:
                bounds.append(f"{symbol} `{value}`" if attr == "pattern" else f"{symbol} {value}")
    return ", ".join(bounds)


def _default(field) -> str:
    if field.is_required():
        return "**required**"
    value = field.get_default(call_default_factory=True)
    if _is_model(type(value)):
        return "(section)"
    return "`" + json.dumps(value if not isinstance(value, tuple) else list(value)) + "`"


_SECTION_DOCS = {"data": "the data source and its tf.data pipeline (`garden/data/config.py`)"}


def _md(text: str) -> str:
    """Escape text for a markdown table cell."""
    return text.replace("|", "\\|").replace("<", "\\<").replace(">", "\\>")


def doc_table() -> str:
    """The markdown table of every config field (recursing into sections)."""
    rows = ["| key | type | default | range | meaning |", "|---|---|---|---|---|"]

    def rec(model: type[BaseModel], prefix: str):
        for name, field in model.model_fields.items():
            key = f"{prefix}{name}"
            inner = _unwrap(field.annotation)
            element = typing.get_args(inner)[0] if typing.get_origin(inner) is list and typing.get_args(inner) else None
            if _is_model(inner) and inner.model_config.get("extra") == "allow":
                rows.append(f"| `{key}.name` | str | **required** |  | registered {name} name; other keys are its "
                            f"constructor's keyword arguments (see `run.py --list`) |")
                continue
            if _is_model(inner):
                doc = _SECTION_DOCS.get(key) or (inner.__doc__ or "").strip().split("\n")[0]
                rows.append(f"| `{key}` | section | | | {_md(doc)} |")
                rec(inner, key + ".")
                continue
            type_name = "list of {" + ", ".join(element.model_fields) + "}" if _is_model(element) else _type_name(field.annotation)
            description = _md(field.description or "")
            rows.append(f"| `{key}` | {type_name} | {_default(field)} | {_range(field)} | {description} |")
            if _is_model(element):
                rec(element, key + "[].")

    rec(ExperimentConfig, "")
    return "\n".join(rows) + "\n"


def _update_doc(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    start, end = text.index(DOC_BEGIN), text.index(DOC_END)
    new = text[:start] + DOC_BEGIN + "\n\n" + doc_table() + "\n" + text[end:]
    path.write_text(new, encoding="utf-8")


def _main(argv: list[str]) -> int:
    if argv[:1] == ["--doc"]:
        if len(argv) > 1:
            _update_doc(Path(argv[1]))
        else:
            sys.stdout.write(doc_table())
        return 0
    sys.stderr.write("usage: python -m garden.config --doc [docs/configs.md]\n")
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
