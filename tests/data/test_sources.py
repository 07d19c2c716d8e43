"""The source layer: name dispatch, split strings, option validation, the toyworld hand-off."""

import sys
import types

import numpy as np
import pytest
import tensorflow as tf
from pydantic import BaseModel, ConfigDict

from garden.data import sources
from garden.data.config import DataConfig
from garden.data.errors import DataError
from garden.data.sources import SourceInfo, load_source, parse_source_name, select_split, source_info

SIZES = {"train": 100, "test": 20}


def _message(excinfo, *parts):
    message = str(excinfo.value)
    assert "\n" not in message, message
    for part in parts:
        assert part in message, message
    return message


# --- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, expected", [
    ("toyworld:objects", ("toyworld", "objects")),
    ("fashion_mnist", ("fashion_mnist", "")),
    ("tfds:smallnorb", ("tfds", "smallnorb")),
    ("tfds:coco/2017", ("tfds", "coco/2017")),
    ("folder", ("folder", "")),
])
def test_parse_source_name(name, expected):
    assert parse_source_name(name) == expected


@pytest.mark.parametrize("name, suggestion", [
    ("fashion-mnist", "'fashion_mnist'"),
    ("foldr", "'folder'"),
    ("tfd:cifar10", "'tfds:cifar10'"),
    ("toyworld", "'toyworld:<variant>'"),
    ("tfds:", None),
    ("imagenet_v3", None),
])
def test_unknown_source_names(name, suggestion):
    with pytest.raises(DataError) as excinfo:
        source_info(DataConfig(name=name))
    message = _message(excinfo, repr(name), "toyworld:<variant>", "fashion_mnist", "tfds:<name>[/<config>]", "folder")
    if suggestion:
        assert f"did you mean {suggestion}" in message


def test_bare_tfds_name_suggests_the_prefix():
    with pytest.raises(DataError) as excinfo:
        load_source(DataConfig(name="cifar10"), "train")
    _message(excinfo, "did you mean 'tfds:cifar10'")


# --- split strings --------------------------------------------------------------------------


@pytest.mark.parametrize("spec, expected", [
    ("train", [("train", 0, 100)]),
    ("test", [("test", 0, 20)]),
    ("train[:90%]", [("train", 0, 90)]),
    ("train[90%:]", [("train", 90, 100)]),
    ("train[10:20]", [("train", 10, 20)]),
    ("train[:-10]", [("train", 0, 90)]),
    ("train[:50%]+test", [("train", 0, 50), ("test", 0, 20)]),
    ("train + test[50%:]", [("train", 0, 100), ("test", 10, 20)]),
    ("all", [("train", 0, 100), ("test", 0, 20)]),
])
def test_select_split(spec, expected):
    assert select_split(spec, SIZES, "src") == expected


@pytest.mark.parametrize("spec, parts", [
    ("train[:90", ["'train[:90'", "not a split string", "train[:90%]"]),
    ("train(1)", ["'train(1)'", "not a split string"]),
    ("", ["expected a split string"]),
    ("tets", ["'tets'", "did you mean 'test'", "valid: test, train"]),
    ("validation", ["'validation'", "valid: test, train", "HINT"]),
    ("train[:500]", ["'train[:500]'", "train=100"]),
    ("train[5:5]", ["selects no examples"]),
])
def test_bad_split_strings(spec, parts):
    with pytest.raises(DataError) as excinfo:
        select_split(spec, SIZES, "src", hint="HINT" if spec == "validation" else "")
    _message(excinfo, *parts)


def test_source_info_split_size():
    info = SourceInfo(name="x", image_shape=(8, 8, 3), feature_keys=("image", "label"), split_sizes=SIZES)
    assert info.split_size("train[:90%]") == 90
    assert info.split_size("train+test") == 120
    assert info.label_keys == ("label",)
    assert SourceInfo(name="x", image_shape=None, feature_keys=("image",)).split_size("train") is None


# --- options --------------------------------------------------------------------------------


class _Opts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    root: str = "."
    channels: int = 3


