"""TFDS builders, cache keys and cache safety of toyworld (garden/data/toyworld/builder.py).

Cache mechanics are tested with a tiny fake variant (fast, and it can be told to fail half-way);
the real variants are checked end to end at tiny sizes.
"""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import pytest
from pydantic import BaseModel, ConfigDict, Field

import garden.data.toyworld  # noqa: F401 - registers the TFDS builders
from garden.data.errors import DataError
from garden.data.toyworld import builder


# ----------------------------------------------------------------------------------------
# A fake variant with the Variant interface.


class FakeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image_size: int = Field(8, ge=4, le=64)
    train_size: int = Field(6, ge=0)
    validation_size: int = Field(2, ge=0)
    test_size: int = Field(2, ge=0)
    style: str = "clean"


class FakeVariant:
    Options = FakeOptions
    NAMES = ["cat", "dog", "emu"]

    def __init__(self):
        self.calls = 0
        self.fail_at = None  # index at which example() raises (simulates a crash)
        self.hook = None  # called once, from inside the next example() call

    def split_sizes(self, options):
        return {"train": options.train_size, "validation": options.validation_size,
                "test": options.test_size}

    def example(self, options, split, index):
        self.calls += 1
        if self.hook is not None:
            hook, self.hook = self.hook, None
            hook()
        if self.fail_at is not None and index == self.fail_at:
            raise RuntimeError("boom half-way")
        s = options.image_size
        offset = {"train": 0, "validation": 100, "test": 200}[split]
        n = index % 3
        return {
            "image": np.full((s, s, 3), (offset + index) % 256, np.uint8),
            "label": np.int64(index % 3),
            "index": np.int64(offset + index),
            "mask": np.eye(s, dtype=np.uint8),
            "depth": np.full((s, s), 1.5, np.float32),
            "boxes": np.tile(np.array([[0.1, 0.2, 0.5, 0.6]], np.float32), (n, 1)),
            "box_labels": np.arange(n, dtype=np.int64),
        }

    def features(self, options):
        import tensorflow_datasets as tfds

        s = options.image_size
        return tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(s, s, 3)),
            "label": tfds.features.ClassLabel(names=self.NAMES),
            "index": tfds.features.Scalar(dtype=np.int64),
            "mask": tfds.features.Tensor(shape=(s, s), dtype=np.uint8),
            "depth": tfds.features.Tensor(shape=(s, s), dtype=np.float32),
            "boxes": tfds.features.Tensor(shape=(None, 4), dtype=np.float32),
            "box_labels": tfds.features.Tensor(shape=(None,), dtype=np.int64),
        })

    def label_names(self, options):
        return {"label": list(self.NAMES)}


@pytest.fixture
def fake(monkeypatch):
    """Replaces the catalogue by fakes under the real variant names."""
    variants = {name: FakeVariant() for name in ("objects", "attributes", "scenes", "video")}
    state = {"version": "fake-1"}
    monkeypatch.setattr(builder, "catalogue", lambda: (variants, state["version"]))
    return variants["objects"], state


def _as_list(ds):
    return list(ds.as_numpy_iterator())


# ----------------------------------------------------------------------------------------
# load_split on the fake variant.


def test_load_split_keys_dtypes_shapes(fake, tmp_path):
    ds = builder.load_split("objects", {"image_size": 8}, "train", str(tmp_path))
    examples = _as_list(ds)
    assert len(examples) == 6
    ex = examples[4]
    assert set(ex) == {"image", "label", "index", "mask", "depth", "boxes", "box_labels"}
    assert ex["image"].dtype == np.uint8 and ex["image"].shape == (8, 8, 3)
    assert ex["label"].dtype == np.int64 and ex["label"].shape == ()
    assert ex["mask"].dtype == np.uint8 and ex["mask"].shape == (8, 8)
    assert ex["depth"].dtype == np.float32
    assert ex["boxes"].dtype == np.float32 and ex["boxes"].shape == (1, 4)
    assert ex["box_labels"].shape == (1,)
    # stored in index order, values intact
    assert [int(e["index"]) for e in examples] == list(range(6))
    np.testing.assert_array_equal(ex["image"], np.full((8, 8, 3), 4, np.uint8))


