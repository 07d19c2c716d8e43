"""The command line: `python run.py --config configs/X.yaml [--workdir DIR] [--mode MODE] [--set k=v ...]`.

Modes:
  train_and_export  (default) train, evaluate on the test split, export (if export.enabled)
  train             train and evaluate, no export
  eval              evaluate the best checkpoint of an existing workdir
  export            export the best checkpoint of an existing workdir

`python run.py --list` prints the registered models, tasks and datasets and the configs.
`--dry-run` validates, resolves and prints the config without touching the workdir.

The config is validated before TensorFlow starts; a user mistake (ConfigError, or any other
GardenError) prints `error: <one line>` on stderr and exits with code 2.

Workdir rules (default `runs/<experiment>`):
  - the resolved config is saved as `<workdir>/config.yaml` (atomically);
  - the same config on an existing workdir resumes the run (BackupAndRestore);
  - a different config is refused, naming the first differing key, unless `--overwrite`, which
    moves the old run aside and deletes it (only a folder holding a garden `config.yaml`);
  - `--mode eval|export` need a workdir with a checkpoint; `--config` may then be left out (the
    workdir's config is used), and a given config may differ from the run's only in `export`;
  - with `trainer.strategy: multi_worker`, only the chief (TF_CONFIG) checks and writes the workdir.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from garden.config import (ExperimentConfig, config_diff, dump_config, load_config, load_yaml, to_yaml,
                           validate_config)
from garden.errors import ConfigError, GardenError, TrainingDiverged

MODES = ("train_and_export", "train", "eval", "export")
TRAIN_MODES = ("train_and_export", "train")
REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"
CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoints"


# ----------------------------------------------------------------------------------------------
# arguments
# ----------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run.py", description="Train, evaluate and export a garden experiment.",
        epilog="Example: python run.py --config configs/quickstart.yaml --set trainer.epochs=2")
    parser.add_argument("--config", help="experiment YAML (may be left out with --workdir of an existing run)")
    parser.add_argument("--workdir", help="run folder (default: runs/<experiment>)")
    parser.add_argument("--mode", choices=MODES, default="train_and_export",
                        help="train_and_export (default), train, eval or export")
    parser.add_argument("--set", dest="overrides", action="append", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. trainer.epochs=2 (value parsed as YAML); repeatable")
    parser.add_argument("--overwrite", action="store_true",
                        help="discard an existing run in the workdir that has a different config")
    parser.add_argument("--list", action="store_true", help="list models, tasks, datasets and configs")
    parser.add_argument("--dry-run", action="store_true", help="validate and print the resolved config, then stop")
    return parser


# ----------------------------------------------------------------------------------------------
# --list
# ----------------------------------------------------------------------------------------------


def _signature(obj, hidden=()) -> str:
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return ""
    shown = []
    for p in params:
        if p.name in hidden or p.name == "name" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        shown.append(p.name if p.default is p.empty else f"{p.name}={p.default!r}")
    return ", ".join(shown)


def config_headers(config_dir: Path | None = None) -> list[tuple[str, list[str]]]:
    """(path relative to the repository, header comment lines) of every YAML under configs/."""
    config_dir = CONFIG_DIR if config_dir is None else config_dir
    out = []
    for path in sorted(config_dir.rglob("*.yaml")) if config_dir.is_dir() else []:
        header = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.startswith("#"):
                break
            header.append(line.lstrip("#").strip())
        try:
            shown = path.relative_to(REPO_ROOT)
        except ValueError:
            shown = path
        out.append((str(shown), header))
    return out


def list_all(out=None) -> None:
    from garden import registry
    from garden.config import TRAINER_PROVIDED_TASK_ARGS, dataset_names

    out = out or sys.stdout
    import_tensorflow_quietly()
    registry.import_all()
    for title, reg, hidden in (("models", registry.MODELS, ()),
                               ("tasks", registry.TASKS, TRAINER_PROVIDED_TASK_ARGS)):
        print(f"{title} ({len(reg.names())}):", file=out)
        for name in reg.names():
            print(f"  {name}({_signature(reg.get(name), hidden)})", file=out)
    names = dataset_names()
    print(f"datasets ({len(names)}):", file=out)
    for name in names:
        print(f"  {name}", file=out)
    headers = config_headers()
    print(f"configs ({len(headers)}):", file=out)
    for path, header in headers:
        print(f"  {path}", file=out)
        for line in header:
            print(f"      {line}", file=out)


# ----------------------------------------------------------------------------------------------
# workdir
# ----------------------------------------------------------------------------------------------


def is_chief(config: ExperimentConfig) -> bool:
    """False only for a non-chief worker of a multi_worker run (read from TF_CONFIG)."""
    if config.trainer.strategy != "multi_worker" or not os.environ.get("TF_CONFIG"):
        return True
    try:
        tf_config = json.loads(os.environ["TF_CONFIG"])
    except json.JSONDecodeError as e:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({e})") from None
    task = tf_config.get("task", {})
    cluster = tf_config.get("cluster", {})
    if task.get("type") == "chief":
        return True
    return task.get("type", "worker") == "worker" and int(task.get("index", 0)) == 0 and "chief" not in cluster


def _first_difference(saved: ExperimentConfig | dict, config: ExperimentConfig, ignore=()) -> str | None:
    for key, old, new in config_diff(saved, config):
        if key.split(".")[0] in ignore:
            continue
        return f"{key}: {json.dumps(old)} in the run, {json.dumps(new)} now"
    return None


def _saved_config(workdir: Path) -> ExperimentConfig | str:
    """The workdir's config (schema-checked only), or the reason it cannot be read."""
    try:
        return load_config(workdir / CONFIG_FILE, check_registry=False)
    except ConfigError as e:
        return str(e)


