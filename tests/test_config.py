"""The typed config: schema errors as one line, overrides, YAML, registry checks, round trip.

The registries are isolated (a dummy model, task and dataset; `import_all` a no-op), so these
tests never import TensorFlow.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest
import yaml

from garden import config as cfg
from garden import registry
from garden.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


class TinyNet:
    """A stand-in model: plain keyword arguments, like the garden's Keras models."""

    def __init__(self, num_classes: int, width_multiplier: float = 1.0,
                 activation: Literal["relu", "swish"] = "relu", **kwargs):
        pass


def tiny_task(model, data_info, label_smoothing: float = 0.0, top_k: int = 5):
    return None


def deep_net(depth: int, num_classes: int, *, dropout: float = 0.0):
    return None


@pytest.fixture
def registries(monkeypatch):
    """MODELS/TASKS/DATASETS holding only the dummies; import_all does nothing."""
    monkeypatch.setattr(registry, "import_all", lambda: None)
    monkeypatch.setattr(registry.MODELS, "_entries", {"tiny": TinyNet, "deep": deep_net})
    monkeypatch.setattr(registry.TASKS, "_entries", {"tiny_task": tiny_task})
    monkeypatch.setattr(registry.DATASETS, "_entries", {"dummy_data": object})
    monkeypatch.setattr(cfg, "_toyworld_variants", lambda: {"objects": None})


def base() -> dict:
    return {"experiment": "unit", "model": {"name": "tiny", "num_classes": 3},
            "data": {"name": "dummy_data", "batch_size": 8}, "task": {"name": "tiny_task"}}


def error_of(overrides, data=None, check_registry=False) -> str:
    with pytest.raises(ConfigError) as info:
        cfg.validate_config(base() if data is None else data, overrides=overrides, check_registry=check_registry)
    message = str(info.value)
    assert "\n" not in message
    return message


# ----------------------------------------------------------------------------------------------
# schema


def test_defaults_and_kwargs():
    config = cfg.validate_config(base(), check_registry=False)
    assert config.model.name == "tiny" and config.model.kwargs == {"num_classes": 3}
    assert config.task.kwargs == {}
    assert config.trainer.optimizer.name == "sgd" and config.trainer.strategy == "default"
    assert config.export.formats == ["saved_model", "onnx"] and config.export.tolerance == 1e-4
    assert config.export_name == "unit"


