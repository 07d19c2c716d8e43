"""The named toyworld variants (garden/data/toyworld/variants/): determinism, splits, labels,
dense-label consistency, TFDS features and option validation. Tiny images, few examples."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pydantic
import pytest

from garden.data.errors import DataError
from garden.data.toyworld import toys
from garden.data.toyworld.variants import GENERATOR_VERSION, SPLITS, VARIANTS, attributes, objects, scenes, video

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

TINY = {
    "objects": {"image_size": 24, "num_train": 6, "num_validation": 3, "num_test": 3,
                "instances_per_category": 5, "validation_instances": 1, "test_instances": 1},
    "attributes": {"image_size": 24, "num_train": 6, "num_validation": 3, "num_test": 3},
    "scenes": {"image_size": (24, 32), "num_train": 3, "num_validation": 2, "num_test": 2},
    "video": {"image_size": (16, 24), "num_frames": 3, "num_train": 2, "num_validation": 1, "num_test": 1},
}
# sha256 of sampled labels (integers only, no pixels): see test_golden_labels. Changing how
# variants sample changes every dataset: update this together with GENERATOR_VERSION.
GOLDEN_LABELS_SHA256 = "729710c4bff0349f14798bcb33c27b48808c1fc2eaad97180b8ad72f1dfbd383"


def _digest(example: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(example):
        value = np.ascontiguousarray(example[key])
        h.update(f"{key}:{value.dtype}:{value.shape}".encode())
        h.update(value.tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def examples():
    """Every tiny example of every variant and split, rendered once for the module."""
    return {name: {split: [VARIANTS[name].example(TINY[name], split, i)
                           for i in range(VARIANTS[name].split_sizes(TINY[name])[split])]
                   for split in SPLITS}
            for name in VARIANTS}


def test_registry():
    assert set(VARIANTS) == {"objects", "attributes", "scenes", "video"}
    assert isinstance(GENERATOR_VERSION, str) and GENERATOR_VERSION
    for name, variant in VARIANTS.items():
        assert variant.name == name
        assert variant.split_sizes(TINY[name]) == {
            "train": TINY[name]["num_train"], "validation": TINY[name]["num_validation"],
            "test": TINY[name]["num_test"]}


# ----------------------------------------------------------------------------------------
# Determinism.


@pytest.mark.parametrize("name", sorted(TINY))
def test_same_inputs_same_bytes(name, examples):
    again = VARIANTS[name].example(TINY[name], "train", 1)
    assert _digest(again) == _digest(examples[name]["train"][1])
    assert _digest(examples[name]["train"][0]) != _digest(examples[name]["train"][1])


def test_fresh_process_renders_the_same(examples):
    """Same bytes from a fresh interpreter (no state carried over from this process)."""
    code = (
        "import hashlib, json, sys, numpy as np\n"
        "from garden.data.toyworld.variants import VARIANTS\n"
        "tiny = json.loads(sys.argv[1])\n"
        "out = {}\n"
        "for name, opts in tiny.items():\n"
        "    ex = VARIANTS[name].example(opts, 'validation', 0)\n"
        "    h = hashlib.sha256()\n"
        "    for key in sorted(ex):\n"
        "        v = np.ascontiguousarray(ex[key])\n"
        "        h.update(f'{key}:{v.dtype}:{v.shape}'.encode()); h.update(v.tobytes())\n"
        "    out[name] = h.hexdigest()\n"
        "print(json.dumps(out))\n")
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", code, json.dumps(TINY)], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300, check=True)
    fresh = json.loads(done.stdout.strip().splitlines()[-1])
    assert fresh == {name: _digest(examples[name]["validation"][0]) for name in TINY}


def test_golden_labels():
    """Sampled labels are pinned (integers only: PCG64 is bit-exact across machines; pixels
    are not pinned because float SIMD paths may differ between CPUs)."""
    obj, attr = objects.Options(), attributes.Options()
    scn, vid = scenes.Options(), video.Options()
    keys = ("category", "instance_in_category", "azimuth", "elevation", "lighting", "focus", "background")
    payload = {
        "objects": [[objects.sample_labels(obj, s, i)[k] for k in keys] for s in SPLITS for i in range(20)],
        "attributes": [[attributes.sample_labels(attr, s, i)[k] for k in ("shape", "color", "size", "texture")]
                       for s in SPLITS for i in range(20)],
        "scenes": [[(o.class_id, o.instance_id) for o in scenes.sample_content(scn, s, i)["objects"]]
                   for s in SPLITS for i in range(5)],
        "video": [[(t.toy.category, t.toy.instance, t.instance_id) for t in video.sample_content(vid, s, i)["tracks"]]
                  for s in SPLITS for i in range(5)],
    }
    digest = hashlib.sha256(json.dumps(payload).encode()).hexdigest()
    assert digest == GOLDEN_LABELS_SHA256


# ----------------------------------------------------------------------------------------
# Splits and sparse variations (objects).


def test_objects_splits_are_instance_disjoint():
    opts = objects.Options(**TINY["objects"])
    for category in range(opts.num_categories):
        parts = objects.instance_splits(opts, category)
        sets = {split: set(ids.tolist()) for split, ids in parts.items()}
        assert sets["train"].isdisjoint(sets["validation"]) and sets["train"].isdisjoint(sets["test"])
        assert sets["validation"].isdisjoint(sets["test"])
        assert set().union(*sets.values()) == set(range(opts.instances_per_category))
        assert (len(sets["validation"]), len(sets["test"])) == (1, 1)
    # The instance labels of the examples follow the same partition (labels only, no render).
    big = objects.Options(num_train=400, num_validation=200, num_test=200)
    seen = {split: {objects.global_instance(big, lab["category"], lab["instance_in_category"])
                    for lab in (objects.sample_labels(big, split, i) for i in range(200))}
            for split in SPLITS}
    assert seen["train"].isdisjoint(seen["validation"] | seen["test"])
    assert seen["validation"].isdisjoint(seen["test"])


def test_sparse_variations_limit_training_viewpoints():
    k = 2
    opts = objects.Options(variations_per_instance=k, num_train=2000, num_validation=600)
    views: dict[int, set] = {}
    for i in range(2000):
        lab = objects.sample_labels(opts, "train", i)
        key = objects.global_instance(opts, lab["category"], lab["instance_in_category"])
        views.setdefault(key, set()).add((lab["azimuth"], lab["elevation"]))
    assert max(len(v) for v in views.values()) <= k
    assert sum(len(v) == k for v in views.values()) > len(views) // 2  # and they are used
    # Evaluation splits keep every viewpoint.
    val = {(lab["azimuth"], lab["elevation"]) for lab in (objects.sample_labels(opts, "validation", i)
                                                         for i in range(600))}
    assert len(val) == opts.azimuth_bins * opts.elevation_bins


def test_viewpoint_angles_match_bins():
    opts = objects.Options()
    width = 360.0 / opts.azimuth_bins
    low, high = opts.elevation_range
    el_width = (high - low) / opts.elevation_bins
    for i in range(200):
        lab = objects.sample_labels(opts, "train", i)
        offset = (lab["azimuth_deg"] - lab["azimuth"] * width + 180.0) % 360.0 - 180.0
        assert abs(offset) <= width / 2
        assert low + lab["elevation"] * el_width <= lab["elevation_deg"] <= low + (lab["elevation"] + 1) * el_width


# ----------------------------------------------------------------------------------------
# Labels, masks, boxes.


@pytest.mark.parametrize("name", sorted(TINY))
def test_labels_within_label_names(name, examples):
    names = VARIANTS[name].label_names(TINY[name])
    for split in SPLITS:
        for ex in examples[name][split]:
            for key, values in names.items():
                if key in ex:
                    assert ex[key].min(initial=0) >= 0 and ex[key].max(initial=0) < len(values), key


@pytest.mark.parametrize("name", sorted(TINY))
def test_keys_dtypes_and_shapes(name, examples):
    opts = VARIANTS[name].parse_options(TINY[name])
    height, width = opts.image_size
    ex = examples[name]["train"][0]
    lead = (opts.num_frames,) if name == "video" else ()
    assert ex["image"].dtype == np.uint8 and ex["image"].shape == (*lead, height, width, 3)
    assert ex["mask"].dtype == np.uint8 and ex["mask"].shape == (*lead, height, width)
    expected = {"objects": {"label", "category", "instance", "azimuth", "elevation", "lighting", "focus",
                            "background", "azimuth_deg", "elevation_deg"},
                "attributes": {"label", "shape", "color", "size", "texture", "size_value"},
                "scenes": {"segmentation", "instance_map", "depth", "normals", "boxes", "box_labels",
                           "box_instances"},
                "video": {"segmentation", "instance_map", "depth", "normals", "boxes", "box_labels",
                          "box_instances"}}[name]
    assert set(ex) == expected | {"image", "mask"}
    for key in ("label", "category", "instance", "shape", "color", "size", "texture", "box_labels", "box_instances"):
        if key in ex:
            assert ex[key].dtype == np.int64, key
    for key in ("azimuth_deg", "elevation_deg", "size_value", "depth", "normals", "boxes"):
        if key in ex:
            assert ex[key].dtype == np.float32, key
    if name == "attributes":
        assert ex["size"] == attributes.size_bin(opts, float(ex["size_value"]))


def test_objects_show_their_toy(examples):
    for split in SPLITS:
        for ex in examples["objects"][split]:
            assert 0 < ex["mask"].mean() < 0.9  # clean style: centred and in frame


def _check_frame(image_shape, seg, inst, mask, depth, normals, boxes, labels, ids):
    height, width = image_shape
    np.testing.assert_array_equal(mask, (inst > 0).astype(np.uint8))
    assert np.all(seg[inst > 0] >= toys.class_id(0)) and np.all(seg[inst == 0] < toys.class_id(0))
    assert np.all(depth >= 0) and np.all((depth > 0) == (np.abs(normals).sum(-1) > 0))
    np.testing.assert_allclose(np.linalg.norm(normals[depth > 0], axis=-1), 1.0, atol=1e-4)
    assert sorted(ids.tolist()) == sorted(set(np.unique(inst).tolist()) - {0})
    for box, label, iid in zip(boxes, labels, ids):
        rows, cols = np.nonzero(inst == iid)
        # The box is exactly the instance's pixel extent (max edges exclusive).
        assert round(box[0] * height) == rows.min() and round(box[2] * height) == rows.max() + 1
        assert round(box[1] * width) == cols.min() and round(box[3] * width) == cols.max() + 1
        assert np.all(seg[rows, cols] == label)


def test_scenes_dense_labels_and_boxes(examples):
    opts = scenes.Options(**TINY["scenes"])
    for split in SPLITS:
        for ex in examples["scenes"][split]:
            _check_frame(opts.image_size, ex["segmentation"], ex["instance_map"], ex["mask"], ex["depth"],
                         ex["normals"], ex["boxes"], ex["box_labels"], ex["box_instances"])
    assert any(ex["boxes"].shape[0] > 0 for ex in examples["scenes"]["train"])


def test_scenes_place_toys_without_overlap():
    opts = scenes.Options(min_objects=6, max_objects=6)
    for i in range(10):
        objs = scenes.sample_content(opts, "train", i)["objects"]
        assert len({o.instance_id for o in objs}) == len(objs) >= 1
        for a in range(len(objs)):
            for b in range(a):
                gap = np.hypot(objs[a].position[0] - objs[b].position[0], objs[a].position[1] - objs[b].position[1])
                assert gap >= toys.footprint_radius(objs[a].primitives) + toys.footprint_radius(objs[b].primitives)


def test_video_ids_are_stable_over_frames(examples):
    opts = video.Options(**TINY["video"])
    for split in SPLITS:
        for index, ex in enumerate(examples["video"][split]):
            tracks = video.sample_content(opts, split, index)["tracks"]
            class_of = {t.instance_id: toys.class_id(t.toy.category) for t in tracks}
            for t in range(opts.num_frames):
                present = ex["boxes"][t, :, 2] > ex["boxes"][t, :, 0]
                _check_frame(opts.image_size, ex["segmentation"][t], ex["instance_map"][t], ex["mask"][t],
                             ex["depth"][t], ex["normals"][t], ex["boxes"][t][present], ex["box_labels"][present],
                             ex["box_instances"][present])
                np.testing.assert_array_equal(ex["boxes"][t][~present], 0.0)
                # Same toy, same id: the class under every id is that track's category.
                for iid in np.unique(ex["instance_map"][t]):
                    if iid:
                        assert np.all(ex["segmentation"][t][ex["instance_map"][t] == iid] == class_of[iid])
            assert [class_of[i] for i in ex["box_instances"]] == ex["box_labels"].tolist()


def test_video_toys_move_and_ids_persist():
    opts = video.Options()
    moved = 0
    for i in range(10):
        tracks = video.sample_content(opts, "train", i)["tracks"]
        assert len({t.instance_id for t in tracks}) == len(tracks) >= 1
        for t in tracks:
            assert t.positions.shape == (opts.num_frames, 2)
            step = np.hypot(*(t.positions[-1] - t.positions[0]))
            if toys.CATEGORIES[t.toy.category] in toys.VEHICLES:
                moved += step > 0.2
            else:
                assert step == 0.0
    assert moved > 0


# ----------------------------------------------------------------------------------------
# Styles.


def test_test_style_changes_only_the_test_look():
    base = dict(TINY["objects"])
    shifted = dict(base, test_style="photo")
    clean_test, photo_test = (VARIANTS["objects"].example(o, "test", 0) for o in (base, shifted))
    for key in clean_test:
        if key not in ("image", "mask"):
            np.testing.assert_array_equal(clean_test[key], photo_test[key])  # same labelled content
    assert not np.array_equal(clean_test["image"], photo_test["image"])
    for split in ("train", "validation"):
        assert _digest(VARIANTS["objects"].example(base, split, 0)) == \
               _digest(VARIANTS["objects"].example(shifted, split, 0))


def test_objects_background_family_option():
    plain = VARIANTS["objects"].example(dict(TINY["objects"], backgrounds="plain"), "train", 0)
    textured = VARIANTS["objects"].example(dict(TINY["objects"], backgrounds="textured"), "train", 0)
    outside = plain["mask"] == 0
    assert not np.array_equal(plain["image"][outside], textured["image"][outside])
    np.testing.assert_array_equal(plain["mask"], textured["mask"])


@pytest.mark.parametrize("name", sorted(TINY))
def test_photo_style_renders(name):
    ex = VARIANTS[name].example(dict(TINY[name], style="photo"), "train", 0)
    assert ex["image"].dtype == np.uint8 and ex["image"].std() > 0


# ----------------------------------------------------------------------------------------
# TFDS features.


@pytest.mark.parametrize("name", sorted(TINY))
def test_features_encode_the_examples(name, examples):
    features = VARIANTS[name].features(TINY[name])
    assert set(features.keys()) == set(examples[name]["train"][0])
    for split in SPLITS:
        for ex in examples[name][split]:
            features.encode_example(ex)


@pytest.mark.parametrize("name", ["scenes", "video"])
def test_features_round_trip(name, examples):
    """Serialised and decoded back, ragged boxes included (and an image without boxes)."""
    features = VARIANTS[name].features(TINY[name])
    ex = examples[name]["train"][0]
    empty = dict(ex, boxes=np.zeros((*ex["boxes"].shape[:-2], 0, 4), np.float32),
                 box_labels=np.zeros((0,), np.int64), box_instances=np.zeros((0,), np.int64))
    for sample in (ex, empty):
        decoded = features.deserialize_example_np(features.serialize_example(sample))
        for key, value in sample.items():
            np.testing.assert_array_equal(np.asarray(decoded[key]), value, err_msg=key)
            assert np.asarray(decoded[key]).dtype == value.dtype, key


def test_objects_dense_labels_option():
    opts = dict(TINY["objects"], dense_labels=True)
    ex = VARIANTS["objects"].example(opts, "train", 0)
    assert ex["depth"].shape == ex["mask"].shape and ex["normals"].shape == (*ex["mask"].shape, 3)
    np.testing.assert_array_equal(ex["depth"] > 0, ex["mask"] > 0)  # no ground: only the toy is hit
    VARIANTS["objects"].features(opts).encode_example(ex)


# ----------------------------------------------------------------------------------------
# Options.


@pytest.mark.parametrize("name", sorted(TINY))
def test_options_reject_unknown_keys(name):
    variant = VARIANTS[name]
    with pytest.raises(pydantic.ValidationError, match="Extra inputs are not permitted"):
        variant.Options(imagesize=32)
    with pytest.raises(DataError, match=r"unknown toyworld:\w+ option 'imagesize' \(did you mean 'image_size'\?\)"):
        variant.parse_options({"imagesize": 32})
    with pytest.raises(DataError, match="image_size"):
        variant.parse_options({"image_size": 4})
    with pytest.raises(DataError, match="style"):
        variant.parse_options({"style": "cartoon"})


@pytest.mark.parametrize("name", sorted(TINY))
def test_options_survive_their_json_dump(name):
    """The builder stores options as JSON and validates them again."""
    opts = VARIANTS[name].parse_options(TINY[name])
    assert VARIANTS[name].Options(**json.loads(json.dumps(opts.model_dump(mode="json")))) == opts
    assert VARIANTS[name].parse_options({}) == VARIANTS[name].Options()


def test_cross_field_checks():
    with pytest.raises(DataError, match="instances_per_category"):
        VARIANTS["objects"].parse_options({"instances_per_category": 4, "validation_instances": 2,
                                           "test_instances": 2})
    with pytest.raises(DataError, match="variations_per_instance"):
        VARIANTS["objects"].parse_options({"variations_per_instance": 31})
    with pytest.raises(DataError, match="min_objects"):
        VARIANTS["scenes"].parse_options({"min_objects": 4, "max_objects": 2})
    with pytest.raises(DataError, match="size_range"):
        VARIANTS["attributes"].parse_options({"size_range": (0.9, 0.3)})


def test_bad_split_and_index():
    variant = VARIANTS["attributes"]
    with pytest.raises(DataError, match="did you mean 'validation'"):
        variant.example(TINY["attributes"], "valid", 0)
    with pytest.raises(DataError, match="out of range"):
        variant.example(TINY["attributes"], "test", TINY["attributes"]["num_test"])
