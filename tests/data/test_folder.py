"""The folder source on a tiny generated dataset: images, labels.csv / labels.json, dense files."""

import json

import numpy as np
import pytest
import tensorflow as tf

from garden.data.config import DataConfig
from garden.data.errors import DataError
from garden.data.sources import load_source, source_info

H, W = 6, 8
ROWS = [  # image, split, label (names), azimuth (ints), size (floats)
    ("img/0.png", "train", "car", "3", "0.5"),
    ("img/1.png", "train", "plane", "0", "1.5"),
    ("img/2.png", "train", "car", "", "2.5"),
    ("img/3.png", "train", "boat", "7", "3.5"),
    ("img/4.png", "test", "plane", "1", "4.5"),
    ("img/5.png", "test", "car", "2", ""),
]


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.io.encode_png(array).numpy())


def _image(i):
    return np.full((H, W, 3), 10 * i, np.uint8)


@pytest.fixture
def root(tmp_path):
    """Six 6x8 RGB images, an 8-bit segmentation PNG, a 16-bit depth PNG and .npy normals each."""
    lines = ["image,split,label,azimuth,size,segmentation,depth,normals"]
    for i, (image, split, label, azimuth, size) in enumerate(ROWS):
        _png(tmp_path / image, _image(i))
        _png(tmp_path / f"seg/{i}.png", np.full((H, W, 1), i, np.uint8))
        _png(tmp_path / f"depth/{i}.png", np.full((H, W, 1), 1000 * i + 250, np.uint16))
        (tmp_path / "normals").mkdir(exist_ok=True)
        np.save(tmp_path / f"normals/{i}.npy", np.tile(np.array([0, 0, -1], np.float32), (H, W, 1)))
        lines.append(f"{image},{split},{label},{azimuth},{size},seg/{i}.png,depth/{i}.png,normals/{i}.npy")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    return tmp_path


def _config(root, **options):
    return DataConfig(name="folder", options={"root": str(root), **options})


def _message(excinfo, *parts):
    message = str(excinfo.value)
    assert "\n" not in message, message
    for part in parts:
        assert part in message, message
    return message


def test_loads_images_labels_and_dense_files(root):
    ds = load_source(_config(root), "train")
    spec = ds.element_spec
    assert spec["image"].dtype == tf.uint8 and spec["image"].shape.as_list() == [None, None, 3]
    assert spec["label"].dtype == tf.int64 and spec["azimuth"].dtype == tf.int64
    assert spec["size"].dtype == tf.float32
    assert spec["segmentation"].dtype == tf.int32 and spec["segmentation"].shape.rank == 2
    assert spec["depth"].dtype == tf.float32 and spec["normals"].shape.as_list() == [None, None, 3]
    examples = list(ds.as_numpy_iterator())
    assert len(examples) == 4
    # names are mapped to ids in sorted order: boat 0, car 1, plane 2; an empty cell is -1
    assert [int(e["label"]) for e in examples] == [1, 2, 1, 0]
    assert [int(e["azimuth"]) for e in examples] == [3, 0, -1, 7]
    np.testing.assert_allclose([e["size"] for e in examples], [0.5, 1.5, 2.5, 3.5])
    for i, e in enumerate(examples):
        np.testing.assert_array_equal(e["image"], _image(i))
        assert e["segmentation"].shape == (H, W) and (e["segmentation"] == i).all()
        np.testing.assert_allclose(e["depth"], np.full((H, W), 1.0 * i + 0.25), rtol=1e-6)
        np.testing.assert_array_equal(e["normals"][0, 0], [0, 0, -1])


def test_split_strings(root):
    labels = [int(e["label"]) for e in load_source(_config(root), "train[50%:]+test").as_numpy_iterator()]
    assert labels == [1, 0, 2, 1]
    assert len(list(load_source(_config(root), "all"))) == 6
    with pytest.raises(DataError) as excinfo:
        load_source(_config(root), "validation")
    _message(excinfo, "'validation'", "valid: test, train")
    with pytest.raises(DataError) as excinfo:
        load_source(_config(root), "train[:5")
    _message(excinfo, "'train[:5'", "train[:90%]")