@pytest.mark.parametrize("override, expected", [
    ("trainr.epochs=2", "trainr: unknown key (did you mean 'trainer'?)"),
    ("trainer.epoch=2", "trainer.epoch: unknown key (did you mean 'epochs'?); valid: "),
    ("trainer.optimizer.momentun=0.5", "trainer.optimizer.momentun: unknown key (did you mean 'momentum'?)"),
    ("data.batchsize=2", "data.batchsize: unknown key (did you mean 'batch_size'?)"),
    ("trainer.optimizer.lr=0.1", "trainer.optimizer.lr: unknown key (did you mean 'learning_rate'?)"),
    ("lr=0.1", "lr: unknown key (did you mean 'trainer.optimizer.learning_rate'?)"),
    ("trainer.batch_size=2", "trainer.batch_size: unknown key (did you mean 'data.batch_size'?)"),
    ("epochs=2", "epochs: unknown key (did you mean 'trainer.epochs'?)"),
    ("trainer.epochs=ten", "trainer.epochs: bad value 'ten': expected a valid integer"),
    ("trainer.epochs=-1", "trainer.epochs: bad value -1: expected greater than or equal to 1"),
    ("trainer.optimizer.learning_rate=0", "trainer.optimizer.learning_rate: bad value 0: expected greater than 0"),
    ("trainer.optimizer.momentum=1.5", "trainer.optimizer.momentum: bad value 1.5"),
    ("trainer.strategy=mirror", "trainer.strategy: unknown value 'mirror' (did you mean 'mirrored'?); "
                                "valid: default, mirrored, multi_worker, tpu"),
    ("trainer.mixed_precision=float16", "valid: mixed_float16, mixed_bfloat16, null"),
    ("trainer.optimizer.name=sgdd", "trainer.optimizer.name: unknown value 'sgdd' (did you mean 'sgd'?)"),
    ("trainer.schedule.name=step", "trainer.schedule.boundaries: schedule 'step' needs boundaries"),
    ("trainer.schedule.boundaries=[30,20]", "trainer.schedule.boundaries: must increase strictly"),
    ("trainer.tensorboard.update_freq=0", "trainer.tensorboard.update_freq: must be 'epoch', 'batch' or an integer"),
    ("trainer.tensorboard.update_freq=often", "trainer.tensorboard.update_freq: bad value 'often': expected 'epoch'"),
    ("trainer.lr_multipliers=[{pattern: '(', multiplier: 2}]", "trainer.lr_multipliers.0.pattern: '(' is not a valid"),
    ("trainer.lr_multipliers=[{pattern: a, multiplier: -1}]", "trainer.lr_multipliers.0.multiplier: bad value -1"),
    ("trainer.lr_multipliers=[{pattern: a, multiplr: 2}]", "trainer.lr_multipliers.0.multiplr: unknown key"),
    ("trainer.per_replica_batch_size=3", "trainer.per_replica_batch_size: 3 must equal data.batch_size (8)"),
    ("export.formats=[pb]", "export.formats.0: unknown value 'pb'; valid: saved_model, onnx"),
    ("export.formats=[]", "export.formats: bad value []"),
    ("export.version=0", "export.version: bad value 0"),
    ("experiment=a/b", "experiment: bad value 'a/b': must match"),
    ("data.augment.crop_size=[28]", "data.augment.crop_size.1: item missing"),
])
def test_schema_errors_are_one_line(override, expected):
    message = error_of([override])
    assert expected in message
    key = override.partition("=")[0]
    if message.startswith(key):  # the failing key came from the override: say so
        assert message.endswith(f"(set by --set {override})")


def test_clip_options_are_exclusive():
    message = error_of(["trainer.optimizer.clipnorm=1", "trainer.optimizer.global_clipnorm=2"])
    assert message.startswith("trainer.optimizer.global_clipnorm: only one of clipnorm, clipvalue, global_clipnorm")


def test_missing_section_and_several_errors():
    data = base()
    del data["task"]
    assert error_of([], data) == "task: required key missing"
    message = error_of(["trainer.epochs=0", "trainer.seed=-1", "export.version=0"])
    assert message.startswith("trainer.epochs: bad value 0") and "(and 2 more errors)" in message


def test_valid_values():
    config = cfg.validate_config(base(), check_registry=False, overrides=[
        "trainer.optimizer={name: adamw, learning_rate: 1e-3, weight_decay: 0.05, global_clipnorm: 1.0}",
        "trainer.schedule={name: step, boundaries: [30, 60], warmup_steps: 100}",
        "trainer.lr_multipliers=[{pattern: 'fusion', multiplier: 100}]",
        "trainer.lr_multipliers.0.multiplier=50",
        "trainer.tensorboard.update_freq=25", "trainer.mixed_precision=mixed_bfloat16",
        "trainer.strategy=mirrored", "trainer.cpu_replicas=2", "trainer.per_replica_batch_size=4",
        "export.formats=[onnx]", "data.augment.crop_size=[28, 28]",
    ])
    assert config.trainer.optimizer.learning_rate == 1e-3
    assert config.trainer.lr_multipliers[0].multiplier == 50
    assert config.trainer.tensorboard.update_freq == 25
    assert config.data.augment.crop_size == (28, 28)
    assert cfg.batch_sizes(config, 2) == (8, 4)
    with pytest.raises(ConfigError, match=r"per_replica_batch_size: 4 x 3 replicas = 12 != data.batch_size 8"):
        cfg.batch_sizes(config, 3)


