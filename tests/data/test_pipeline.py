"""Batched (features, labels) pipelines (garden/data/pipeline.py)."""

import sys
import types

import numpy as np
import pytest
import tensorflow as tf

from garden.data import pipeline
from garden.data.config import AugmentConfig, DataConfig
from garden.data.errors import DataError
from tests.data.test_augment import INST, SEG, assert_aligned


def classification_examples(n=10, h=8, w=8, c=3):
    rng = np.random.default_rng(0)
    return tf.data.Dataset.from_tensor_slices({
        "image": rng.integers(0, 256, (n, h, w, c), dtype=np.uint8),
        "label": np.arange(n, dtype=np.int64),
        "category": np.arange(n, dtype=np.int64) % 3,
    })


def dense_examples(n=6, h=8, w=8, video_frames=None):
    """Scenes with i % 3 + 1 objects each (ragged boxes); object k is a 2x2 block at row 2k."""
    def gen():
        for i in range(n):
            k = i % 3 + 1
            seg = np.zeros((h, w), np.int32)
            inst = np.zeros((h, w), np.int32)
            boxes = []
            for j in range(k):
                seg[2 * j:2 * j + 2, 1:3] = SEG
                inst[2 * j:2 * j + 2, 1:3] = INST
                boxes.append([2 * j / h, 1 / w, (2 * j + 2) / h, 3 / w])
            obj = seg > 0
            normals = np.zeros((h, w, 3), np.float32)
            normals[obj] = (0.6, 0.0, 0.8)
            ex = {
                "image": np.where(obj[..., None], 200, 20).astype(np.uint8).repeat(3, -1),
                "segmentation": seg, "instance_map": inst,
                "depth": np.where(obj, 2.5, 0).astype(np.float32), "normals": normals,
                "mask": obj.astype(np.uint8),
                "boxes": np.array(boxes, np.float32),
                "box_labels": np.full(k, SEG, np.int64), "box_instances": np.full(k, INST, np.int64),
            }
            if video_frames:
                ex = {key: np.stack([v] * video_frames) for key, v in ex.items()}
            yield ex

    ex0 = next(gen())
    sig = {}
    for key, v in ex0.items():
        shape = list(v.shape)
        if key.startswith("box"):
            shape[-2 if key == "boxes" else -1] = None
        sig[key] = tf.TensorSpec(shape, tf.as_dtype(v.dtype))
    return tf.data.Dataset.from_generator(gen, output_signature=sig)


def config(**kw):
    return DataConfig(name="test", **kw)


def batches(ds):
    return [tf.nest.map_structure(np.asarray, b) for b in ds]


def test_classification_batch_shapes_and_dtypes():
    ds = pipeline.build_from_examples(classification_examples(), config(batch_size=4), training=False)
    out = batches(ds)
    assert [b[0]["image"].shape for b in out] == [(4, 8, 8, 3), (4, 8, 8, 3), (2, 8, 8, 3)]
    features, labels = out[0]
    assert set(features) == {"image"} and features["image"].dtype == np.float32
    assert set(labels) == {"label", "category"} and labels["label"].dtype == np.int64
    np.testing.assert_array_equal(np.concatenate([b[1]["label"] for b in out]), np.arange(10))
    # Not normalised: the raw pixel values as floats.
    raw = next(iter(classification_examples().batch(4)))["image"].numpy()
    np.testing.assert_array_equal(features["image"], raw.astype(np.float32))


def test_training_drops_remainder_and_shuffles():
    ds = pipeline.build_from_examples(classification_examples(), config(batch_size=4), training=True, seed=1)
    out = batches(ds)
    assert [b[0]["image"].shape[0] for b in out] == [4, 4]
    assert ds.element_spec[0]["image"].shape == (4, 8, 8, 3)
    labels = np.concatenate([b[1]["label"] for b in out])
    assert len(set(labels)) == 8 and not np.array_equal(labels, np.arange(8))