def test_second_load_reads_cache(fake, tmp_path):
    variant, _ = fake
    builder.load_split("objects", {}, "train", str(tmp_path))
    calls = variant.calls
    assert calls == 10  # train + validation + test generated once
    info_file = os.path.join(builder.cache_dir("objects", {}, str(tmp_path)), "dataset_info.json")
    mtime = os.path.getmtime(info_file)
    ds = builder.load_split("objects", {}, "validation", str(tmp_path))
    assert [int(e["index"]) for e in _as_list(ds)] == [100, 101]
    assert variant.calls == calls
    assert os.path.getmtime(info_file) == mtime


def test_split_strings(fake, tmp_path):
    d = str(tmp_path)
    first = _as_list(builder.load_split("objects", {}, "train[:50%]", d))
    assert [int(e["index"]) for e in first] == [0, 1, 2]
    assert len(_as_list(builder.load_split("objects", {}, "train[2:4]", d))) == 2
    both = _as_list(builder.load_split("objects", {}, "train+validation", d))
    assert len(both) == 8


def test_options_and_generator_version_change_cache_dir(fake, tmp_path):
    _, state = fake
    d = str(tmp_path)
    base = builder.cache_dir("objects", {}, d)
    assert builder.cache_dir("objects", {"image_size": 8}, d) == base  # defaults filled in
    assert os.path.basename(os.path.dirname(base)).startswith("default_")
    other = builder.cache_dir("objects", {"image_size": 16}, d)
    assert other != base and os.path.basename(os.path.dirname(other)).startswith("custom_")
    assert builder.cache_dir("scenes", {}, d) != base
    state["version"] = "fake-2"
    assert builder.cache_dir("objects", {}, d) != base
    builder.load_split("objects", {"image_size": 16}, "test", d)
    assert os.path.isfile(os.path.join(builder.cache_dir("objects", {"image_size": 16}, d),
                                       "dataset_info.json"))


def test_info_is_cheap(fake, tmp_path):
    variant, _ = fake
    out = builder.info("objects", {"image_size": 12}, data_dir=str(tmp_path))
    assert out["split_sizes"] == {"train": 6, "validation": 2, "test": 2}
    assert out["label_names"] == {"label": ["cat", "dog", "emu"]}
    assert out["image_shape"] == (12, 12, 3)
    assert "boxes" in out["feature_keys"] and out["features"]["depth"]["dtype"] == "float32"
    assert out["cached"] is False
    assert variant.calls == 0 and not os.listdir(tmp_path)


@pytest.mark.parametrize("call, expected", [
    (lambda d: builder.load_split("object", {}, "train", d),
     ["unknown toyworld variant 'object'", "did you mean 'objects'", "scenes"]),
    (lambda d: builder.load_split("objects", {"imgsize": 3}, "train", d),
     ["'imgsize'", "did you mean 'image_size'", "image_size", "train_size"]),
    (lambda d: builder.load_split("objects", {"image_size": 2}, "train", d),
     ["image_size=2", "greater than or equal to 4"]),
    (lambda d: builder.load_split("objects", {}, "trian", d),
     ["unknown split 'trian'", "did you mean 'train'", "validation"]),
    (lambda d: builder.load_split("objects", {}, "train[:abc]", d),
     ["bad split 'train[:abc]'"]),
    (lambda d: builder.load_split("objects", {"test_size": 0}, "test", d),
     ["'test'", "empty"]),
    (lambda d: builder.info("videos", {}), ["did you mean 'video'"]),
])
def test_bad_inputs_are_one_line_data_errors(fake, tmp_path, call, expected):
    with pytest.raises(DataError) as err:
        call(str(tmp_path))
    message = str(err.value)
    assert "\n" not in message
    for part in expected:
        assert part in message, (part, message)
    assert not os.listdir(tmp_path)  # nothing generated for bad input


# ----------------------------------------------------------------------------------------
# Cache safety.


def _leftovers(data_dir):
    return [p for p in glob.glob(os.path.join(data_dir, "**", "*"), recursive=True)
            if "incomplete" in os.path.basename(p) or "corrupt" in os.path.basename(p)]