def test_batch_must_divide_over_replicas():
    config = cfg.validate_config(base(), check_registry=False)
    assert cfg.batch_sizes(config, 1) == (8, 8)
    with pytest.raises(ConfigError, match="does not divide over 3 replicas"):
        cfg.batch_sizes(config, 3)


# ----------------------------------------------------------------------------------------------
# overrides


def test_override_parsing():
    data = cfg.apply_overrides(base(), ["trainer.epochs=3", "trainer.optimizer.learning_rate=1e-4",
                                        "data.image_size=[16, 16]", "trainer.mixed_precision=",
                                        "model.width_multiplier=0.5"])
    assert data["trainer"] == {"epochs": 3, "optimizer": {"learning_rate": 1e-4}, "mixed_precision": None}
    assert data["data"]["image_size"] == [16, 16]
    assert data["model"]["width_multiplier"] == 0.5
    assert "trainer" not in base()  # the input is not modified


@pytest.mark.parametrize("override, expected", [
    ("trainer.epochs", "--set 'trainer.epochs': expected key.path=value"),
    ("=3", "expected key.path=value"),
    ("trainer..epochs=3", "expected key.path=value"),
    ("model.name.x=3", "model.name is a value ('tiny'), not a section"),
    ("trainer.lr_multipliers.0.multiplier=2", "trainer.lr_multipliers is not a list with item 0"),
    ("trainer.epochs=[1", "--set trainer.epochs: line 1 column 3 YAML syntax error"),
])
def test_bad_overrides(override, expected):
    assert expected in error_of([override])


def test_override_list_index_out_of_range():
    message = error_of(["trainer.lr_multipliers=[{pattern: a, multiplier: 2}]", "trainer.lr_multipliers.3.multiplier=1"])
    assert "'3' is not an index of a list of 1 items (valid: 0..0)" in message


# ----------------------------------------------------------------------------------------------
# YAML files


def write(tmp_path, text, name="exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_yaml_file(tmp_path, registries):
    path = write(tmp_path, "# header\nmodel: {name: tiny, num_classes: 3}\ndata: {name: dummy_data}\n"
                           "task: {name: tiny_task}\ntrainer:\n  optimizer: {learning_rate: 1e-4}\n")
    config = cfg.load_config(path, ["trainer.epochs=2"])
    assert config.experiment == "exp"  # the file's stem
    assert config.trainer.optimizer.learning_rate == 1e-4  # YAML 1.1 would give the string '1e-4'
    assert config.trainer.epochs == 2


@pytest.mark.parametrize("text, expected", [
    ("model: [1, 2\n", "YAML syntax error"),
    ("model: {name: a}\nmodel: {name: b}\n", "duplicate key 'model' at line 2"),
    ("- 1\n- 2\n", "the top level must be a mapping"),
])
def test_bad_yaml(tmp_path, text, expected):
    with pytest.raises(ConfigError, match=expected) as info:
        cfg.load_config(write(tmp_path, text), check_registry=False)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file .*nope.yaml' not found"):
        cfg.load_config(tmp_path / "nope.yaml")


def test_round_trip_and_hash(tmp_path, registries):
    config = cfg.validate_config(base(), overrides=[
        "trainer.schedule={name: cosine, warmup_epochs: 0.5}", "data.image_size=[8, 8]",
        "trainer.lr_multipliers=[{pattern: x, multiplier: 2}]", "trainer.optimizer.epsilon=1e-10"])
    path = tmp_path / "run" / "config.yaml"
    cfg.dump_config(config, path)
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]  # no temporary file left
    again = cfg.load_config(path)
    assert again == config
    assert cfg.config_hash(again) == cfg.config_hash(config)
    assert len(cfg.config_hash(config)) == 64
    changed = config.model_copy(update={"experiment": "other"})
    assert cfg.config_hash(changed) != cfg.config_hash(config)
    assert cfg.config_diff(config, changed) == [("experiment", "unit", "other")]