def _guard_deletable(workdir: Path) -> None:
    resolved = workdir.resolve()
    protected = {Path("/").resolve(), Path.home().resolve(), Path.cwd().resolve(), REPO_ROOT}
    if resolved in protected or any(p.is_relative_to(resolved) for p in protected if p != Path("/").resolve()):
        raise GardenError(f"refusing to clear {str(workdir)!r}: it is (or contains) the current folder, the "
                          "repository or the home folder; choose another --workdir")
    if not (workdir / CONFIG_FILE).is_file():
        raise GardenError(f"refusing to clear {str(workdir)!r}: it is not empty and holds no garden {CONFIG_FILE}; "
                          "choose another --workdir")


def clear_workdir(workdir: Path) -> None:
    """Remove a garden run folder: rename it aside first (atomic), then delete the renamed copy."""
    _guard_deletable(workdir)
    aside = Path(tempfile.mkdtemp(prefix=f".{workdir.name}.old-", dir=workdir.parent))
    aside.rmdir()
    os.replace(workdir, aside)
    shutil.rmtree(aside, ignore_errors=True)


def prepare_workdir(config: ExperimentConfig, workdir: Path, mode: str, overwrite: bool) -> str:
    """Check (and for training, create) the workdir; returns what happens: new, resume, overwrite, existing."""
    if mode not in TRAIN_MODES:
        if overwrite:
            raise GardenError(f"--overwrite applies to --mode train and train_and_export, not {mode}")
        if not (workdir / CONFIG_FILE).is_file():
            raise GardenError(f"no run in {str(workdir)!r} (no {CONFIG_FILE}): --mode {mode} needs the --workdir "
                              "of a trained run; train first with --mode train")
        checkpoints = workdir / CHECKPOINT_DIR
        if not checkpoints.is_dir() or not any(p.is_file() for p in checkpoints.rglob("*")):
            raise GardenError(f"no checkpoint in {str(checkpoints)!r}: --mode {mode} needs a trained run; "
                              "train first with --mode train")
        saved = _saved_config(workdir)
        if isinstance(saved, str):
            raise GardenError(f"{workdir / CONFIG_FILE} does not validate: {saved}")
        diff = _first_difference(saved, config, ignore=("export",))
        if diff:
            raise GardenError(f"the config differs from the run in {str(workdir)!r} ({diff}); --mode {mode} may "
                              "change only the export section; leave out --config to use the run's config")
        return "existing"

    if not is_chief(config):
        return "worker"
    state = "new"
    if workdir.exists() and not workdir.is_dir():
        raise GardenError(f"workdir {str(workdir)!r} exists and is not a folder")
    if workdir.is_dir() and any(workdir.iterdir()):
        if not (workdir / CONFIG_FILE).is_file():
            raise GardenError(f"workdir {str(workdir)!r} is not empty and holds no garden {CONFIG_FILE}; "
                              "choose another --workdir")
        saved = _saved_config(workdir)
        if isinstance(saved, str):
            diff = f"its {CONFIG_FILE} does not validate: {saved}"
        else:
            diff = _first_difference(saved, config)
        if overwrite:
            clear_workdir(workdir)
            state = "overwrite"
        elif diff:
            raise GardenError(f"workdir {str(workdir)!r} holds a run with a different config ({diff}); "
                              "pass --overwrite to discard that run, or choose another --workdir")
        else:
            state = "resume"
    workdir.mkdir(parents=True, exist_ok=True)
    dump_config(config, workdir / CONFIG_FILE)
    return state


