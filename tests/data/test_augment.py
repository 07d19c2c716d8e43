"""Augmentations keep image, dense maps and boxes aligned (garden/data/augment.py)."""

import numpy as np
import pytest
import tensorflow as tf

from garden.data import augment
from garden.data.config import AugmentConfig

H, W = 12, 16
OBJ_ROWS, OBJ_COLS = (3, 6), (2, 5)  # object pixels: rows 3..5, cols 2..4 (half-open ranges)
SEG, INST, DEPTH, NORMAL = 5, 3, 2.5, (0.6, 0.0, 0.8)


def dense_example(h=H, w=W, rows=OBJ_ROWS, cols=OBJ_COLS):
    """One object marked in every key: bright in the image, class 5, instance 3, depth 2.5, a normal."""
    obj = np.zeros((h, w), bool)
    obj[rows[0]:rows[1], cols[0]:cols[1]] = True
    image = np.where(obj[..., None], 200, 20).astype(np.uint8).repeat(3, axis=-1)
    normals = np.zeros((h, w, 3), np.float32)
    normals[obj] = NORMAL
    return {
        "image": image,
        "mask": obj.astype(np.uint8),
        "segmentation": np.where(obj, SEG, 0).astype(np.int32),
        "instance_map": np.where(obj, INST, 0).astype(np.int32),
        "depth": np.where(obj, DEPTH, 0).astype(np.float32),
        "normals": normals,
        "boxes": np.array([[rows[0] / h, cols[0] / w, rows[1] / h, cols[1] / w]], np.float32),
        "box_labels": np.array([SEG], np.int64),
        "box_instances": np.array([INST], np.int64),
        "label": np.int64(1),
    }


def to_np(example):
    return {k: np.asarray(v) for k, v in example.items()}


def object_pixels(ex):
    return np.asarray(ex["segmentation"]) == SEG


def bbox_of(pixels):
    """Normalised (ymin, xmin, ymax, xmax) of a pixel set."""
    rows, cols = np.nonzero(pixels)
    h, w = pixels.shape
    return np.array([rows.min() / h, cols.min() / w, (rows.max() + 1) / h, (cols.max() + 1) / w])


def assert_aligned(ex, *, exact=True):
    """Every dense key marks the same pixels; the box frames them; the image agrees."""
    ex = to_np(ex)
    obj = object_pixels(ex)
    assert obj.any(), "object vanished"
    np.testing.assert_array_equal(ex["instance_map"] == INST, obj)
    np.testing.assert_array_equal(ex["mask"] == 1, obj)
    np.testing.assert_array_equal(ex["depth"] == DEPTH, obj)
    norms = np.linalg.norm(ex["normals"], axis=-1)
    np.testing.assert_array_equal(norms > 0.5, obj)
    np.testing.assert_allclose(norms[obj], 1.0, atol=1e-5)
    bright = ex["image"][..., 0] > 110
    h, w = obj.shape
    tol = 1e-6 if exact else 1.0 / min(h, w) + 1e-6
    np.testing.assert_allclose(ex["boxes"][0], bbox_of(obj), atol=tol)
    if exact:
        np.testing.assert_array_equal(bright, obj)
    else:  # bilinear image vs nearest maps may differ on the object's rim
        assert (bright & obj).sum() >= 0.5 * max(bright.sum(), obj.sum())


def test_flip_moves_everything_together_and_negates_normal_x():
    out = to_np(augment.flip_left_right(dense_example()))
    cols = (W - OBJ_COLS[1], W - OBJ_COLS[0])  # 11..13
    expected = np.zeros((H, W), bool)
    expected[OBJ_ROWS[0]:OBJ_ROWS[1], cols[0]:cols[1]] = True
    np.testing.assert_array_equal(out["segmentation"] == SEG, expected)
    np.testing.assert_array_equal(out["image"][..., 0] == 200, expected)
    np.testing.assert_array_equal(out["instance_map"] == INST, expected)
    np.testing.assert_array_equal(out["depth"] == DEPTH, expected)
    np.testing.assert_array_equal(out["mask"] == 1, expected)
    np.testing.assert_allclose(out["normals"][expected], [[-0.6, 0.0, 0.8]] * expected.sum())
    np.testing.assert_allclose(out["boxes"], [[3 / H, cols[0] / W, 6 / H, cols[1] / W]], atol=1e-6)
    assert out["label"] == 1
    assert_aligned(out)
    back = to_np(augment.flip_left_right(out))
    for key, value in to_np(dense_example()).items():
        np.testing.assert_allclose(back[key], value, atol=1e-6, err_msg=key)


