"""`python -m garden.methods.lesion` end to end: train a tiny run, study it, read the outputs.

The data source is replaced by learnable in-memory images (no files, no network), through
garden.data.sources, which the trainer and the study both read.
"""

import json

import numpy as np
import pytest
import tensorflow as tf

from garden import trainer
from garden.config import dump_config, load_config
from garden.data import sources
from garden.methods.lesion.command import main

SIZES = {"train": 128, "test": 48}
SHAPE = (28, 28, 1)

CONFIG = """\
# python run.py --config lesion_test.yaml  |  a test fixture
experiment: lesion_test
model: {name: resnet20, width_multiplier: 0.25}
data: {name: fashion_mnist, train_split: train, validation_split: test, test_split: test, batch_size: 32}
task: {name: classification, mean: 72.94, std: 90.02}
trainer:
  epochs: 1
  optimizer: {name: sgd, learning_rate: 0.05, momentum: 0.9}
  tensorboard: {enabled: false}
export: {enabled: false}
"""


def _examples(split):
    rng = np.random.default_rng({"train": 0, "test": 1}[split.split("[")[0]])
    labels = rng.integers(0, 10, SIZES[split.split("[")[0]])
    images = rng.integers(0, 60, (len(labels), *SHAPE))
    for i, label in enumerate(labels):  # a bright band whose row depends on the class
        images[i, 2 * label:2 * label + 3] += 180
    return {"image": np.clip(images, 0, 255).astype(np.uint8), "label": labels.astype(np.int64)}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    patch = pytest.MonkeyPatch()
    patch.setattr(sources, "load_source", lambda config, split: tf.data.Dataset.from_tensor_slices(_examples(split)))
    patch.setattr(sources, "source_info", lambda config: sources.SourceInfo(
        name=config.name, image_shape=SHAPE, feature_keys=("image", "label"), num_classes=10,
        class_names=tuple(map(str, range(10))), split_sizes=dict(SIZES)))
    root = tmp_path_factory.mktemp("lesion_run")
    (root / "lesion_test.yaml").write_text(CONFIG)
    config = load_config(root / "lesion_test.yaml")
    workdir = root / "run"
    trainer.train_and_evaluate(config, workdir)
    dump_config(config, workdir / "config.yaml")
    yield workdir
    patch.undo()


def test_the_command_writes_json_pngs_and_tensorboard(trained_run, capsys):
    code = main(["--workdir", str(trained_run), "--examples", "40", "--ks", "0,1,9", "--swap-ks", "0,2",
                 "--draws", "2", "--grad-samples", "1", "--grad-batch", "8", "--batch-size", "16"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "lesion: baseline error" in out
    folder = trained_run / "lesion"
    result = json.loads((folder / "lesion.json").read_text())
    assert result["num_blocks"] == 9 and result["residual"] and result["num_test_examples"] == 40
    assert len(result["single_deletions"]["blocks"]) == 9
    assert [row["k"] for row in result["random_deletions"]["rows"]] == [0, 1, 9]
    assert result["path_gradients"]["lengths"] == list(range(10))
    assert result["path_statistics"]["n"] == 9
    for name in ("single_deletion", "deletions", "swaps", "paths", "remaining_paths"):
        assert (folder / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert list((trained_run / "tensorboard" / "lesion").glob("events.out.tfevents.*"))


def test_bad_arguments_are_one_line_errors(trained_run, tmp_path, capsys):
    assert main(["--workdir", str(tmp_path)]) == 2
    assert "config.yaml" in capsys.readouterr().err
    assert main(["--workdir", str(trained_run), "--draws", "0"]) == 2
    assert "--draws must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--workdir", str(trained_run), "--ks", "1,x"])