def test_label_keys_filtering_and_unknown_key():
    ds = pipeline.build_from_examples(classification_examples(), config(label_keys=["category"]),
                                      training=False)
    assert set(ds.element_spec[1]) == {"category"}
    with pytest.raises(DataError, match=r"unknown label key 'catgory'.*did you mean 'category'.*valid: category, label"):
        pipeline.build_from_examples(classification_examples(), config(label_keys=["catgory"]), training=False)
    with pytest.raises(DataError, match="valid:"):
        pipeline.build_from_examples(classification_examples(), config(label_keys=["image"]), training=False)


def test_dense_batches_and_box_padding():
    ds = pipeline.build_from_examples(dense_examples(), config(batch_size=3, max_boxes=4), training=False)
    features, labels = batches(ds)[0]
    assert features["image"].shape == (3, 8, 8, 3)
    assert labels["segmentation"].shape == (3, 8, 8) and labels["segmentation"].dtype == np.int32
    assert labels["normals"].shape == (3, 8, 8, 3) and labels["depth"].dtype == np.float32
    assert labels["boxes"].shape == (3, 4, 4) and labels["boxes"].dtype == np.float32
    assert labels["box_labels"].shape == (3, 4) and labels["box_instances"].shape == (3, 4)
    np.testing.assert_array_equal(labels["num_boxes"], [1, 2, 3])
    assert labels["num_boxes"].dtype == np.int32
    np.testing.assert_array_equal(labels["box_labels"][0], [SEG, -1, -1, -1])
    np.testing.assert_array_equal(labels["box_instances"][1], [INST, INST, -1, -1])
    np.testing.assert_array_equal(labels["boxes"][0, 1:], 0.0)
    np.testing.assert_allclose(labels["boxes"][2, 2], [4 / 8, 1 / 8, 6 / 8, 3 / 8])
    assert ds.element_spec[1]["boxes"].shape[1:] == (4, 4)


def test_box_label_keys_bring_num_boxes():
    ds = pipeline.build_from_examples(dense_examples(), config(label_keys=["box_labels"], max_boxes=2),
                                      training=False)
    assert set(ds.element_spec[1]) == {"box_labels", "num_boxes"}


def test_pad_boxes_compacts_truncates_and_handles_frames():
    ex = {"boxes": tf.constant([[0.1, 0.1, 0.2, 0.2], [0.5, 0.5, 0.5, 0.9], [0.3, 0.3, 0.4, 0.4]]),
          "box_labels": tf.constant([1, 2, 3], tf.int64)}
    out = pipeline.pad_boxes(ex, 4)
    np.testing.assert_array_equal(out["box_labels"], [1, 3, -1, -1])  # zero-area box dropped
    np.testing.assert_allclose(out["boxes"][1], [0.3, 0.3, 0.4, 0.4])
    np.testing.assert_array_equal(out["boxes"][2:], 0.0)
    assert int(out["num_boxes"]) == 2
    out = pipeline.pad_boxes(ex, 1)
    np.testing.assert_array_equal(out["box_labels"], [1])
    assert int(out["num_boxes"]) == 1
    video = {k: tf.stack([v, v[::-1]]) for k, v in ex.items()}
    out = pipeline.pad_boxes(video, 3)
    np.testing.assert_array_equal(out["box_labels"], [[1, 3, -1], [3, 1, -1]])
    np.testing.assert_array_equal(out["num_boxes"], [2, 2])
    empty = pipeline.pad_boxes({"boxes": tf.zeros([0, 4]), "box_labels": tf.zeros([0], tf.int64)}, 2)
    np.testing.assert_array_equal(empty["box_labels"], [-1, -1])


