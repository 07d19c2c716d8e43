"""`tfds:<name>` with `tfds.testing.mock_data`: key mapping, dtypes, info, and the error cases.

Nothing here downloads: mock_data stubs the data (and GCS), the not-prepared case reads an
empty folder.
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from garden.data import tfds_source
from garden.data.config import DataConfig
from garden.data.errors import DataError
from garden.data.sources import load_source, source_info


def _load(name, split="train", num_examples=2, **options):
    config = DataConfig(name=name, options=options)
    with tfds.testing.mock_data(num_examples=num_examples):
        ds = load_source(config, split)
        examples = list(ds.as_numpy_iterator())
        info = source_info(config)
    return ds, examples, info


@pytest.mark.parametrize("name", ["cifar10", "svhn_cropped"])
def test_classification_datasets(name):
    ds, examples, info = _load(f"tfds:{name}", split="train[:50%]")
    assert set(ds.element_spec) == {"image", "label"}  # the string id is dropped
    assert ds.element_spec["image"].shape == (32, 32, 3) and ds.element_spec["image"].dtype == tf.uint8
    assert ds.element_spec["label"].dtype == tf.int64
    assert len(examples) == 2
    assert info.num_classes == 10 and len(info.class_names) == 10
    assert info.image_shape == (32, 32, 3) and info.feature_keys == ("image", "label")


def test_smallnorb_keys():
    ds, examples, info = _load("tfds:smallnorb", split="test")
    assert set(ds.element_spec) == {"image", "image2", "label", "instance", "azimuth", "elevation", "lighting"}
    for key in ("label", "instance", "azimuth", "elevation", "lighting"):
        assert ds.element_spec[key].dtype == tf.int64 and ds.element_spec[key].shape == ()
    assert examples[0]["image"].shape == (96, 96, 1)
    assert info.num_classes == 5 and info.class_names == ("four-legged animals", "human figures", "airplanes",
                                                          "trucks", "cars")
    assert {k: len(v) for k, v in info.label_names.items()} == {
        "label": 5, "instance": 10, "azimuth": 18, "elevation": 9, "lighting": 6}
    assert info.image_shape == (96, 96, 1)


def test_segmentation_dataset_oxford_pets():
    ds, examples, info = _load("tfds:oxford_iiit_pet", num_examples=2)
    assert set(ds.element_spec) == {"image", "label", "species", "segmentation", "head_bbox"}  # file_name dropped
    assert ds.element_spec["segmentation"].dtype == tf.int32 and ds.element_spec["segmentation"].shape.rank == 2
    assert ds.element_spec["head_bbox"].dtype == tf.float32
    assert examples[0]["segmentation"].ndim == 2 and examples[0]["segmentation"].min() >= -1
    assert info.num_classes == 37 and info.label_names["species"] == ("Cat", "Dog")
    assert info.image_shape == (None, None, 3)


def test_rename_and_drop_options():
    ds, _, info = _load("tfds:smallnorb", rename={"image2": "right"}, drop=["instance"])
    assert "right" in ds.element_spec and "instance" not in ds.element_spec and "image2" not in ds.element_spec
    assert "instance" not in info.feature_keys


def test_nested_detection_features_are_flattened(tmp_path):
    builder = tfds_source.make_builder("tfds:coco/2017", data_dir=str(tmp_path))
    mapping = tfds_source.key_map("coco", builder.info.features.get_tensor_info())
    assert mapping["objects/bbox"] == "boxes" and mapping["objects/label"] == "box_labels"
    assert mapping["image/id"] == "image_id" and mapping["image"] == "image"
    assert "image/filename" not in mapping  # a string


def test_unknown_dataset_and_config():
    with pytest.raises(DataError) as excinfo:
        source_info(DataConfig(name="tfds:cifar11"))
    message = str(excinfo.value)
    assert "\n" not in message and "'cifar11'" in message and "'tfds:cifar10'" in message
    with pytest.raises(DataError) as excinfo:
        source_info(DataConfig(name="tfds:coco/2018"))
    message = str(excinfo.value)
    assert "\n" not in message and "'2018'" in message and "2017_panoptic" in message


def test_bad_split_string_and_option():
    with pytest.raises(DataError) as excinfo:
        with tfds.testing.mock_data(num_examples=1):
            load_source(DataConfig(name="tfds:cifar10"), "train[:10%")
    assert "'train[:10%'" in str(excinfo.value) and "\n" not in str(excinfo.value)
    with pytest.raises(DataError, match="data.options.downlaod .*did you mean 'download'"):
        load_source(DataConfig(name="tfds:cifar10", options={"downlaod": True}), "train")


def test_not_prepared_never_downloads(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("must not download")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", fail)
    with pytest.raises(DataError) as excinfo:
        load_source(DataConfig(name="tfds:cifar10", data_dir=str(tmp_path)), "train")
    message = str(excinfo.value)
    assert "\n" not in message and "not prepared" in message and str(tmp_path) in message
    assert "download: true" in message


def test_split_validated_against_known_sizes(tmp_path):
    # A prepared-looking builder whose split sizes are known: bad names fail before any reading.
    class Builder:
        name = "cifar10"
        info = type("Info", (), {"splits": {"train": type("S", (), {"num_examples": 50})(),
                                             "test": type("S", (), {"num_examples": 10})()}})()

    config = DataConfig(name="tfds:cifar10")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tfds_source, "make_builder", lambda name, data_dir: Builder())
        with pytest.raises(DataError) as excinfo:
            load_source(config, "validation")
    message = str(excinfo.value)
    assert "'validation'" in message and "valid: test, train" in message


def test_convert_brings_dtypes_to_the_contract():
    seg = tfds_source._convert("segmentation", tf.ones([4, 5, 1], tf.uint8), -1)
    assert seg.dtype == tf.int32 and seg.shape == (4, 5) and int(tf.reduce_max(seg)) == 0
    depth = tfds_source._convert("depth", tf.ones([4, 5], tf.float16), 0)
    assert depth.dtype == tf.float32
    assert tfds_source._convert("is_crowd", tf.constant([True]), 0).dtype == tf.int64
    assert tfds_source._convert("image", tf.zeros([2, 2, 3], tf.uint8), 0).dtype == tf.uint8
    np.testing.assert_array_equal(tfds_source._convert("x", tf.constant([1, 2], tf.int32), 0), [1, 2])