def test_random_flip_on_video_uses_one_draw_for_all_frames():
    frames = [dense_example() for _ in range(4)]
    video = {k: np.stack([f[k] for f in frames]) for k in frames[0] if k != "label"}
    flipped = set()
    for s in range(12):
        out = to_np(augment.random_flip_left_right(video, tf.constant([s, 0])))
        assert out["image"].shape == (4, H, W, 3) and out["boxes"].shape == (4, 1, 4)
        for t in range(1, 4):
            for key in video:
                np.testing.assert_array_equal(out[key][t], out[key][0], err_msg=key)
        flipped.add(bool(out["normals"][0, OBJ_ROWS[0], :, 0].min() < 0))
    assert flipped == {True, False}


@pytest.mark.parametrize("seed", range(6))
def test_padded_crop_keeps_alignment(seed):
    out = augment.random_crop_with_padding(dense_example(), 4, tf.constant([seed, 1]))
    assert out["image"].shape == (H, W, 3)
    assert_aligned(out)


@pytest.mark.parametrize("seed", range(4))
def test_random_crop_keeps_alignment_and_size(seed):
    # rows 3..5, cols 2..4 always lie inside an 8x10 window of a 12x16 image at some offsets;
    # check alignment whenever the object is (partly) inside.
    out = to_np(augment.random_crop(dense_example(), (8, 10), tf.constant([seed, 2])))
    assert out["image"].shape == (8, 10, 3) and out["segmentation"].shape == (8, 10)
    if object_pixels(out).any():
        assert_aligned(out)


def test_center_crop_is_deterministic_and_centred():
    out = to_np(augment.center_crop(dense_example(), (8, 8)))
    # offset (2, 4): object rows 1..3, cols -2..0 -> col 0 only
    expected = np.zeros((8, 8), bool)
    expected[1:4, 0:1] = True
    np.testing.assert_array_equal(object_pixels(out), expected)
    assert_aligned(out)
    padded = to_np(augment.center_crop(dense_example(), (16, 20)))  # larger: pads 2 each side
    assert padded["image"].shape == (16, 20, 3)
    assert padded["image"][0, 0, 0] == 0 and padded["segmentation"][0, 0] == 0
    assert_aligned(padded)


@pytest.mark.parametrize("seed", range(6))
def test_scale_jitter_keeps_alignment(seed):
    out = augment.random_scale_jitter(dense_example(), (0.6, 1.8), tf.constant([seed, 3]))
    assert out["image"].shape == (H, W, 3) and out["depth"].shape == (H, W)
    if object_pixels(to_np(out)).any():
        assert_aligned(out, exact=False)


def test_scale_jitter_by_two_doubles_objects():
    out = to_np(augment.random_scale_jitter(dense_example(), (2.0, 2.0), tf.constant([0, 0])))
    assert_aligned(out, exact=False)
    assert 0 < object_pixels(out).sum() <= 4 * 9  # each pixel became (at most) 2x2


def test_boxes_leaving_the_picture_get_zero_area():
    frames, _ = augment._to_frames(dense_example(), batched=False)
    out = augment._window(frames, 0, 8, H, W)  # shift left by 8: object (cols 2..4) leaves
    box = out["boxes"].numpy()[0, 0]
    assert box[3] - box[1] == 0.0


def test_resize_keeps_labels_and_unit_normals():
    out = to_np(augment.resize(dense_example(), (7, 9)))
    assert out["image"].dtype == np.uint8 and out["image"].shape == (7, 9, 3)
    assert out["segmentation"].dtype == np.int32 and set(np.unique(out["segmentation"])) <= {0, SEG}
    norms = np.linalg.norm(out["normals"], axis=-1)
    assert np.all((np.abs(norms - 1) < 1e-5) | (norms == 0))
    np.testing.assert_array_equal(norms > 0, object_pixels(out))


def test_color_jitter_touches_only_the_image():
    ex = dense_example()
    out = to_np(augment.color_jitter(ex, 1.0, tf.constant([1, 2])))
    assert out["image"].dtype == np.float32
    assert 0 <= out["image"].min() and out["image"].max() <= 255
    assert not np.allclose(out["image"], ex["image"])
    for key in ("segmentation", "depth", "normals", "boxes"):
        np.testing.assert_array_equal(out[key], ex[key])


def test_color_jitter_is_brightness_then_contrast_then_saturation():
    rng = np.random.default_rng(0)
    image = rng.uniform(100, 150, (6, 5, 3)).astype(np.float32)
    seed = tf.constant([7, 8])
    out = augment.color_jitter({"image": image}, 0.2, seed)["image"].numpy()
    b, c, s = tf.random.stateless_uniform([1, 3], seed, 1 - 0.16, 1 + 0.16).numpy()[0]
    x = image * b
    m = x.mean(axis=(0, 1))
    x = (x - m) * c + m
    grey = (x * np.array([0.299, 0.587, 0.114])).sum(-1, keepdims=True)
    np.testing.assert_allclose(out, (x - grey) * s + grey, rtol=1e-4, atol=1e-3)