# ----------------------------------------------------------------------------------------------
# the trainer's entry points
# ----------------------------------------------------------------------------------------------


def _entry_point(mode: str):
    """The function that runs `mode`, looked up when needed (importing it imports TensorFlow)."""
    import importlib

    candidates = {
        "train": [("garden.trainer", "train_and_evaluate")],
        "eval": [("garden.trainer", "evaluate")],
        "export": [("garden.trainer", "export_from_workdir")],
    }["train" if mode in TRAIN_MODES else mode]
    for module_name, attr in candidates:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name == module_name:
                continue
            raise
        if hasattr(module, attr):
            return getattr(module, attr)
    names = " or ".join(f"{m}.{a}" for m, a in candidates)
    raise GardenError(f"--mode {mode} is not available: {names}(config, workdir) is missing")


def run_mode(config: ExperimentConfig, workdir: Path, mode: str):
    fn = _entry_point(mode)
    if mode == "train":
        try:
            has_export_arg = "export" in inspect.signature(fn).parameters
        except (TypeError, ValueError):
            has_export_arg = False
        if has_export_arg:
            return fn(config, str(workdir), export=False)
        config = config.model_copy(update={"export": config.export.model_copy(update={"enabled": False})})
    return fn(config, str(workdir))


# ----------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------


_TF_PREINIT_NOISE = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow, dropping the INFO lines its C++ libraries print before logging starts.

    TF 2.21 writes "oneDNN custom operations are on" / "Could not find cuda drivers" at import
    whatever TF_CPP_MIN_LOG_LEVEL says, which would bury the one-line config errors. Only those
    INFO lines are dropped (and only when TF_CPP_MIN_LOG_LEVEL >= 1); warnings and errors pass.
    """
    if "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") in ("", "0"):
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (embedded); nothing to filter
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", errors="replace").splitlines()
            kept = [line for line in lines if not line.startswith("I0000 ") and line not in _TF_PREINIT_NOISE]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")


def _resolve_config(args) -> tuple[ExperimentConfig, Path]:
    """The validated config (schema first, then the registries) and the workdir."""
    overrides = [item for group in args.overrides for item in group]
    if args.config:
        data, default_name = load_yaml(args.config), Path(args.config).stem
    elif args.workdir and (Path(args.workdir) / CONFIG_FILE).is_file():
        data, default_name = load_yaml(Path(args.workdir) / CONFIG_FILE), None
    elif args.workdir:
        raise ConfigError(f"--config is required: {str(Path(args.workdir) / CONFIG_FILE)!r} does not exist")
    else:
        raise ConfigError("--config is required (or --workdir of an existing run); try --list for the configs")
    config = validate_config(data, overrides=overrides, default_name=default_name,
                             before_registry=import_tensorflow_quietly)
    workdir = Path(args.workdir) if args.workdir else Path("runs") / config.experiment
    return config, workdir


def summary(result, workdir: Path) -> str:
    """One line from the trainer's result: test metrics, export parity, where the details are."""
    parts = []
    if isinstance(result, dict):
        test = result.get("test")
        if isinstance(test, dict):
            parts.append("test " + ", ".join(f"{k}={v:.4g}" for k, v in test.items() if isinstance(v, (int, float))))
        export = result.get("export") if isinstance(result.get("export"), dict) else result
        parity = export.get("parity") if isinstance(export, dict) else None
        if isinstance(parity, dict):
            diffs = [f"{fmt} {p['max_abs_diff_overall']:.2g}" for fmt, p in parity.items()
                     if isinstance(p, dict) and isinstance(p.get("max_abs_diff_overall"), (int, float))]
            if diffs:
                parts.append("export max |Keras - export| " + ", ".join(diffs))
    details = [str(workdir / name) for name in ("metrics.json", "export/manifest.json") if (workdir / name).is_file()]
    if details:
        parts.append("details in " + " and ".join(details))
    return "; ".join(parts) or str(workdir)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2)
        return int(e.code or 0)
    try:
        if args.list:
            list_all()
            return 0
        config, workdir = _resolve_config(args)
        if args.dry_run:
            print(f"# workdir: {workdir}\n{to_yaml(config)}", end="")
            return 0
        state = prepare_workdir(config, workdir, args.mode, args.overwrite)
        print(f"garden: {args.mode} {config.experiment!r} in {workdir} ({state})", flush=True)
        result = run_mode(config, workdir, args.mode)
        print(f"garden: {args.mode} done: {summary(result, workdir)}", flush=True)
        return 0
    except GardenError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except TrainingDiverged as e:  # not bad input: the run itself failed; backups stay usable
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