def test_info(root):
    info = source_info(_config(root))
    assert info.num_classes == 3 and info.class_names == ("boat", "car", "plane")
    assert info.label_names["azimuth"] == tuple(str(i) for i in range(8))
    assert "size" not in info.label_names
    assert info.image_shape == (H, W, 3)
    assert info.split_sizes == {"train": 4, "test": 2}
    assert info.feature_keys == ("image", "label", "azimuth", "size", "segmentation", "depth", "normals")


def test_options_select_rename_and_name_classes(root):
    config = _config(root, label_columns=["label", "segmentation"], rename={"label": "category"},
                     class_names={"label": ["plane", "car", "boat"]}, channels=1)
    ds = load_source(config, "test")
    assert set(ds.element_spec) == {"image", "category", "segmentation"}
    examples = list(ds.as_numpy_iterator())
    assert [int(e["category"]) for e in examples] == [0, 1]
    assert examples[0]["image"].shape == (H, W, 1)
    info = source_info(config)
    assert info.num_classes is None and info.label_names["category"] == ("plane", "car", "boat")


def test_labels_json_with_class_names(tmp_path):
    for i in range(3):
        _png(tmp_path / f"{i}.png", _image(i))
    (tmp_path / "labels.json").write_text(json.dumps({
        "class_names": {"label": ["sneaker", "boot"]},
        "examples": [{"image": f"{i}.png", "split": "train", "label": ["boot", "sneaker", "boot"][i]}
                     for i in range(3)],
    }))
    config = DataConfig(name="folder", data_dir=str(tmp_path))  # data_dir is the default root
    assert [int(e["label"]) for e in load_source(config, "train").as_numpy_iterator()] == [1, 0, 1]
    assert source_info(config).class_names == ("sneaker", "boot")


def test_missing_root_index_and_options(tmp_path):
    with pytest.raises(DataError) as excinfo:
        load_source(_config(tmp_path / "nope"), "train")
    _message(excinfo, str(tmp_path / "nope"), "labels.csv")
    with pytest.raises(DataError) as excinfo:
        load_source(DataConfig(name="folder"), "train")
    _message(excinfo, "data.options.root")
    with pytest.raises(DataError) as excinfo:
        load_source(_config(tmp_path), "train")
    _message(excinfo, str(tmp_path), "no labels.csv or labels.json", "image, split")
    with pytest.raises(DataError) as excinfo:
        load_source(_config(tmp_path, rot="x"), "train")
    _message(excinfo, "data.options.rot", "did you mean 'root'")


def test_missing_columns(root):
    with pytest.raises(DataError) as excinfo:
        load_source(_config(root, image_column="file"), "train")
    _message(excinfo, str(root / "labels.csv"), "no column 'file'", "data.options.image_column", "image, split")
    with pytest.raises(DataError) as excinfo:
        load_source(_config(root, label_columns=["lable"]), "train")
    _message(excinfo, "no column 'lable'", "did you mean 'label'")


def test_missing_image_and_dense_files(root):
    (root / "img/2.png").unlink()
    with pytest.raises(DataError) as excinfo:
        load_source(_config(root), "train")
    _message(excinfo, str(root / "img/2.png"), "does not exist", "line 4", "column image")
    _png(root / "img/2.png", _image(2))
    (root / "depth/5.png").unlink()
    with pytest.raises(DataError) as excinfo:
        source_info(_config(root))
    _message(excinfo, str(root / "depth/5.png"), "column depth")


def test_unknown_class_name_and_ragged_rows(root):
    with pytest.raises(DataError) as excinfo:
        load_source(_config(root, class_names={"label": ["car", "plane"]}), "train")
    _message(excinfo, "'boat'", "line 5", "valid: car, plane")
    (root / "labels.csv").write_text("image,split,label\nimg/0.png,train,1,extra\n")
    with pytest.raises(DataError) as excinfo:
        load_source(_config(root), "train")
    _message(excinfo, "line 2", "more cells")
