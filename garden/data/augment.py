"""TF-op augmentations that keep dense labels aligned with the image.

Every function here takes and returns an *example dict* with the keys of
`docs/design/contracts.md` (an image, or a video clip with a leading `T` axis, plus any of
`mask`, `segmentation`, `instance_map`, `depth`, `normals`, `boxes`, ...). Geometric operations
move all spatial keys together:

| key | resampling | filled with (where padding comes in) | on a flip |
|---|---|---|---|
| `image` | bilinear | 0 (black) | mirrored |
| `mask`, `segmentation`, `instance_map`, `depth` | nearest neighbour | 0 ("nothing hit": sky, stuff, no depth) | mirrored |
| `normals` | bilinear, renormalised to unit length (zero stays zero) | 0 | mirrored, x component negated |
| `boxes` (normalised `ymin, xmin, ymax, xmax`) | exact (scaled, shifted, clipped to [0, 1]) | – | `(xmin, xmax) -> (1 - xmax, 1 - xmin)` |

Boxes that leave the picture are clipped to zero area; `garden.data.pipeline` drops them when
it pads boxes to `max_boxes`. Other keys (scalar labels, per-frame labels) pass through.

Randomness is stateless: random functions take a `seed` of shape `[2]` (as `tf.random.stateless_*`)
and draw every parameter once per example, so all frames of a video get the same crop, flip,
scale and colour change. Everything is graph-friendly (no Python loops over tensors, no numpy).

`normalize` is the one place that maps `[0, 255]` pixels to model inputs; models call it inside
their graph (the pipeline hands out un-normalised float32 images).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow as tf

from garden.data.config import AugmentConfig

# Per-pixel label maps (one value per pixel) resampled by nearest neighbour.
NEAREST_KEYS = ("mask", "segmentation", "instance_map", "depth")
NORMALS_KEY = "normals"
BOX_KEY = "boxes"
SPATIAL_KEYS = ("image", *NEAREST_KEYS, NORMALS_KEY)
# Keys that go with the boxes (per-box values, not spatial).
BOX_KEYS = ("boxes", "box_labels", "box_instances")

# ImageNet statistics in [0, 255] pixel units, for `normalize`.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)

# Colour jitter ranges at strength 1 (SimCLR's: factors in [1 - 0.8 s, 1 + 0.8 s]).
_JITTER_SCALE = 0.8

Example = dict[str, Any]


# --------------------------------------------------------------------------------------------
# Normalisation (used by models, inside the exported graph)
# --------------------------------------------------------------------------------------------

def normalize(image, mean: float | Sequence[float] = 127.5, std: float | Sequence[float] = 127.5):
    """`(image - mean) / std` in float32; `mean`/`std` are in the image's [0, 255] units.

    Scalars or one value per channel. Written with `keras.ops`, so it works on tensors and on
    symbolic Keras inputs alike. The default maps [0, 255] to [-1, 1];
    `normalize(x, IMAGENET_MEAN, IMAGENET_STD)` gives the usual ImageNet standardisation.
    """
    from keras import ops

    x = ops.cast(image, "float32")
    mean = ops.convert_to_tensor(mean, dtype="float32")
    std = ops.convert_to_tensor(std, dtype="float32")
    return (x - mean) / std


# --------------------------------------------------------------------------------------------
# The canonical ("frames") form: every spatial key as [T, H, W, C], boxes as [T, N, 4]
# --------------------------------------------------------------------------------------------

def is_video(example: Mapping[str, Any]) -> bool:
    """True when the image has a leading time axis (`[T, H, W, C]`)."""
    return len(example["image"].shape) == 4


def _to_frames(example: Mapping[str, Any]) -> tuple[Example, bool]:
    out = dict(example)
    out["image"] = tf.convert_to_tensor(out["image"])
    video = is_video(out)
    for key in SPATIAL_KEYS + (BOX_KEY,):
        if key not in out:
            continue
        t = tf.convert_to_tensor(out[key])
        if key in NEAREST_KEYS:
            t = t[..., tf.newaxis]
        if not video:
            t = t[tf.newaxis]
        out[key] = t
    return out, video


def _from_frames(frames: Mapping[str, Any], video: bool) -> Example:
    out = dict(frames)
    for key in SPATIAL_KEYS + (BOX_KEY,):
        if key not in out:
            continue
        t = out[key]
        if not video:
            t = t[0]
        if key in NEAREST_KEYS:
            t = t[..., 0]
        out[key] = t
    return out


def _spatial_size(frames: Mapping[str, Any]) -> tuple[tf.Tensor, tf.Tensor]:
    shape = tf.shape(frames["image"])
    return shape[1], shape[2]


def _static(value) -> int | None:
    v = tf.get_static_value(value)
    return None if v is None else int(v)


def _cast_like(image: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """Back to an integer image dtype (rounded, saturated) after float resampling."""
    if image.dtype == dtype:
        return image
    if dtype.is_integer:
        return tf.saturate_cast(tf.round(image), dtype)
    return tf.cast(image, dtype)


# --------------------------------------------------------------------------------------------
# Deterministic geometric primitives (frames form)
# --------------------------------------------------------------------------------------------

def _window(frames: Example, offset_y, offset_x, out_h, out_w) -> Example:
    """The `out_h x out_w` window whose top-left corner is `(offset_y, offset_x)` in the input.

    Offsets may be negative and the window may reach past the input: the outside is padded
    (with 0). Crops, pads, centre crops and CIFAR-style padded crops are all windows.
    """
    h, w = _spatial_size(frames)
    offset_y = tf.cast(offset_y, tf.int32)
    offset_x = tf.cast(offset_x, tf.int32)
    out_h_t = tf.cast(out_h, tf.int32)
    out_w_t = tf.cast(out_w, tf.int32)
    pad_top = tf.maximum(-offset_y, 0)
    pad_left = tf.maximum(-offset_x, 0)
    pad_bottom = tf.maximum(offset_y + out_h_t - h, 0)
    pad_right = tf.maximum(offset_x + out_w_t - w, 0)
    paddings = [[0, 0], [pad_top, pad_bottom], [pad_left, pad_right], [0, 0]]
    begin = [0, offset_y + pad_top, offset_x + pad_left, 0]
    size = [-1, out_h_t, out_w_t, -1]
    static_h, static_w = _static(out_h), _static(out_w)

    out = dict(frames)
    for key in SPATIAL_KEYS:
        if key not in out:
            continue
        t = tf.slice(tf.pad(out[key], paddings), begin, size)
        t.set_shape([out[key].shape[0], static_h, static_w, out[key].shape[-1]])
        out[key] = t
    if BOX_KEY in out:
        boxes = tf.cast(out[BOX_KEY], tf.float32)
        hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
        scale = tf.stack([hf, wf, hf, wf]) / tf.cast(tf.stack([out_h_t, out_w_t, out_h_t, out_w_t]), tf.float32)
        shift = tf.cast(tf.stack([offset_y, offset_x, offset_y, offset_x]), tf.float32) / tf.cast(
            tf.stack([out_h_t, out_w_t, out_h_t, out_w_t]), tf.float32)
        out[BOX_KEY] = tf.clip_by_value(boxes * scale - shift, 0.0, 1.0)
    return out


def _resize_frames(frames: Example, size) -> Example:
    """Resize every spatial key to `size = (height, width)` (ints or an int tensor)."""
    size = tf.cast(tf.convert_to_tensor(size), tf.int32)
    static = tf.get_static_value(size)
    out = dict(frames)
    for key in SPATIAL_KEYS:
        if key not in out:
            continue
        t = out[key]
        if key == "image":
            r = _cast_like(tf.image.resize(t, size, method="bilinear"), t.dtype)
        elif key == NORMALS_KEY:
            valid = tf.cast(tf.reduce_any(tf.not_equal(t, 0), axis=-1, keepdims=True), tf.uint8)
            valid = tf.image.resize(valid, size, method="nearest")
            r = tf.math.l2_normalize(tf.image.resize(tf.cast(t, tf.float32), size, method="bilinear"), axis=-1)
            r = tf.cast(r * tf.cast(valid, tf.float32), t.dtype)
        else:
            r = tf.image.resize(t, size, method="nearest")
        if static is not None:
            r.set_shape([t.shape[0], int(static[0]), int(static[1]), t.shape[-1]])
        out[key] = r
    return out  # normalised boxes are unchanged by a resize


def _flip_frames(frames: Example) -> Example:
    out = dict(frames)
    for key in SPATIAL_KEYS:
        if key not in out:
            continue
        t = tf.reverse(out[key], axis=[2])
        if key == NORMALS_KEY:
            t = t * tf.constant([-1, 1, 1], dtype=t.dtype)
        out[key] = t
    if BOX_KEY in out:
        ymin, xmin, ymax, xmax = tf.unstack(tf.cast(out[BOX_KEY], tf.float32), axis=-1)
        out[BOX_KEY] = tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=-1)
    return out


# --------------------------------------------------------------------------------------------
# Random primitives (frames form); `seed` is a shape-[2] stateless seed
# --------------------------------------------------------------------------------------------

def _fold(seed, k: int):
    return tf.random.experimental.stateless_fold_in(seed, k)


def _uniform_int(seed, low, high):
    """An int32 uniformly in [low, high] (both inclusive)."""
    low = tf.cast(low, tf.int32)
    high = tf.cast(high, tf.int32)
    return tf.random.stateless_uniform([], seed, minval=low, maxval=high + 1, dtype=tf.int32)


def _random_window_offset(seed, in_size, out_size):
    """A random offset for a window of `out_size` in `in_size` (negative: pad instead)."""
    d = tf.cast(in_size, tf.int32) - tf.cast(out_size, tf.int32)
    return _uniform_int(seed, tf.minimum(d, 0), tf.maximum(d, 0))


def _random_crop_frames(frames: Example, size: Sequence[int], seed) -> Example:
    h, w = _spatial_size(frames)
    oy = _random_window_offset(_fold(seed, 0), h, size[0])
    ox = _random_window_offset(_fold(seed, 1), w, size[1])
    return _window(frames, oy, ox, size[0], size[1])


def _center_crop_frames(frames: Example, size: Sequence[int]) -> Example:
    h, w = _spatial_size(frames)
    return _window(frames, (h - size[0]) // 2, (w - size[1]) // 2, size[0], size[1])


def _padded_crop_frames(frames: Example, padding: int, seed) -> Example:
    h, w = _spatial_size(frames)
    oy = _uniform_int(_fold(seed, 0), -padding, padding)
    ox = _uniform_int(_fold(seed, 1), -padding, padding)
    return _window(frames, oy, ox, _static(h) or h, _static(w) or w)


def _scale_jitter_frames(frames: Example, scale_range: Sequence[float], seed) -> Example:
    h, w = _spatial_size(frames)
    static_h, static_w = _static(h), _static(w)
    low, high = float(scale_range[0]), float(scale_range[1])
    factor = tf.random.stateless_uniform([], _fold(seed, 0), minval=low, maxval=high)
    new_h = tf.maximum(tf.cast(tf.round(tf.cast(h, tf.float32) * factor), tf.int32), 1)
    new_w = tf.maximum(tf.cast(tf.round(tf.cast(w, tf.float32) * factor), tf.int32), 1)
    frames = _resize_frames(frames, tf.stack([new_h, new_w]))
    oy = _random_window_offset(_fold(seed, 1), new_h, h)
    ox = _random_window_offset(_fold(seed, 2), new_w, w)
    return _window(frames, oy, ox, static_h or h, static_w or w)


def _random_flip_frames(frames: Example, seed) -> Example:
    do_flip = tf.random.stateless_uniform([], seed) < 0.5
    return tf.cond(do_flip, lambda: _flip_frames(frames), lambda: dict(frames))


def _color_jitter_image(image: tf.Tensor, strength: float, seed) -> tf.Tensor:
    """Brightness, contrast and saturation factors in [1 - 0.8 s, 1 + 0.8 s], one draw each.

    `image` is float in [0, 255] (`[..., H, W, C]`); the result is clipped to [0, 255].
    Saturation is skipped for one-channel images.
    """
    s = _JITTER_SCALE * float(strength)
    low, high = max(0.0, 1.0 - s), 1.0 + s
    x = tf.cast(image, tf.float32) / 255.0
    brightness = tf.random.stateless_uniform([], _fold(seed, 0), low, high)
    x = tf.clip_by_value(x * brightness, 0.0, 1.0)
    contrast = tf.random.stateless_uniform([], _fold(seed, 1), low, high)
    x = tf.clip_by_value(tf.image.adjust_contrast(x, contrast), 0.0, 1.0)
    if x.shape[-1] == 3:
        saturation = tf.random.stateless_uniform([], _fold(seed, 2), low, high)
        x = tf.clip_by_value(tf.image.adjust_saturation(x, saturation), 0.0, 1.0)
    return x * 255.0


# --------------------------------------------------------------------------------------------
# Public example-dict operations
# --------------------------------------------------------------------------------------------

def _on_frames(fn, example: Mapping[str, Any], *args) -> Example:
    frames, video = _to_frames(example)
    return _from_frames(fn(frames, *args), video)


def resize(example: Mapping[str, Any], size: Sequence[int]) -> Example:
    """Resize image (bilinear) and dense maps (nearest; normals renormalised) to `size`.

    The image keeps its dtype (integer images are rounded back). A no-op when the (static)
    size already matches.
    """
    shape = tuple(example["image"].shape[-3:-1])
    if shape == tuple(int(s) for s in size):
        return dict(example)
    return _on_frames(_resize_frames, example, size)


def flip_left_right(example: Mapping[str, Any]) -> Example:
    """Mirror image, dense maps and boxes; negate the x component of normals."""
    return _on_frames(_flip_frames, example)


def random_flip_left_right(example: Mapping[str, Any], seed) -> Example:
    """`flip_left_right` with probability 1/2 (one draw for the whole clip)."""
    return _on_frames(_random_flip_frames, example, seed)


def center_crop(example: Mapping[str, Any], size: Sequence[int]) -> Example:
    """The centred `size` window (padded with 0 where the input is smaller)."""
    return _on_frames(_center_crop_frames, example, size)


def random_crop(example: Mapping[str, Any], size: Sequence[int], seed) -> Example:
    """A random `size` window (padded with 0 at a random place where the input is smaller)."""
    return _on_frames(_random_crop_frames, example, size, seed)


def random_crop_with_padding(example: Mapping[str, Any], padding: int, seed) -> Example:
    """CIFAR style: pad by `padding` pixels on every side, then randomly crop back to size."""
    return _on_frames(_padded_crop_frames, example, padding, seed)


def random_scale_jitter(example: Mapping[str, Any], scale_range: Sequence[float], seed) -> Example:
    """Resize by a random factor in `scale_range`, then random-crop (or pad) back to size."""
    return _on_frames(_scale_jitter_frames, example, scale_range, seed)


def color_jitter(example: Mapping[str, Any], strength: float, seed) -> Example:
    """Brightness/contrast/saturation jitter on the image only (float32 in [0, 255] out)."""
    out = dict(example)
    out["image"] = _color_jitter_image(example["image"], strength, seed)
    return out


def force_channels(example: Mapping[str, Any], channels: int | None) -> Example:
    """Grey to RGB by repetition, RGB to grey by luminance; keeps the image dtype."""
    image = tf.convert_to_tensor(example["image"])
    have = image.shape[-1]
    if channels is None or have == channels:
        return dict(example)
    if channels == 3 and have == 1:
        image = tf.image.grayscale_to_rgb(image)
    elif channels == 1 and have == 3:
        image = tf.image.rgb_to_grayscale(image)
    else:
        raise ValueError(f"cannot convert {have}-channel images to {channels} channels")
    out = dict(example)
    out["image"] = image
    return out


# --------------------------------------------------------------------------------------------
# The configured sequence
# --------------------------------------------------------------------------------------------

def has_random_ops(config: AugmentConfig) -> bool:
    """Whether training augmentation draws random numbers (and so needs a seed)."""
    return bool(config.crop_padding or config.crop_size or config.horizontal_flip
                or config.scale_jitter or config.color_jitter)


def has_geometric_ops(config: AugmentConfig) -> bool:
    """Whether the configured augmentation moves pixels (so dense keys must follow)."""
    return bool(config.crop_padding or config.crop_size or config.horizontal_flip or config.scale_jitter)


def augment_example(example: Mapping[str, Any], config: AugmentConfig, *, training: bool,
                    seed=None) -> Example:
    """Apply `config` to one example; returns it with a float32 image in [0, 255].

    Training, in this order: scale jitter, padded random crop (`crop_padding`), random crop to
    `crop_size`, horizontal flip, colour jitter. Evaluation: only the centre crop to
    `crop_size`. `seed` (shape `[2]`) drives every random draw; when None one is drawn from the
    stateful global generator.
    """
    frames, video = _to_frames(example)
    frames["image"] = tf.cast(frames["image"], tf.float32)
    if training and has_random_ops(config):
        if seed is None:
            seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
        if config.scale_jitter:
            frames = _scale_jitter_frames(frames, config.scale_jitter, _fold(seed, 1))
        if config.crop_padding:
            frames = _padded_crop_frames(frames, config.crop_padding, _fold(seed, 2))
        if config.crop_size:
            frames = _random_crop_frames(frames, config.crop_size, _fold(seed, 3))
        if config.horizontal_flip:
            frames = _random_flip_frames(frames, _fold(seed, 4))
        if config.color_jitter:
            frames["image"] = _color_jitter_image(frames["image"], config.color_jitter, _fold(seed, 5))
    elif config.crop_size:
        frames = _center_crop_frames(frames, config.crop_size)
    return _from_frames(frames, video)