def test_same_seed_same_result_other_seed_differs():
    cfg = AugmentConfig(crop_padding=3, horizontal_flip=True, scale_jitter=(0.8, 1.25), color_jitter=0.4)
    ex = dense_example()
    a = to_np(augment.augment_example(ex, cfg, training=True, seed=tf.constant([5, 0])))
    b = to_np(augment.augment_example(ex, cfg, training=True, seed=tf.constant([5, 0])))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    others = [to_np(augment.augment_example(ex, cfg, training=True, seed=tf.constant([s, 0])))
              for s in range(6, 10)]
    assert any(not np.array_equal(o["image"], a["image"]) for o in others)


def test_eval_applies_only_center_crop():
    cfg = AugmentConfig(crop_size=(8, 8), horizontal_flip=True, color_jitter=0.5, crop_padding=2)
    ex = dense_example()
    out = to_np(augment.augment_example(ex, cfg, training=False))
    want = to_np(augment.center_crop(ex, (8, 8)))
    assert out["image"].dtype == np.float32
    for key in want:
        np.testing.assert_array_equal(out[key], want[key], err_msg=key)


def test_augment_example_in_graph_mode():
    cfg = AugmentConfig(crop_padding=2, crop_size=(10, 12), horizontal_flip=True, scale_jitter=(0.5, 1.5))
    ds = tf.data.Dataset.from_tensors(dense_example()).repeat(5).enumerate()
    ds = ds.map(lambda i, ex: augment.augment_example(ex, cfg, training=True, seed=tf.stack([i, i])))
    for out in ds:
        assert out["image"].shape == (10, 12, 3) and out["normals"].shape == (10, 12, 3)
        if object_pixels(to_np(out)).any():
            assert_aligned(out, exact=False)


def test_augment_batch_draws_per_example_and_keeps_alignment():
    cfg = AugmentConfig(crop_padding=3, horizontal_flip=True, scale_jitter=(0.8, 1.25))
    one = dense_example()
    batch = {k: np.stack([v] * 8) for k, v in one.items()}
    out = to_np(augment.augment_batch(batch, cfg, training=True, seed=tf.constant([3, 4])))
    assert out["image"].shape == (8, H, W, 3) and out["boxes"].shape == (8, 1, 4)
    assert len({out["segmentation"][i].tobytes() for i in range(8)}) > 1  # different draws
    flipped = {bool(out["normals"][i][..., 0].min() < 0) for i in range(8)}
    assert flipped == {True, False}
    for i in range(8):
        ex = {k: v[i] for k, v in out.items()}
        if object_pixels(ex).any():
            assert_aligned(ex, exact=False)


def test_force_channels():
    ex = {"image": np.full((4, 4, 1), 7, np.uint8)}
    rgb = augment.force_channels(ex, 3)["image"]
    assert rgb.shape == (4, 4, 3) and rgb.dtype == tf.uint8
    grey = augment.force_channels({"image": rgb}, 1)["image"]
    assert grey.shape == (4, 4, 1) and int(grey[0, 0, 0]) == 7


def test_normalize_scalar_per_channel_and_symbolic():
    x = tf.constant([[[[0.0, 127.5, 255.0]]]])
    np.testing.assert_allclose(augment.normalize(x), [[[[-1.0, 0.0, 1.0]]]])
    y = augment.normalize(tf.fill([1, 1, 1, 3], 123.675), augment.IMAGENET_MEAN, augment.IMAGENET_STD)
    assert abs(float(y[0, 0, 0, 0])) < 1e-5
    import keras
    inp = keras.Input((4, 4, 3))
    model = keras.Model(inp, augment.normalize(inp, 0.0, 255.0))
    np.testing.assert_allclose(model(tf.fill([1, 4, 4, 3], 255.0)), 1.0)


def test_config_validation():
    from pydantic import ValidationError

    from garden.data.config import DataConfig

    with pytest.raises(ValidationError, match="0 < low <= high"):
        AugmentConfig(scale_jitter=(1.5, 0.5))
    with pytest.raises(ValidationError, match=">= 1"):
        AugmentConfig(crop_size=(0, 4))
    with pytest.raises(ValidationError, match="1 or 3"):
        DataConfig(name="x", channels=2)
    with pytest.raises(ValidationError, match=">= 1"):
        DataConfig(name="x", image_size=(8, 0))
