"""The vvl configs through `garden.cli.main` (train two steps, evaluate, export with parity),
shrunk to tiny toyworld data with `--set`. Slow: each is a whole run.py (about a minute)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from garden import cli

REPO = Path(__file__).resolve().parents[3]
TINY_OBJECTS = ("{image_size: 16, num_train: 40, num_validation: 8, num_test: 8, num_categories: 2, "
                "instances_per_category: 5, validation_instances: 1, test_instances: 1}")
SHRINK = ["data.batch_size=4", "trainer.epochs=1", "trainer.steps_per_epoch=2", "export.num_parity_examples=4"]


@pytest.mark.slow
@pytest.mark.parametrize("config, data", [
    ("alexnet_pose_objects.yaml", [f"data.options={TINY_OBJECTS}", "data.augment.crop_padding=0"]),
    ("alexnet_triplet_objects.yaml", [f"data.options.source_options={TINY_OBJECTS}"]),
])
def test_config_trains_and_exports(config, data, tmp_path, capsys):
    workdir = tmp_path / "run"
    code = cli.main(["--config", str(REPO / "configs" / "vvl" / config), "--workdir", str(workdir),
                     "--set", *SHRINK, *data])
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    assert "train_and_export done" in out
    manifest = json.loads((workdir / "export" / "manifest.json").read_text())
    assert set(manifest["outputs"]) == {"probabilities", "class_id"}
    for fmt in ("saved_model", "onnx"):
        assert manifest["parity"][fmt]["max_abs_diff_overall"] <= 1e-4
