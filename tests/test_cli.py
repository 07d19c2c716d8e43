"""run.py / garden.cli: exit codes and one-line errors, --set, workdir rules, modes, --list.

The registries hold dummies and `garden.trainer` is a fake module, so no TensorFlow is imported;
one test runs `python run.py` in a real subprocess to check the exit code end to end.
"""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

from garden import cli, registry
from garden import config as cfg

REPO = Path(__file__).resolve().parents[1]


class TinyNet:
    """A dummy model."""

    def __init__(self, num_classes: int, width_multiplier: float = 1.0, **kwargs):
        pass


def tiny_task(model, data_info, label_smoothing: float = 0.0):
    return None


CONFIG = """\
# python run.py --config tiny.yaml | nothing to expect | 0 s
experiment: tiny
model: {name: tiny, num_classes: 3}
data: {name: dummy_data, batch_size: 4}
task: {name: tiny_task}
trainer: {epochs: 2}
"""


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Dummy registries, a fake trainer that records its calls, and a config file; cwd = tmp_path."""
    monkeypatch.setattr(registry, "import_all", lambda: None)
    monkeypatch.setattr(registry.MODELS, "_entries", {"tiny": TinyNet})
    monkeypatch.setattr(registry.TASKS, "_entries", {"tiny_task": tiny_task})
    monkeypatch.setattr(registry.DATASETS, "_entries", {"dummy_data": object})
    monkeypatch.setattr(cfg, "_toyworld_variants", lambda: {"objects": None, "scenes": None})
    monkeypatch.setattr(cli, "import_tensorflow_quietly", lambda: None)
    calls = []

    def train_and_evaluate(config, workdir):
        calls.append(("train", config, workdir))
        (Path(workdir) / "checkpoints").mkdir(exist_ok=True)
        (Path(workdir) / "checkpoints" / "best.weights.h5").write_text("w")
        return {"test": {"accuracy": 0.5}}

    def evaluate(config, workdir):
        calls.append(("eval", config, workdir))
        return {"test_accuracy": 0.5}

    def export_from_workdir(config, workdir):
        calls.append(("export", config, workdir))
        return {"name": config.export_name}

    fake = types.ModuleType("garden.trainer")
    fake.train_and_evaluate, fake.evaluate, fake.export_from_workdir = train_and_evaluate, evaluate, export_from_workdir
    monkeypatch.setitem(sys.modules, "garden.trainer", fake)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text(CONFIG)
    return types.SimpleNamespace(path=tmp_path, calls=calls, config=str(tmp_path / "tiny.yaml"))


def run_main(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# ----------------------------------------------------------------------------------------------
# bad input -> exit 2 and one line


@pytest.mark.parametrize("yaml_edit, expected", [
    ("optimiser: {name: sgd}\n", "error: optimiser: unknown key (did you mean 'trainer.optimizer'?)"),
    ("trainer: {epochs: 2, optimizer: {nme: sgd}}\n", "error: trainer.optimizer.nme: unknown key (did you mean 'name'?)"),
    ("trainer: {epochs: two}\n", "error: trainer.epochs: bad value 'two': expected a valid integer"),
    ("trainer: {epochs: -3}\n", "error: trainer.epochs: bad value -3: expected greater than or equal to 1"),
    ("trainer: {strategy: gpu}\n", "error: trainer.strategy: unknown value 'gpu' (did you mean 'tpu'?); valid: default, mirrored"),
    ("model: {name: tinyy, num_classes: 3}\n", "error: model.name: unknown model 'tinyy' (did you mean 'tiny'?)"),
    ("task: {name: classify}\n", "error: task.name: unknown task 'classify'"),
    ("data: {name: dummy_dat}\n", "error: data.name: unknown dataset 'dummy_dat' (did you mean 'dummy_data'?)"),
    ("model: {name: tiny, num_classes: 3, widht_multiplier: 2}\n",
     "error: model.widht_multiplier: unknown argument of model 'tiny' (did you mean 'width_multiplier'?); "
     "valid: num_classes, width_multiplier"),
])
def test_bad_config_exits_2_with_one_line(env, capsys, yaml_edit, expected):
    data = yaml.safe_load(CONFIG)
    data.update(yaml.safe_load(yaml_edit))
    Path(env.config).write_text(yaml.safe_dump(data))
    code, out, err = run_main(capsys, "--config", env.config)
    assert code == 2
    assert one_error_line(err).startswith(expected), err
    assert not (env.path / "runs").exists() and env.calls == []


@pytest.mark.parametrize("override, expected", [
    ("trainer.epoch=3", "error: trainer.epoch: unknown key (did you mean 'epochs'?)"),
    ("trainer.optimizer.learning_rate=-1", "error: trainer.optimizer.learning_rate: bad value -1"),
    ("model.num_classes=three", "error: model.num_classes: bad value 'three' for model 'tiny'"),
    ("trainer.epochs", "error: --set 'trainer.epochs': expected key.path=value"),
])
def test_bad_override_exits_2(env, capsys, override, expected):
    code, out, err = run_main(capsys, "--config", env.config, "--set", override)
    assert code == 2
    assert one_error_line(err).startswith(expected), err


def test_usage_errors(env, capsys):
    code, _, err = run_main(capsys, "--config", env.config, "--mode", "fit")
    assert code == 2 and "invalid choice: 'fit'" in err
    code, _, err = run_main(capsys)
    assert code == 2 and one_error_line(err).startswith("error: --config is required")
    code, _, err = run_main(capsys, "--config", "missing.yaml")
    assert code == 2 and one_error_line(err) == "error: config file 'missing.yaml' not found"
    assert run_main(capsys, "--help")[0] == 0


def test_subprocess_exit_code(tmp_path):
    """End to end: `python run.py` with an unknown key exits 2 with one line on stderr."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG + "trainr: {epochs: 1}\n")
    result = subprocess.run([sys.executable, str(REPO / "run.py"), "--config", str(bad)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == ("error: trainr: unknown key (did you mean 'trainer'?); valid: data, "
                                     "experiment, export, model, task, trainer")
    assert not (tmp_path / "runs").exists()


# ----------------------------------------------------------------------------------------------
# running, --set, workdir rules


def test_train_and_export_writes_the_resolved_config(env, capsys):
    code, out, err = run_main(capsys, "--config", env.config, "--set", "trainer.epochs=3", "data.batch_size=2")
    assert code == 0, err
    workdir = env.path / "runs" / "tiny"
    saved = cfg.load_config(workdir / "config.yaml")
    assert saved.trainer.epochs == 3 and saved.data.batch_size == 2
    (mode, config, wd), = env.calls
    assert mode == "train" and wd == "runs/tiny" and config == saved and config.export.enabled
    assert "(new)" in out and "train_and_export done: test accuracy=0.5; details in" not in out
    assert "train_and_export done: test accuracy=0.5" in out


def test_mode_train_does_not_export(env, capsys):
    assert run_main(capsys, "--config", env.config, "--mode", "train", "--workdir", "w")[0] == 0
    (mode, config, wd), = env.calls
    assert mode == "train" and not config.export.enabled
    assert cfg.load_config(Path("w") / "config.yaml").export.enabled  # the saved config is the user's


def test_same_config_resumes_different_is_refused(env, capsys):
    assert run_main(capsys, "--config", env.config)[0] == 0
    code, out, _ = run_main(capsys, "--config", env.config)
    assert code == 0 and "(resume)" in out
    marker = env.path / "runs" / "tiny" / "metrics.json"
    marker.write_text("{}")
    code, _, err = run_main(capsys, "--config", env.config, "--set", "trainer.epochs=5")
    assert code == 2
    line = one_error_line(err)
    assert "holds a run with a different config (trainer.epochs: 2 in the run, 5 now)" in line
    assert "--overwrite" in line and "--workdir" in line
    assert marker.exists() and len(env.calls) == 2
    code, out, err = run_main(capsys, "--config", env.config, "--set", "trainer.epochs=5", "--overwrite")
    assert code == 0, err
    assert "(overwrite)" in out and not marker.exists()
    assert cfg.load_config(env.path / "runs" / "tiny" / "config.yaml").trainer.epochs == 5
    assert not [p for p in (env.path / "runs").iterdir() if p.name != "tiny"]  # nothing left aside


def test_foreign_folder_is_never_used_or_cleared(env, capsys):
    foreign = env.path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    for extra in ([], ["--overwrite"]):
        code, _, err = run_main(capsys, "--config", env.config, "--workdir", str(foreign), *extra)
        assert code == 2 and "holds no garden config.yaml" in one_error_line(err)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_overwrite_refuses_the_current_folder(env, capsys):
    assert run_main(capsys, "--config", env.config, "--workdir", "run1")[0] == 0
    (env.path / "config.yaml").write_text((env.path / "run1" / "config.yaml").read_text())
    code, _, err = run_main(capsys, "--config", env.config, "--workdir", ".", "--overwrite", "--set", "trainer.epochs=9")
    assert code == 2 and "refusing to clear" in one_error_line(err)
    assert (env.path / "tiny.yaml").exists()


def test_eval_and_export_modes(env, capsys):
    code, _, err = run_main(capsys, "--config", env.config, "--mode", "eval")
    assert code == 2 and "no run in" in one_error_line(err)
    Path("runs/tiny").mkdir(parents=True)
    cfg.dump_config(cfg.load_config(env.config), "runs/tiny/config.yaml")
    code, _, err = run_main(capsys, "--config", env.config, "--mode", "export")
    assert code == 2 and "no checkpoint in" in one_error_line(err)

    assert run_main(capsys, "--config", env.config, "--mode", "train")[0] == 0
    assert run_main(capsys, "--workdir", "runs/tiny", "--mode", "eval")[0] == 0  # the run's own config
    assert env.calls[-1][0] == "eval"
    code, _, _ = run_main(capsys, "--workdir", "runs/tiny", "--mode", "export", "--set", "export.version=2")
    assert code == 0 and env.calls[-1][0] == "export" and env.calls[-1][1].export.version == 2
    code, _, err = run_main(capsys, "--config", env.config, "--mode", "eval", "--set", "trainer.epochs=7")
    assert code == 2 and "may change only the export section" in one_error_line(err)
    code, _, err = run_main(capsys, "--config", env.config, "--mode", "eval", "--overwrite")
    assert code == 2 and "--overwrite applies to" in one_error_line(err)
    assert cfg.load_config("runs/tiny/config.yaml").export.version == 1


def test_missing_entry_point_is_a_clear_error(env, capsys, monkeypatch):
    monkeypatch.delattr(sys.modules["garden.trainer"], "evaluate")
    assert run_main(capsys, "--config", env.config)[0] == 0
    code, _, err = run_main(capsys, "--config", env.config, "--mode", "eval")
    assert code == 2 and "--mode eval is not available" in one_error_line(err)


def test_dry_run_prints_and_writes_nothing(env, capsys):
    code, out, _ = run_main(capsys, "--config", env.config, "--dry-run", "--set", "trainer.seed=7")
    assert code == 0 and out.startswith("# workdir: runs/tiny\n")
    assert yaml.safe_load(out)["trainer"]["seed"] == 7
    assert not Path("runs").exists() and env.calls == []


def test_multi_worker_chief(monkeypatch):
    config = cfg.validate_config(yaml.safe_load(CONFIG), overrides=["trainer.strategy=multi_worker"],
                                 check_registry=False)
    cluster = {"worker": ["localhost:1", "localhost:2"]}
    for index, chief in ((0, True), (1, False)):
        monkeypatch.setenv("TF_CONFIG", f'{{"cluster": {cluster!r}, "task": {{"type": "worker", "index": {index}}}}}'
                           .replace("'", '"'))
        assert cli.is_chief(config) is chief
    monkeypatch.delenv("TF_CONFIG")
    assert cli.is_chief(config)


# ----------------------------------------------------------------------------------------------
# --list


def test_list(env, capsys, monkeypatch):
    configs = env.path / "configs"
    (configs / "sub").mkdir(parents=True)
    (configs / "sub" / "exp.yaml").write_text("# python run.py --config configs/sub/exp.yaml\n# top-1 0.9, 2 min\nx: 1\n")
    monkeypatch.setattr(cli, "CONFIG_DIR", configs)
    code, out, _ = run_main(capsys, "--list")
    assert code == 0
    assert "  tiny(num_classes, width_multiplier=1.0)" in out
    assert "  tiny_task(label_smoothing=0.0)" in out
    for name in ("dummy_data", "fashion_mnist", "folder", "toyworld:objects", "toyworld:scenes", "tfds:<name>[/<config>]"):
        assert f"  {name}\n" in out
    assert "exp.yaml\n      python run.py --config configs/sub/exp.yaml\n      top-1 0.9, 2 min\n" in out


def test_diverged_training_is_one_line_and_exit_code_1(monkeypatch, capsys, tmp_path):
    """A NaN loss is not bad input: one line on stderr, exit code 1 (config errors use 2)."""
    from garden import cli
    from garden.errors import TrainingDiverged

    def diverge(config, workdir, mode):
        raise TrainingDiverged("training diverged: loss is nan at step 3\n(see the backup)")

    monkeypatch.setattr(cli, "run_mode", diverge)
    monkeypatch.setattr(cli, "prepare_workdir", lambda *args: "new")
    monkeypatch.setattr(cli, "_resolve_config", lambda args: (type("C", (), {"experiment": "x"})(), tmp_path))
    assert cli.main(["--config", "unused.yaml"]) == 1
    err = capsys.readouterr().err
    assert err == "error: training diverged: loss is nan at step 3 (see the backup)\n"
