"""The README's quick start: `python run.py --config configs/quickstart.yaml` through `garden.cli.main`.

The default test shrinks the run with `--set` (64 training images, one epoch of two steps) and
checks that it leaves the whole workdir layout of the README: the resolved config, the best
checkpoint, the backup (a rerun of the same command resumes, a different config is refused),
TensorBoard train and validation logs, metrics.json, the SavedModel in TF Serving layout, the
ONNX model and a manifest whose parity figures are within the tolerance. Both exported models
are then loaded and run on raw uint8 images.

The `slow` test runs the config as it is (about 2 min of CPU time, dataset generation
included) and checks that the network really learns: the header of configs/quickstart.yaml
states the test accuracy measured with it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from garden import cli

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "quickstart.yaml"
NAME = "quickstart"

TINY = [
    "data.options.num_train=64", "data.options.num_validation=32", "data.options.num_test=32",
    "data.batch_size=16", "trainer.epochs=1", "trainer.steps_per_epoch=2",
    "trainer.schedule.warmup_epochs=0",  # a 1-epoch warm-up is refused on a 1-epoch run
]

# Measured test accuracy of the full config (seed 0, op determinism off): 0.845, 0.863 and four times
# 0.878; chance is 0.10. The threshold leaves room for other machines and library versions.
MIN_FULL_ACCURACY = 0.70


def _main(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _tensorboard_tags(folder: Path) -> dict[str, str]:
    import tensorflow as tf

    tags: dict[str, str] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tags.setdefault(value.tag, value.metadata.plugin_data.plugin_name)
    return tags


def _check_layout(workdir: Path) -> dict:
    """The README's workdir layout; returns metrics.json."""
    resolved = yaml.safe_load((workdir / "config.yaml").read_text())
    assert resolved["experiment"] == NAME and resolved["model"]["name"] == "resnet20"

    assert (workdir / "checkpoints" / "best.weights.h5").is_file()
    backup = json.loads((workdir / "backup" / "training_metadata.json").read_text())
    assert backup["finished"] is True

    train_tags = _tensorboard_tags(workdir / "tensorboard" / "train")
    validation_tags = _tensorboard_tags(workdir / "tensorboard" / "validation")
    for tag in ("epoch_loss", "epoch_accuracy", "epoch_learning_rate", "epoch_examples_per_second"):
        assert train_tags.get(tag) == "scalars", (tag, train_tags)
    assert "images" in train_tags.values(), train_tags  # the input images
    assert {"epoch_loss", "epoch_accuracy"} <= set(validation_tags), validation_tags

    metrics = json.loads((workdir / "metrics.json").read_text())
    assert set(metrics["test"]) >= {"loss", "accuracy", "top5_accuracy"}
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0 and np.isfinite(metrics["test"]["loss"])

    export = workdir / "export"
    assert (export / "saved_model" / NAME / "1" / "saved_model.pb").is_file()
    assert (export / f"{NAME}.onnx").is_file()
    manifest = json.loads((export / "manifest.json").read_text())
    tolerance = resolved["export"]["tolerance"]
    for fmt in ("saved_model", "onnx"):
        parity = manifest["parity"][fmt]
        assert parity["max_abs_diff_overall"] <= tolerance, (fmt, parity)
        assert all(n == 0 for n in parity.get("integer_mismatches", {}).values()), (fmt, parity)
    assert manifest["inputs"]["images"]["dtype"] == "uint8"
    assert manifest["inputs"]["images"]["shape"][1:] == [32, 32, 3]
    assert set(manifest["outputs"]) == {"probabilities", "class_id"}
    assert len(manifest["class_names"]) == 10
    return metrics


def _run_exports(workdir: Path) -> None:
    """The README's two deployment snippets, on raw uint8 images."""
    import onnxruntime as ort
    import tensorflow as tf

    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    loaded = tf.saved_model.load(str(workdir / "export" / "saved_model" / NAME / "1"))
    served = loaded.signatures["serving_default"](images=tf.constant(images))
    probabilities = served["probabilities"].numpy()
    assert probabilities.shape == (2, 10)
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, atol=1e-5)

    session = ort.InferenceSession(str(workdir / "export" / f"{NAME}.onnx"), providers=["CPUExecutionProvider"])
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"images": images})))
    np.testing.assert_allclose(outputs["probabilities"], probabilities, atol=1e-4)
    np.testing.assert_array_equal(outputs["class_id"], served["class_id"].numpy())


def test_quickstart_tiny_run_writes_the_readme_layout(tmp_path, capsys):
    workdir = tmp_path / "quickstart"
    code, out, err = _main(capsys, "--config", CONFIG, "--workdir", workdir, "--set", *TINY)
    assert code == 0, err[-3000:]
    assert "train_and_export done" in out and "export max |Keras - export|" in out, out[-2000:]
    metrics = _check_layout(workdir)
    assert metrics["global_step"] == 2 and metrics["global_batch_size"] == 16
    _run_exports(workdir)

    # Backup handling: the same command again resumes from the finished backup (no more steps);
    # `--mode train` skips the export, which is already there.
    code, out, err = _main(capsys, "--config", CONFIG, "--workdir", workdir, "--mode", "train", "--set", *TINY)
    assert code == 0, err[-3000:]
    assert "training already finished" in out, out[-2000:]
    assert json.loads((workdir / "metrics.json").read_text())["global_step"] == 2

    # `--mode export` re-exports the best checkpoint of the finished run (here as version 2).
    code, out, err = _main(capsys, "--workdir", workdir, "--mode", "export", "--set", "export.version=2")
    assert code == 0, err[-3000:]
    manifest = json.loads((workdir / "export" / "manifest.json").read_text())
    assert manifest["version"] == 2 and manifest["checkpoint"].endswith("best.weights.h5")
    assert (workdir / "export" / "saved_model" / NAME / "2" / "saved_model.pb").is_file()
    assert max(manifest["parity"][f]["max_abs_diff_overall"] for f in ("saved_model", "onnx")) <= 1e-4

    # A different config on the same workdir is refused before any work (exit 2, one line).
    code, out, err = _main(capsys, "--config", CONFIG, "--workdir", workdir, "--set", *TINY, "trainer.epochs=2")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "epochs" in lines[0], err


@pytest.mark.slow
def test_quickstart_full_run_learns(tmp_path, capsys):
    """The config unchanged: dataset generation, 10 epochs, test evaluation, export."""
    workdir = tmp_path / "quickstart"
    code, out, err = _main(capsys, "--config", CONFIG, "--workdir", workdir)
    assert code == 0, err[-3000:]
    metrics = _check_layout(workdir)
    assert metrics["test"]["accuracy"] >= MIN_FULL_ACCURACY, metrics["test"]
    _run_exports(workdir)