def test_half_written_cache_is_never_read(fake, tmp_path):
    variant, _ = fake
    d = str(tmp_path)
    variant.fail_at = 3
    with pytest.raises(RuntimeError, match="boom"):
        builder.load_split("objects", {}, "train", d)
    folder = builder.cache_dir("objects", {}, d)
    assert not os.path.exists(folder)
    assert not _leftovers(d)
    assert not builder.make_builder("objects", {}, d).is_prepared()
    # A process killed half-way leaves an incomplete.* folder: it must be ignored.
    junk = os.path.join(os.path.dirname(folder), "incomplete.ABC123_" + os.path.basename(folder))
    os.makedirs(junk)
    with open(os.path.join(junk, "dataset_info.json"), "w") as f:
        f.write("{half")
    variant.fail_at = None
    variant.calls = 0
    examples = _as_list(builder.load_split("objects", {}, "train", d))
    assert [int(e["index"]) for e in examples] == list(range(6))
    assert variant.calls == 10


def test_truncated_shard_is_regenerated(fake, tmp_path):
    variant, _ = fake
    d = str(tmp_path)
    builder.load_split("objects", {}, "train", d)
    folder = builder.cache_dir("objects", {}, d)
    shard = sorted(glob.glob(os.path.join(folder, "*train.tfrecord*")))[0]
    with open(shard, "r+b") as f:
        f.truncate(os.path.getsize(shard) // 2)
    variant.calls = 0
    examples = _as_list(builder.load_split("objects", {}, "train", d))
    assert len(examples) == 6 and variant.calls == 10
    assert not _leftovers(d)


def test_unreadable_dataset_info_is_regenerated(fake, tmp_path):
    variant, _ = fake
    d = str(tmp_path)
    builder.load_split("objects", {}, "train", d)
    folder = builder.cache_dir("objects", {}, d)
    with open(os.path.join(folder, "dataset_info.json"), "w") as f:
        f.write("{not json")
    variant.calls = 0
    assert len(_as_list(builder.load_split("objects", {}, "test", d))) == 2
    assert variant.calls == 10
    with open(os.path.join(folder, "dataset_info.json")) as f:
        json.load(f)


def test_missing_shard_is_regenerated(fake, tmp_path):
    variant, _ = fake
    d = str(tmp_path)
    builder.load_split("objects", {}, "train", d)
    folder = builder.cache_dir("objects", {}, d)
    for shard in glob.glob(os.path.join(folder, "*validation.tfrecord*")):
        os.remove(shard)
    variant.calls = 0
    assert len(_as_list(builder.load_split("objects", {}, "validation", d))) == 2
    assert variant.calls == 10


def test_concurrent_generation_of_the_same_cache(fake, tmp_path):
    """Another process finishing the same cache first: its copy is used, nothing breaks."""
    variant, _ = fake
    d = str(tmp_path)
    # While this load renders its first example, "another process" builds the whole cache.
    variant.hook = lambda: builder.prepare("objects", {}, d)
    examples = _as_list(builder.load_split("objects", {}, "train", d))
    assert [int(e["index"]) for e in examples] == list(range(6))
    assert not _leftovers(d)


# ----------------------------------------------------------------------------------------
# TFDS entry points.


def test_tfds_load_after_import(fake, tmp_path):
    import tensorflow_datasets as tfds

    d = str(tmp_path)
    ds = tfds.load("toyworld_objects", split="validation", data_dir=d,
                   builder_kwargs={"config": builder.ToyworldConfig(options={"image_size": 16})})
    examples = _as_list(ds)
    assert len(examples) == 2 and examples[0]["image"].shape == (16, 16, 3)
    # default options: no config needed; the config name is the default cache key
    b = tfds.builder("toyworld_objects", data_dir=d)
    assert b.builder_config.name == builder.make_config("objects").name
    assert b.builder_config.name.startswith("default_")
    assert str(b.version) == builder.BUILDER_VERSION
    train, label = next(iter(tfds.load("toyworld_objects", split="train[:1]", data_dir=d,
                                       as_supervised=True)))
    assert train.shape == (8, 8, 3) and int(label) == 0
    # a plain dict of options works as the config too
    b2 = tfds.builder("toyworld_scenes", data_dir=d, config={"image_size": 16})
    assert b2.builder_config.name.startswith("custom_")


def test_tfds_bad_config_is_data_error(fake, tmp_path):
    import tensorflow_datasets as tfds

    with pytest.raises(DataError, match="imgsize"):
        tfds.builder("toyworld_objects", data_dir=str(tmp_path),
                     config=builder.ToyworldConfig(options={"imgsize": 3}))


# ----------------------------------------------------------------------------------------
# The real variants, end to end at tiny sizes.

TINY = {
    "objects": {"image_size": 16, "num_train": 3, "num_validation": 1, "num_test": 1},
    "attributes": {"image_size": 16, "num_train": 3, "num_validation": 1, "num_test": 1},
    "scenes": {"image_size": 24, "num_train": 3, "num_validation": 1, "num_test": 1,
               "max_objects": 3},
    "video": {"image_size": 16, "num_train": 2, "num_validation": 1, "num_test": 1,
              "num_frames": 3, "max_objects": 2},
}
# Contract dtypes (docs/design/contracts.md, "Data: example dictionaries").
DTYPES = {"image": np.uint8, "label": np.int64, "category": np.int64, "instance": np.int64,
          "azimuth": np.int64, "elevation": np.int64, "lighting": np.int64, "focus": np.int64,
          "background": np.int64, "azimuth_deg": np.float32, "elevation_deg": np.float32,
          "shape": np.int64, "color": np.int64, "size": np.int64, "texture": np.int64,
          "size_value": np.float32, "mask": np.uint8, "segmentation": np.int32,
          "instance_map": np.int32, "depth": np.float32, "normals": np.float32,
          "boxes": np.float32, "box_labels": np.int64, "box_instances": np.int64}


@pytest.mark.parametrize("variant", sorted(TINY))
def test_real_variant_round_trip(variant, tmp_path):
    options = TINY[variant]
    examples = _as_list(builder.load_split(variant, options, "train", str(tmp_path)))
    assert len(examples) == options["num_train"]
    spec = builder.get_variant(variant)
    direct = spec.example(options, "train", 1)
    stored = examples[1]
    assert set(stored) == set(direct) == set(builder.info(variant, options)["feature_keys"])
    size = options["image_size"]
    frames = (options["num_frames"],) if variant == "video" else ()
    assert stored["image"].shape == (*frames, size, size, 3)
    for key, value in stored.items():
        assert value.dtype == DTYPES[key], (key, value.dtype)
        np.testing.assert_array_equal(value, direct[key], err_msg=key)  # lossless storage
    if "boxes" in stored:
        assert stored["boxes"].shape[-1] == 4
        assert stored["boxes"].shape[-2] == stored["box_labels"].shape[0]
    if "segmentation" in stored:
        assert stored["segmentation"].shape == (*frames, size, size)
        assert stored["normals"].shape == (*frames, size, size, 3)


def test_real_tfds_load(tmp_path):
    import tensorflow_datasets as tfds

    config = builder.ToyworldConfig(options=TINY["attributes"])
    ds, ds_info = tfds.load("toyworld_attributes", split="train[:2]", data_dir=str(tmp_path),
                            builder_kwargs={"config": config}, with_info=True)
    assert len(_as_list(ds)) == 2
    assert ds_info.features["label"].names == builder.info("attributes", {})["label_names"]["label"]
    assert ds_info.metadata["options"]["num_train"] == 3
    assert ds_info.splits["train"].num_examples == 3


def test_worker_processes_give_the_same_examples(tmp_path):
    options = {**TINY["attributes"], "num_train": 4 * builder._CHUNK + 3}
    builder.prepare("attributes", options, str(tmp_path), num_workers=2)
    stored = _as_list(builder.load_split("attributes", options, "train", str(tmp_path)))
    spec = builder.get_variant("attributes")
    assert len(stored) == options["num_train"]
    for index in (0, builder._CHUNK, len(stored) - 1):  # chunk boundaries keep index order
        direct = spec.example(options, "train", index)
        for key in direct:
            np.testing.assert_array_equal(stored[index][key], direct[key], err_msg=key)
    with pytest.raises(DataError, match="workers"):
        builder.prepare("attributes", options, str(tmp_path), num_workers="many")