def test_augmented_dense_batches_stay_aligned():
    cfg = config(batch_size=2, max_boxes=3,
                 augment=AugmentConfig(horizontal_flip=True, crop_padding=2, scale_jitter=(0.75, 1.5)))
    ds = pipeline.build_from_examples(dense_examples(), cfg, training=True, seed=3)
    for _ in range(2):
        for features, labels in batches(ds):
            for i in range(2):
                ex = {"image": features["image"][i], **{k: v[i] for k, v in labels.items()}}
                n = ex["num_boxes"]
                if n == 0 or not (ex["segmentation"] == SEG).any():
                    continue  # all objects cropped out (a sub-pixel sliver of a box may remain)
                # Union of the boxes vs the whole object area (the objects touch each other).
                ex["boxes"] = np.concatenate([ex["boxes"][:n, :2].min(0), ex["boxes"][:n, 2:].max(0)])[None]
                assert_aligned(ex, exact=False)


def run_epochs(ds, epochs=2):
    return [batches(ds) for _ in range(epochs)]


def assert_same(a, b):
    tf.nest.map_structure(np.testing.assert_array_equal, a, b)


def test_seeded_runs_are_identical_and_epochs_differ():
    cfg = config(batch_size=4, augment=AugmentConfig(crop_padding=2, horizontal_flip=True, color_jitter=0.3))
    run1 = run_epochs(pipeline.build_from_examples(classification_examples(16), cfg, training=True, seed=7))
    run2 = run_epochs(pipeline.build_from_examples(classification_examples(16), cfg, training=True, seed=7))
    assert_same(run1, run2)
    order = [np.concatenate([b[1]["label"] for b in epoch]) for epoch in run1]
    assert not np.array_equal(order[0], order[1])  # reshuffled
    # The same example is augmented differently in the two epochs.
    first = {int(lbl): img for b in run1[0] for lbl, img in zip(b[1]["label"], b[0]["image"])}
    second = {int(lbl): img for b in run1[1] for lbl, img in zip(b[1]["label"], b[0]["image"])}
    assert any(not np.array_equal(first[k], second[k]) for k in first)
    other = run_epochs(pipeline.build_from_examples(classification_examples(16), cfg, training=True, seed=8))
    assert not all(np.array_equal(a[0]["image"], b[0]["image"]) for a, b in zip(run1[0], other[0]))


def test_evaluation_is_deterministic_without_seed():
    cfg = config(batch_size=4, augment=AugmentConfig(crop_size=(6, 6), horizontal_flip=True))
    ds = pipeline.build_from_examples(classification_examples(), cfg, training=False)
    a, b = run_epochs(ds)
    assert_same(a, b)
    assert a[0][0]["image"].shape == (4, 6, 6, 3)


def test_sharding_covers_disjointly_with_per_replica_batches():
    cfg = config(batch_size=4)
    seen = []
    for pipeline_id in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline_id,
                                         num_replicas_in_sync=2)
        ds = pipeline.build_from_examples(classification_examples(12), cfg, training=True, seed=1,
                                          input_context=ctx)
        assert ds.element_spec[0]["image"].shape[0] == 2
        assert ds.options().experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.OFF
        seen.append(np.concatenate([b[1]["label"] for b in batches(ds)]))
    assert len(seen[0]) == len(seen[1]) == 6
    assert not set(seen[0]) & set(seen[1])
    assert set(seen[0]) | set(seen[1]) == set(range(12))
    with pytest.raises(DataError, match="batch size 5"):
        pipeline.build_from_examples(classification_examples(), config(batch_size=5), training=True,
                                     input_context=tf.distribute.InputContext(2, 0, 2))


def test_resize_and_channels():
    cfg = config(batch_size=2, image_size=(4, 6), channels=1)
    ds = pipeline.build_from_examples(dense_examples(), cfg, training=False)
    features, labels = batches(ds)[0]
    assert features["image"].shape == (2, 4, 6, 1)
    assert labels["segmentation"].shape == (2, 4, 6) and set(np.unique(labels["segmentation"])) <= {0, SEG}
    norms = np.linalg.norm(labels["normals"], axis=-1)
    assert np.all((np.abs(norms - 1) < 1e-5) | (norms == 0))
    cfg = config(batch_size=2, channels=3)
    ds = pipeline.build_from_examples(classification_examples(c=1), cfg, training=False)
    assert ds.element_spec[0]["image"].shape[1:] == (8, 8, 3)


