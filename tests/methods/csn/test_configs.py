"""The CSN configs end to end through the trainer (train, evaluate, export with parity): the paper
setups on small generated folder datasets in the documented layouts, the small config on a tiny
toyworld:attributes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from garden.config import load_config
from garden.trainer import train_and_evaluate
from tests.methods.csn.conftest import write_folder_dataset

REPO = Path(__file__).resolve().parents[3]
TINY_RUN = ["data.batch_size=4", "trainer.epochs=1", "trainer.steps_per_epoch=2", "trainer.validation_steps=1",
            "trainer.test_steps=1", "export.num_parity_examples=4",
            "data.options.triplets_per_notion={train: 8, validation: 4, test: 4}"]


def _run(config_name: str, overrides: list[str], workdir: Path) -> dict:
    config = load_config(REPO / "configs" / "csn" / config_name, TINY_RUN + overrides)
    metrics = train_and_evaluate(config, workdir)
    manifest = json.loads((workdir / "export" / "manifest.json").read_text())
    assert set(manifest["inputs"]) == {"images", "condition"}
    assert set(manifest["outputs"]) == {"masked_embedding", "embedding"}
    for fmt in ("saved_model", "onnx"):
        assert manifest["parity"][fmt]["max_abs_diff_overall"] <= 1e-4
    assert 0.0 <= metrics["test"]["triplet_error"] <= 1.0
    return metrics


@pytest.mark.slow
def test_fonts_config_on_a_folder_fixture(tmp_path):
    root = write_folder_dataset(tmp_path / "fonts", channels=1, columns=("character", "font"))
    metrics = _run("csn_fonts.yaml", [f"data.options.source_options.root={root}", "data.options.image_size=[16, 16]"],
                   tmp_path / "run")
    assert {"triplet_error_character", "triplet_error_font"} <= set(metrics["test"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["csn_zappos.yaml", "csn_zappos_fixed.yaml", "triplet_net_zappos.yaml"])
def test_zappos_configs_on_a_folder_fixture(name, tmp_path):
    root = write_folder_dataset(tmp_path / "zappos", columns=("type", "gender", "heel_height", "closure"))
    metrics = _run(name, [f"data.options.source_options.root={root}", "data.options.image_size=[64, 64]"],
                   tmp_path / "run")
    assert {"triplet_error_type", "triplet_error_heel_height"} <= set(metrics["test"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["csn_learned_attributes.yaml", "csn_fixed_attributes.yaml",
                                  "triplet_net_attributes.yaml", "csn_specialists_attributes.yaml"])
def test_small_configs_on_tiny_toyworld(name, tmp_path):
    tiny = "data.options.source_options={image_size: 16, num_train: 40, num_validation: 16, num_test: 16}"
    _run(name, [tiny], tmp_path / "run")