def test_validate_options_names_bad_keys_and_values():
    assert sources.validate_options(_Opts, {"channels": 1}, "src").channels == 1
    with pytest.raises(DataError) as excinfo:
        sources.validate_options(_Opts, {"roots": "x"}, "src")
    _message(excinfo, "data.options.roots", "did you mean 'root'", "valid: root, channels")
    with pytest.raises(DataError) as excinfo:
        sources.validate_options(_Opts, {"channels": "many"}, "src")
    _message(excinfo, "data.options.channels", "'many'")


# --- toyworld hand-off (a stand-in for the builder) -----------------------------------------


@pytest.fixture
def fake_toyworld(monkeypatch):
    import garden.data.toyworld as package

    calls = []

    def load_split(variant, options, split, data_dir):
        calls.append((variant, options, split, data_dir))
        return tf.data.Dataset.from_tensor_slices({"image": np.zeros((3, 4, 4, 3), np.uint8),
                                                   "label": np.arange(3, dtype=np.int64)})

    def info(variant, options, data_dir=None):
        return {"split_sizes": {"train": 30, "validation": 10, "test": 10},
                "label_names": {"label": ["ball", "cube"], "azimuth": [str(i) for i in range(8)]},
                "image_shape": (4, 4, 3), "feature_keys": ["image", "label", "azimuth", "depth"]}

    builder = types.ModuleType("garden.data.toyworld.builder")
    builder.load_split, builder.info = load_split, info
    monkeypatch.setitem(sys.modules, "garden.data.toyworld.builder", builder)
    monkeypatch.setattr(package, "builder", builder, raising=False)
    return calls


def test_toyworld_dispatch(fake_toyworld, tmp_path):
    config = DataConfig(name="toyworld:objects", options={"num_instances": 2}, data_dir=str(tmp_path))
    ds = load_source(config, "train[:50%]")
    assert fake_toyworld == [("objects", {"num_instances": 2}, "train[:50%]", str(tmp_path))]
    assert len(list(ds)) == 3
    info = source_info(config)
    assert info.num_classes == 2 and info.class_names == ("ball", "cube")
    assert info.label_names["azimuth"] == tuple(str(i) for i in range(8))
    assert info.image_shape == (4, 4, 3)
    assert info.feature_keys == ("image", "label", "azimuth", "depth")
    assert info.split_sizes == {"train": 30, "validation": 10, "test": 10}
    assert info.split_size("validation") == 10


def test_toyworld_bad_variant_and_split_come_from_the_builder(tmp_path):
    # The real builder: validation happens before anything is generated.
    with pytest.raises(DataError) as excinfo:
        load_source(DataConfig(name="toyworld:objets", data_dir=str(tmp_path)), "train")
    _message(excinfo, "'objets'", "did you mean 'objects'")
    with pytest.raises(DataError) as excinfo:
        load_source(DataConfig(name="toyworld:objects", data_dir=str(tmp_path)), "valid")
    _message(excinfo, "'valid'", "did you mean 'validation'")
    assert not any(tmp_path.iterdir())


def test_registered_dataset_is_served_by_load_source_and_source_info(monkeypatch):
    """Methods register their own sources with @register_dataset; sources.py dispatches to them."""
    import tensorflow as tf

    from garden.data import sources
    from garden.data.config import DataConfig
    from garden.registry import DATASETS

    class PairSource:
        @staticmethod
        def load(config, split):
            return tf.data.Dataset.from_tensor_slices({"image": tf.zeros([3, 4, 4, 1], tf.uint8),
                                                       "label": tf.constant([0, 1, 0], tf.int64)})

        @staticmethod
        def info(config):
            return sources.SourceInfo(name=config.name, image_shape=(4, 4, 1), feature_keys=("image", "label"),
                                      num_classes=2, class_names=("a", "b"))

    monkeypatch.setitem(DATASETS._entries, "method_pairs", PairSource)
    config = DataConfig(name="method_pairs")
    assert [int(e["label"]) for e in sources.load_source(config, "train")] == [0, 1, 0]
    assert sources.source_info(config).num_classes == 2