def test_variable_size_images_need_a_size():
    ds = tf.data.Dataset.from_generator(
        lambda: iter([{"image": np.zeros((5, 7, 3), np.uint8), "label": np.int64(0)}]),
        output_signature={"image": tf.TensorSpec([None, None, 3], tf.uint8), "label": tf.TensorSpec([], tf.int64)})
    with pytest.raises(DataError, match="image_size"):
        pipeline.build_from_examples(ds, config(), training=False)
    out = batches(pipeline.build_from_examples(ds, config(image_size=(4, 4)), training=False))
    assert out[0][0]["image"].shape == (1, 4, 4, 3)


def test_unknown_per_pixel_key_is_refused_when_pixels_move():
    ds = classification_examples().map(lambda ex: {**ex, "heatmap": tf.zeros([8, 8])})
    with pytest.raises(DataError, match="heatmap"):
        pipeline.build_from_examples(ds, config(augment=AugmentConfig(horizontal_flip=True)), training=True)
    ds2 = pipeline.build_from_examples(ds, config(label_keys=["label"], augment=AugmentConfig(horizontal_flip=True)),
                                       training=True)
    assert set(ds2.element_spec[1]) == {"label"}


def test_video_batches_flip_all_frames_together():
    cfg = config(batch_size=2, max_boxes=4, augment=AugmentConfig(horizontal_flip=True))
    ds = pipeline.build_from_examples(dense_examples(video_frames=3), cfg, training=True, seed=0)
    flipped = set()
    for _ in range(3):
        for features, labels in batches(ds):
            assert features["image"].shape == (2, 3, 8, 8, 3)
            assert labels["boxes"].shape == (2, 3, 4, 4) and labels["num_boxes"].shape == (2, 3)
            for key, value in {**labels, "image": features["image"]}.items():
                for t in (1, 2):
                    np.testing.assert_array_equal(value[:, t], value[:, 0], err_msg=key)
            flipped.update(bool(x) for x in labels["normals"][:, 0, 0, :, 0].min(-1) < 0)
    assert flipped == {True, False}


def test_build_dataset_uses_load_source(monkeypatch):
    calls = []

    def load_source(cfg, split):
        calls.append(split)
        return classification_examples()

    monkeypatch.setitem(sys.modules, "garden.data.sources", types.SimpleNamespace(load_source=load_source))
    ds = pipeline.build_dataset(config(batch_size=5), "validation", training=False)
    assert calls == ["validation"] and len(batches(ds)) == 2
    ds = pipeline.build_dataset(config(batch_size=5), "train", batch_size=3, training=True, seed=0)
    assert ds.element_spec[0]["image"].shape[0] == 3


def test_toyworld_scenes_through_build_dataset():
    pytest.importorskip("garden.data.sources")
    cfg = config(batch_size=2, max_boxes=8, augment=AugmentConfig(horizontal_flip=True, scale_jitter=(0.7, 1.4)))
    cfg = cfg.model_copy(update={"name": "toyworld:scenes",
                                 "options": {"image_size": [32, 32], "num_train": 4, "num_validation": 0,
                                             "num_test": 0}})
    raw = pipeline.build_dataset(cfg, "train", training=False)
    aug = pipeline.build_dataset(cfg, "train", training=True, seed=0)
    for ds in (raw, aug):
        for features, labels in batches(ds):
            assert features["image"].shape == (2, 32, 32, 3) and features["image"].dtype == np.float32
            assert labels["segmentation"].shape == (2, 32, 32) and labels["boxes"].shape == (2, 8, 4)
            # The maps agree pixel by pixel: objects carry an instance id and the mask; the sky
            # (and padding) has no depth and no normal.
            np.testing.assert_array_equal(labels["mask"] == 1, labels["instance_map"] > 0)
            np.testing.assert_array_equal(labels["depth"] == 0, np.linalg.norm(labels["normals"], axis=-1) == 0)
            assert np.all(labels["num_boxes"] >= 1) or ds is aug
