"""Every paper-setup config (data from `tfds:<name>`) runs end to end on `tfds.testing.mock_data`.

The paper-scale datasets cannot be downloaded here, so each config under `configs/` whose
`data.name` is a `tfds:` source is run through the real `garden.cli.main` with random mock
examples: train (two steps), validate, evaluate on the test split, export (SavedModel + ONNX,
with the parity check). Only the loop lengths and the batch size are shrunk; the model, the
task, the optimiser and schedule, the augmentation and the export settings are the config's
own. Nothing touches the network: mock_data turns `download_and_prepare` into a no-op and
generates the examples from the builder's feature spec.

Parametrised over the glob, so a config added later is covered without touching this file. A
dataset whose features mock_data cannot generate goes into `MOCK_UNSUPPORTED` with the reason
(the test is then skipped, saying so).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from garden.config import load_config
from tests import invariants as inv

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))

# TFDS dataset name (without config) -> why mock_data cannot serve it.
MOCK_UNSUPPORTED: dict[str, str] = {}

MOCK_EXAMPLES = 16  # per split, whatever the split string selects
BATCH = 4


def _id(path: Path) -> str:
    return str(path.relative_to(REPO / "configs"))


def _data_name(path: Path) -> str | None:
    """`data.name` read from the raw YAML, so that one broken config cannot break collection
    (tests/test_configs_validate.py reports it)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return None
    section = data.get("data") if isinstance(data, dict) else None
    name = section.get("name") if isinstance(section, dict) else None
    return name if isinstance(name, str) else None


def _tfds_configs() -> list[Path]:
    return [path for path in CONFIGS if (_data_name(path) or "").startswith("tfds:")]


PAPER_CONFIGS = _tfds_configs()


def tiny_overrides(config) -> list[str]:
    """--set items that shrink a run to a few steps and keep everything else of the config."""
    tcfg = config.trainer
    items = [
        "trainer.epochs=1", "trainer.steps_per_epoch=2", "trainer.validation_steps=1", "trainer.test_steps=1",
        f"data.batch_size={BATCH}", "data.shuffle_buffer=16", "export.enabled=true",
        f"export.num_parity_examples={BATCH}",
    ]
    # One machine, no accelerator: the default strategy, and no per-replica assertion.
    if tcfg.strategy != "default":
        items += ["trainer.strategy=default", "trainer.cpu_replicas=", "trainer.tpu="]
    if tcfg.per_replica_batch_size is not None:
        items.append("trainer.per_replica_batch_size=")
    if tcfg.steps_per_execution > 2:
        items.append("trainer.steps_per_execution=1")
    # Keep a warm-up, but shorter than the two-step run.
    if tcfg.schedule.warmup_epochs or tcfg.schedule.warmup_steps:
        items += ["trainer.schedule.warmup_epochs=0", "trainer.schedule.warmup_steps=1"]
    return items


# Paper-scale models whose two-step run + SavedModel/ONNX export takes minutes and GBs on the
# 2-core CI machine: they run with `-m slow`. The default run keeps one cheap config per kind
# of pipeline; each method's own tests cover its export at small size.
SLOW_CONFIGS: dict[str, str] = {
    "aig/resnet101_aig_imagenet.yaml": "ResNet-101 at 224 with 26 conditional If branches; the pair of "
                                       "ImageNet AIG runs peaks at 17 GB (tf2onnx)",
    "aig/resnet50_aig_imagenet.yaml": "ResNet-50 at 224 with conditional If branches; tf2onnx peaks near 8 GB",
    "aig/resnet110_aig_cifar10.yaml": "54 conditional If branches in the ONNX conversion",
    "gunn/gunn15_cifar10.yaml": "GUNN-15: hundreds of sequential segment updates to trace twice",
    "gunn/gunn15_cifar100.yaml": "GUNN-15: hundreds of sequential segment updates to trace twice",
    "gunn/gunn24_cifar10.yaml": "GUNN-24: 29.5M parameters",
    "gunn/gunn18_imagenet.yaml": "GUNN-18 at 224: 28.9M parameters",
    "lesion/resnet110_cifar10.yaml": "ResNet-110 at full width",
    "vvl/alexnet_lp_smallnorb.yaml": "AlexNet-BN at 224 with auxiliary heads",
}


# Configs whose network, after two SGD steps, overflows float32 at inference: the moving BN
# statistics still hold their initial values (mean 0, variance 1), and GUNN-24's 150 sequential
# BN'd updates then grow the activations geometrically (measured: logits ~1e24 at
# initialisation, NaN after two steps at lr 0.1). Training-mode outputs stay near 1, and a real
# run settles the statistics within its first epoch. These runs take this many steps at a
# learning rate of ~0, so the moving statistics settle on the initial network and the run tests
# the pipeline (data, training steps, evaluation, export, parity) rather than BN warm-up. The
# second number is the export parity tolerance of that run: its outputs are still large, and
# after 48 steps the exports differed from Keras by 2.4e-4 (float32 rounding through 150 updates;
# GUNN's export parity at 1e-4 is tested at small size in tests/methods/gunn).
SETTLE_BN_STEPS: dict[str, tuple[int, float]] = {"gunn/gunn24_cifar10.yaml": (48, 1e-3)}


def _param(path: Path):
    reason = SLOW_CONFIGS.get(_id(path))
    return pytest.param(path, id=_id(path), marks=[pytest.mark.slow] if reason else [])


def test_settle_bn_configs_exist():
    assert set(SETTLE_BN_STEPS) <= {_id(p) for p in PAPER_CONFIGS}


def test_slow_configs_exist():
    """A renamed config must not silently fall out of the slow list."""
    assert set(SLOW_CONFIGS) <= {_id(p) for p in PAPER_CONFIGS}


def test_the_paper_configs_are_found():
    """The glob sees the TFDS configs (an empty list would silently test nothing)."""
    assert any(_id(p) == "classification/resnet56_cifar10.yaml" for p in PAPER_CONFIGS), PAPER_CONFIGS


@pytest.mark.parametrize("path", [_param(p) for p in PAPER_CONFIGS])
def test_paper_config_runs_on_mock_data(path, tmp_path, capsys):
    import tensorflow_datasets as tfds

    from garden import cli

    config = load_config(path, check_registry=False)
    dataset = config.data.name.split(":", 1)[1].split("/")[0]
    if dataset in MOCK_UNSUPPORTED:
        pytest.skip(f"tfds.testing.mock_data cannot serve {dataset}: {MOCK_UNSUPPORTED[dataset]}")

    steps, tolerance = 2, config.export.tolerance  # tiny_overrides' two steps
    settle = []
    if _id(path) in SETTLE_BN_STEPS:
        steps, tolerance = SETTLE_BN_STEPS[_id(path)]
        settle = [f"trainer.steps_per_epoch={steps}", "trainer.optimizer.learning_rate=1e-9",
                  f"export.tolerance={tolerance}"]
    workdir = tmp_path / "run"
    # An empty TFDS folder: nothing prepared there, so only the mock can answer.
    argv = ["--config", str(path), "--workdir", str(workdir), "--set", *tiny_overrides(config),
            f"data.options.data_dir={tmp_path / 'tfds'}", *settle]
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
        code = cli.main(argv)
    out, err = capsys.readouterr()
    inv.check_short_run(code, out, err, workdir, steps=steps, export_name=config.export_name,
                        version=config.export.version, formats=config.export.formats,
                        tolerance=tolerance)
