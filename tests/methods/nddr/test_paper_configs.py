"""The NYUv2 and IMDB-WIKI paper configs run end to end (train, test, export with parity) on
small folder-source fixtures generated here in the NYUv2 / IMDB-WIKI layouts of
docs/methods/nddr.md. Like tests/test_paper_configs.py, only loop lengths and batch size shrink;
the widths and crop size shrink too, since the fixtures are tiny CPU images (a full-width
two-tower VGG-16 would only make the test slower, not different)."""

import csv
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from garden import cli
from garden.config import load_config
from tests import invariants as inv

REPO = Path(__file__).resolve().parents[3]
LOOPS = ["trainer.epochs=1", "trainer.steps_per_epoch=2", "trainer.test_steps=1", "data.batch_size=2",
         "data.shuffle_buffer=8", "export.num_parity_examples=2"]
SMALL_VGG = ["model.width_multiplier=0.0625", "model.head_kwargs={width: 16, dilation: 2, dropout: 0.5}"]


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.io.encode_png(array).numpy())


def make_nyuv2(root: Path, height=24, width=32, train=4, test=2) -> Path:
    """NYUv2 layout: RGB images, 8-bit class-id PNGs (0..39, 255 unlabelled) and normal PNGs
    ((n + 1) / 2 * 255, unlabelled pixels 255 in all channels)."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(train + test):
        _png(root / "images" / f"{i:04d}.png", rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        seg = rng.integers(0, 40, (height, width, 1)).astype(np.uint8)
        seg[:2] = 255
        _png(root / "segmentation" / f"{i:04d}.png", seg)
        n = rng.normal(size=(height, width, 3))
        n /= np.linalg.norm(n, axis=-1, keepdims=True)
        normals = np.round((n + 1.0) / 2.0 * 255.0).astype(np.uint8)
        normals[-2:] = 255
        _png(root / "normals" / f"{i:04d}.png", normals)
        rows.append({"image": f"images/{i:04d}.png", "split": "train" if i < train else "test",
                     "segmentation": f"segmentation/{i:04d}.png", "normals": f"normals/{i:04d}.png"})
    with open(root / "labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def make_imdb_wiki(root: Path, size=32, train=6, test=2) -> Path:
    """IMDB-WIKI layout: face crops and a labels.csv with integer age (0..99) and gender (0/1)."""
    rng = np.random.default_rng(1)
    rows = []
    for i in range(train + test):
        _png(root / "faces" / f"{i:05d}.png", rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        rows.append({"image": f"faces/{i:05d}.png", "split": "train" if i < train else "test",
                     "age": int(rng.integers(15, 80)), "gender": int(rng.integers(0, 2))})
    with open(root / "labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def run(config: str, workdir: Path, overrides: list[str], capsys) -> dict:
    argv = ["--config", str(REPO / "configs" / "nddr" / config), "--workdir", str(workdir), "--set", *overrides]
    code = cli.main(argv)
    out, err = capsys.readouterr()
    resolved = load_config(REPO / "configs" / "nddr" / config, overrides)
    return inv.check_short_run(code, out, err, workdir, export_name=resolved.export_name,
                               version=resolved.export.version, formats=("saved_model", "onnx"), tolerance=1e-4)


@pytest.mark.slow  # two full VGG-16 towers; the fused export's parity is in tests/methods/nddr (default)
def test_nddr_vgg16_nyuv2_on_a_fixture(tmp_path, capsys):
    root = make_nyuv2(tmp_path / "nyuv2")
    result = run("nddr_vgg16_nyuv2.yaml", tmp_path / "run",
                 LOOPS + SMALL_VGG + [f"data.options.root={root}", "data.augment.crop_size=[24, 32]", "data.image_size=[24, 32]",
                                      "model.init_checkpoints={}"], capsys)
    assert {"segmentation_miou", "segmentation_pixel_accuracy", "normals_mean_angle", "normals_median_angle",
            "normals_within_11_25", "normals_within_22_5", "normals_within_30"} <= set(result["metrics"]["test"])
    outputs = result["manifest"]["outputs"]
    assert outputs["segmentation_probabilities"]["shape"] == [-1, 24, 32, 40]
    assert outputs["normals"]["shape"] == [-1, 24, 32, 3]


@pytest.mark.slow  # the age/gender task's export parity is in tests/tasks (default); this is the config path
def test_nddr_vgg16_imdb_wiki_on_a_fixture(tmp_path, capsys):
    root = make_imdb_wiki(tmp_path / "imdb_wiki")
    result = run("nddr_vgg16_imdb_wiki.yaml", tmp_path / "run",
                 LOOPS + [f"data.options.root={root}", "data.image_size=[32, 32]", "model.width_multiplier=0.0625",
                          "model.head_kwargs={pool: flatten, hidden: [16, 16], dropout: 0.5}"], capsys)
    assert {"age_mae", "age_median_ae", "gender_accuracy"} <= set(result["metrics"]["test"])
    assert set(result["manifest"]["outputs"]) == {"age", "age_probabilities", "gender", "gender_probabilities"}


@pytest.mark.slow
def test_two_stage_nyuv2_single_tasks_then_nddr(tmp_path, capsys):
    """Stage 1 trains the two single-task configs; stage 2 builds NDDR-CNN from their best
    checkpoints (the towers and heads equal theirs before training), then trains and exports."""
    from garden.config import load_config
    from garden.trainer import load_task

    root = make_nyuv2(tmp_path / "nyuv2")
    common = LOOPS + SMALL_VGG + [f"data.options.root={root}", "data.augment.crop_size=[24, 32]", "data.image_size=[24, 32]"]
    runs = {}
    for task in ("segmentation", "normals"):
        runs[task] = tmp_path / f"single_{task}"
        run(f"single_task_vgg16_nyuv2_{task}.yaml", runs[task], common, capsys)
    init = "model.init_checkpoints={segmentation: %s, normals: %s}" % (runs["segmentation"], runs["normals"])
    config = load_config(REPO / "configs" / "nddr" / "nddr_vgg16_nyuv2.yaml",
                         common + [init, "experiment=fused"])
    # Build the fused task the way training does, and compare with the single-task checkpoints.
    from garden.trainer import _data_info, _sample_batch, _source_info, build_task
    features, _ = _sample_batch(config, "test", 2)
    fused = build_task(config, _data_info(config, _source_info(config.data), features))
    fused(features)
    for task, workdir in runs.items():
        single, _ = load_task(load_config(workdir / "config.yaml"), workdir)
        for target, source in zip(fused.model.task_layers(task), single.model.task_layers(task)):
            for a, b in zip(target.get_weights(), source.get_weights()):
                np.testing.assert_array_equal(a, b)
    run("nddr_vgg16_nyuv2.yaml", tmp_path / "fused", common + [init], capsys)