def test_dump_is_atomic(tmp_path, monkeypatch):
    config = cfg.validate_config(base(), check_registry=False)
    path = tmp_path / "config.yaml"
    cfg.dump_config(config, path)
    before = path.read_text()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(cfg.os, "replace", boom)
    with pytest.raises(OSError):
        cfg.dump_config(config.model_copy(update={"experiment": "other"}), path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


# ----------------------------------------------------------------------------------------------
# registry stage


@pytest.mark.parametrize("override, expected", [
    ("model.name=tinny", "model.name: unknown model 'tinny' (did you mean 'tiny'?); valid: deep, tiny"),
    ("task.name=tiny_tsk", "task.name: unknown task 'tiny_tsk' (did you mean 'tiny_task'?); valid: tiny_task"),
    ("model.widht_multiplier=2", "model.widht_multiplier: unknown argument of model 'tiny' "
                                 "(did you mean 'width_multiplier'?); valid: num_classes, width_multiplier, activation"),
    ("model.width_multiplier=two", "model.width_multiplier: bad value 'two' for model 'tiny': expected a valid number"),
    ("model.activation=gelu", "model.activation: bad value 'gelu' for model 'tiny': expected 'relu' or 'swish'"),
    ("task.top_kk=1", "task.top_kk: unknown argument of task 'tiny_task' (did you mean 'top_k'?); "
                      "valid: label_smoothing, top_k"),
    ("task.model=1", "task.model: set by the trainer, not in the config"),
    ("model.num_classes=", "model.num_classes: bad value None"),
])
def test_registry_errors(registries, override, expected):
    message = error_of([override], check_registry=True)
    assert message.startswith(expected), message
    assert message.endswith(f"(set by --set {override})")


def test_missing_required_model_argument(registries):
    data = base()
    data["model"] = {"name": "deep"}
    assert error_of([], data, check_registry=True).startswith(
        "model.depth: required argument of model 'deep' missing (required: depth)")
    data["model"]["depth"] = 20  # num_classes may be left out: the trainer takes it from the data
    assert cfg.validate_config(data).model.kwargs == {"depth": 20}


def test_keras_base_kwargs_accepted_with_var_keyword(registries):
    config = cfg.validate_config(base(), overrides=["model.dtype=float32"])
    assert config.model.kwargs["dtype"] == "float32"


def test_unknown_dataset(registries):
    message = error_of(["data.name=dumy_data"], check_registry=True)
    assert message.startswith("data.name: unknown dataset 'dumy_data' (did you mean 'dummy_data'?); valid: "), message
    assert "tfds:<name>[/<config>]" in message


def test_unknown_data_source_form(registries):
    """Names that are no registered dataset go to the data layer's source parser (imports TF)."""
    message = error_of(["data.name=tfsd:cifar10"], check_registry=True)
    assert message.startswith("data.name: unknown data source 'tfsd:cifar10' (did you mean 'tfds:cifar10'?)"), message


# ----------------------------------------------------------------------------------------------
# no TensorFlow before validation; the generated doc is current


def test_config_and_cli_do_not_import_tensorflow():
    code = ("import sys, garden.config, garden.cli; "
            "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_docs_field_table_is_current():
    text = (REPO / "docs" / "configs.md").read_text()
    start = text.index(cfg.DOC_BEGIN) + len(cfg.DOC_BEGIN)
    end = text.index(cfg.DOC_END)
    assert text[start:end].strip() == cfg.doc_table().strip(), \
        "docs/configs.md is stale: run python -m garden.config --doc docs/configs.md"


def test_every_field_is_in_the_doc_table():
    table = cfg.doc_table()
    for key in ("trainer.optimizer.global_clipnorm", "trainer.schedule.warmup_steps", "trainer.lr_multipliers[].pattern",
                "trainer.checkpoint.monitor", "export.num_parity_examples", "data.batch_size", "model.name"):
        assert f"`{key}`" in table
    yaml.safe_load(cfg.to_yaml(cfg.validate_config(base(), check_registry=False)))
