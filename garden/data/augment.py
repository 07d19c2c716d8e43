"""TF-op augmentations that keep dense labels aligned with the image.

Functions take and return *example dicts* with the keys of `docs/design/contracts.md` (an
image, or a video clip with a leading `T` axis, plus any of `mask`, `segmentation`,
`instance_map`, `depth`, `normals`, `boxes`, ...); `augment_batch` takes a batch of them
(leading `B` axis, boxes padded to a common count), which is what the pipeline uses. Geometric
operations move all spatial keys together:

| key | resampling | filled with (where padding comes in) | on a flip |
|---|---|---|---|
| `image` | bilinear | 0 (black) | mirrored |
| `mask`, `segmentation`, `instance_map`, `depth` | nearest neighbour | 0 ("nothing hit": sky, stuff, no depth) | mirrored |
| `normals` | nearest neighbour (`resize`: bilinear, renormalised; zero stays zero) | 0 | mirrored, x component negated |
| `boxes` (normalised `ymin, xmin, ymax, xmax`) | exact (scaled, shifted, clipped to [0, 1]) | – | `(xmin, xmax) -> (1 - xmax, 1 - xmin)` |

Boxes that leave the picture are clipped to zero area; `garden.data.pipeline.pad_boxes` drops
them. Other keys (scalar labels, per-frame labels) pass through. Depth values are not rescaled
by scale jitter.

How the random geometry runs: every random geometric step (scale jitter, padded crop, random
crop, flip) is an affine map of pixel coordinates per axis; the steps are composed per example
and the result is sampled once with `tf.image.crop_and_resize` (one call per key for the whole
batch), so adding steps costs no extra passes over the pixels and the image is interpolated
only once.

Randomness is stateless: random functions take a `seed` of shape `[2]` (as `tf.random.stateless_*`)
and draw each parameter once per example, so all frames of a video get the same crop, flip,
scale and colour change. Everything is graph-friendly (no Python loops over tensors, no numpy).

`normalize` is the one place that maps `[0, 255]` pixels to model inputs; models call it inside
their graph (the pipeline hands out un-normalised float32 images).
"""

from __future__ import annotations

import dataclasses
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
_LUMA = (0.299, 0.587, 0.114)

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
# The canonical ("frames") form: spatial keys as [B*T, H, W, C], boxes as [B*T, N, 4]
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Layout:
    batched: bool
    video: bool
    batch: Any  # B: int or scalar tensor (1 when not batched)
    time: Any  # T: int or scalar tensor (1 when not a video)


def _dim(t: tf.Tensor, axis: int):
    """A dimension as a Python int when static, else a scalar tensor."""
    d = t.shape[axis]
    return int(d) if d is not None else tf.shape(t)[axis]


def _static(value) -> int | None:
    v = tf.get_static_value(value)
    return None if v is None else int(v)


def _to_frames(example: Mapping[str, Any], batched: bool) -> tuple[Example, _Layout]:
    out = dict(example)
    image = tf.convert_to_tensor(out["image"])
    lead = 1 if batched else 0
    if image.shape.rank not in (3 + lead, 4 + lead):
        what = "[B, H, W, C] or [B, T, H, W, C]" if batched else "[H, W, C] or [T, H, W, C]"
        raise ValueError(f"'image' must be {what}, got shape {image.shape}")
    video = image.shape.rank == 4 + lead
    layout = _Layout(batched, video, _dim(image, 0) if batched else 1, _dim(image, lead) if video else 1)
    out["image"] = image
    for key in SPATIAL_KEYS + (BOX_KEY,):
        if key not in out:
            continue
        t = tf.convert_to_tensor(out[key])
        if key in NEAREST_KEYS:
            t = t[..., tf.newaxis]
        inner = 2 if key == BOX_KEY else 3
        out[key] = tf.reshape(t, [-1] + [_dim(t, a) for a in range(-inner, 0)])
    return out, layout


def _from_frames(frames: Mapping[str, Any], layout: _Layout) -> Example:
    out = dict(frames)
    lead = ([layout.batch] if layout.batched else []) + ([layout.time] if layout.video else [])
    for key in SPATIAL_KEYS + (BOX_KEY,):
        if key not in out:
            continue
        t = out[key]
        t = tf.reshape(t, lead + [_dim(t, a) for a in range(1, t.shape.rank)])
        if key in NEAREST_KEYS:
            t = t[..., 0]
        out[key] = t
    return out


def _per_frame(values: tf.Tensor, layout: _Layout) -> tf.Tensor:
    """Per-example values `[B, ...]` repeated for the frames of each clip: `[B*T, ...]`."""
    return tf.repeat(values, layout.time, axis=0) if layout.video else values


def _cast_like(image: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """Back to an integer image dtype (rounded, saturated) after float resampling."""
    if image.dtype == dtype:
        return image
    if dtype.is_integer:
        return tf.saturate_cast(tf.round(image), dtype)
    return tf.cast(image, dtype)


# --------------------------------------------------------------------------------------------
# Exact deterministic operations on frames (shared integer window, reverse, resize)
# --------------------------------------------------------------------------------------------

def _window(frames: Example, offset_y, offset_x, out_h, out_w) -> Example:
    """The `out_h x out_w` window whose top-left corner is `(offset_y, offset_x)` in the input,
    the same for all frames. Offsets may be negative and the window may reach past the input:
    the outside is padded with 0 (a centre crop of a smaller picture pads)."""
    h, w = _dim(frames["image"], 1), _dim(frames["image"], 2)
    offset_y, offset_x = tf.cast(offset_y, tf.int32), tf.cast(offset_x, tf.int32)
    out_h_t, out_w_t = tf.cast(out_h, tf.int32), tf.cast(out_w, tf.int32)
    pad_top, pad_left = tf.maximum(-offset_y, 0), tf.maximum(-offset_x, 0)
    pad_bottom = tf.maximum(offset_y + out_h_t - h, 0)
    pad_right = tf.maximum(offset_x + out_w_t - w, 0)
    paddings = [[0, 0], [pad_top, pad_bottom], [pad_left, pad_right], [0, 0]]
    begin = [0, offset_y + pad_top, offset_x + pad_left, 0]
    size = [-1, out_h_t, out_w_t, -1]
    out = dict(frames)
    for key in SPATIAL_KEYS:
        if key in out:
            t = tf.slice(tf.pad(out[key], paddings), begin, size)
            t.set_shape([out[key].shape[0], _static(out_h), _static(out_w), out[key].shape[-1]])
            out[key] = t
    if BOX_KEY in out:
        hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
        oh, ow = tf.cast(out_h_t, tf.float32), tf.cast(out_w_t, tf.float32)
        scale = tf.stack([hf / oh, wf / ow, hf / oh, wf / ow])
        shift = tf.stack([tf.cast(offset_y, tf.float32) / oh, tf.cast(offset_x, tf.float32) / ow] * 2)
        out[BOX_KEY] = tf.clip_by_value(tf.cast(out[BOX_KEY], tf.float32) * scale - shift, 0.0, 1.0)
    return out


def _center_crop_frames(frames: Example, size: Sequence[int]) -> Example:
    h, w = _dim(frames["image"], 1), _dim(frames["image"], 2)
    return _window(frames, (h - size[0]) // 2, (w - size[1]) // 2, size[0], size[1])


def _flip_frames(frames: Example) -> Example:
    out = dict(frames)
    for key in SPATIAL_KEYS:
        if key in out:
            t = tf.reverse(out[key], axis=[2])
            if key == NORMALS_KEY:
                t = t * tf.constant([-1, 1, 1], dtype=t.dtype)
            out[key] = t
    if BOX_KEY in out:
        ymin, xmin, ymax, xmax = tf.unstack(tf.cast(out[BOX_KEY], tf.float32), axis=-1)
        out[BOX_KEY] = tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=-1)
    return out


def _resize_frames(frames: Example, size) -> Example:
    """Resize every spatial key to `size = (height, width)`; normalised boxes are unchanged."""
    size = [int(s) for s in size]
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
        out[key] = r
    return out


# --------------------------------------------------------------------------------------------
# Random geometry: per-example affine grids, composed, then sampled once
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Grid:
    """Output pixel (j, i) samples input position (a_y + s_y j, a_x + s_x i), per example.

    Positions are in pixel-index units of the original input (pixel centres at integers);
    `a_*`, `s_*` are float32 `[B]`; `h, w` the current output size (int or scalar tensor).
    """

    a_y: tf.Tensor
    s_y: tf.Tensor
    a_x: tf.Tensor
    s_x: tf.Tensor
    h: Any
    w: Any
    may_flip: bool = False

    @classmethod
    def identity(cls, batch, h, w) -> "_Grid":
        zeros, ones = tf.zeros([batch]), tf.ones([batch])
        return cls(zeros, ones, zeros, ones, h, w)

    def then_scale(self, factor, oy, ox) -> "_Grid":
        """Zoom by `factor` (per example) and take the same-size window at scaled offset (oy, ox):
        output j shows the current picture at (j + o + 0.5) / factor - 0.5."""
        ay = (oy + 0.5) / factor - 0.5
        ax = (ox + 0.5) / factor - 0.5
        return _Grid(self.a_y + self.s_y * ay, self.s_y / factor, self.a_x + self.s_x * ax,
                     self.s_x / factor, self.h, self.w, self.may_flip)

    def then_shift(self, oy, ox, h, w) -> "_Grid":
        """The `h x w` window at offset (oy, ox) of the current picture."""
        oy, ox = tf.cast(oy, tf.float32), tf.cast(ox, tf.float32)
        return _Grid(self.a_y + self.s_y * oy, self.s_y, self.a_x + self.s_x * ox, self.s_x, h, w, self.may_flip)

    def then_flip(self, flip) -> "_Grid":
        """Mirror left-right where `flip` (bool `[B]`)."""
        last = tf.cast(self.w, tf.float32) - 1.0
        return _Grid(self.a_y, self.s_y, tf.where(flip, self.a_x + self.s_x * last, self.a_x),
                     tf.where(flip, -self.s_x, self.s_x), self.h, self.w, True)


def _sample(frames: Example, grid: _Grid, layout: _Layout) -> Example:
    """Resample every key of `frames` on `grid` (see `_Grid`); outside the input gives 0."""
    image = frames["image"]
    in_h, in_w = _dim(image, 1), _dim(image, 2)
    out_h, out_w = grid.h, grid.w
    a_y, s_y, a_x, s_x = (_per_frame(v, layout) for v in (grid.a_y, grid.s_y, grid.a_x, grid.s_x))
    last_y = tf.cast(out_h, tf.float32) - 1.0
    last_x = tf.cast(out_w, tf.float32) - 1.0
    norm_y = tf.cast(tf.maximum(in_h - 1, 1), tf.float32)
    norm_x = tf.cast(tf.maximum(in_w - 1, 1), tf.float32)
    # crop_and_resize samples y1 (H-1) + j (y2 - y1) (H-1) / (h-1): our grid, as a box.
    boxes = tf.stack([a_y / norm_y, a_x / norm_x, (a_y + s_y * last_y) / norm_y,
                      (a_x + s_x * last_x) / norm_x], axis=-1)
    index = tf.range(tf.shape(image)[0])
    size = tf.stack([tf.cast(out_h, tf.int32), tf.cast(out_w, tf.int32)])
    static_h, static_w = _static(out_h), _static(out_w)

    def sample(t, method):
        # One call per key: concatenating channels first costs more (a strided copy) than it saves.
        r = tf.image.crop_and_resize(t, boxes, index, size, method=method, extrapolation_value=0.0)
        r.set_shape([t.shape[0], static_h, static_w, t.shape[-1]])
        return r

    out = dict(frames)
    out["image"] = _cast_like(sample(image, "bilinear"), image.dtype)
    for key in NEAREST_KEYS:
        if key in out:
            # Nearest-neighbour values are exact in float32 (integer ids below 2**24).
            out[key] = tf.cast(sample(out[key], "nearest"), out[key].dtype)
    if NORMALS_KEY in out:
        # Nearest neighbour too: unit vectors stay unit, "no surface" stays 0, and each normal
        # stays with its depth (same surface point), at a fraction of bilinear + renormalising.
        normals = out[NORMALS_KEY]
        r = sample(normals, "nearest")
        if grid.may_flip:  # the x component follows the x axis (negative step: mirrored)
            r = r * tf.stack([tf.sign(s_x), tf.ones_like(s_x), tf.ones_like(s_x)], -1)[:, None, None, :]
        out[NORMALS_KEY] = tf.cast(r, normals.dtype)
    if BOX_KEY in out:
        # A normalised edge b lies at index b * size - 0.5; output index (p - a) / s; back to
        # normalised (j + 0.5) / out_size. A negative step swaps min and max.
        b = tf.cast(out[BOX_KEY], tf.float32)
        ymin, xmin, ymax, xmax = tf.unstack(b, axis=-1)
        in_hf, in_wf = tf.cast(in_h, tf.float32), tf.cast(in_w, tf.float32)

        def edge(v, size_in, a, s, size_out):
            return ((v * size_in - 0.5 - a[:, None]) / s[:, None] + 0.5) / tf.cast(size_out, tf.float32)

        y0, y1 = edge(ymin, in_hf, a_y, s_y, out_h), edge(ymax, in_hf, a_y, s_y, out_h)
        x0, x1 = edge(xmin, in_wf, a_x, s_x, out_w), edge(xmax, in_wf, a_x, s_x, out_w)
        new = tf.stack([tf.minimum(y0, y1), tf.minimum(x0, x1), tf.maximum(y0, y1), tf.maximum(x0, x1)], -1)
        out[BOX_KEY] = tf.clip_by_value(new, 0.0, 1.0)
    return out


def _fold(seed, k: int):
    return tf.random.experimental.stateless_fold_in(seed, k)


def _uniform_int(shape, seed, low, high):
    """int32 uniformly in [low, high] (both inclusive)."""
    low, high = tf.cast(low, tf.int32), tf.cast(high, tf.int32)
    return tf.random.stateless_uniform(shape, seed, minval=low, maxval=high + 1, dtype=tf.int32)


def _random_offsets(batch, seed, in_size, out_size):
    """Per-example integer offsets of an `out_size` window in `in_size` (negative: pads)."""
    d = tf.cast(in_size, tf.int32) - tf.cast(out_size, tf.int32)
    return _uniform_int([batch], seed, tf.minimum(d, 0), tf.maximum(d, 0))


def _random_grid(frames: Example, layout: _Layout, config: AugmentConfig, seed) -> _Grid:
    """The composed random geometry of `config` for each example of the batch."""
    image = frames["image"]
    batch = layout.batch
    grid = _Grid.identity(batch, _dim(image, 1), _dim(image, 2))
    if config.scale_jitter:
        low, high = (float(v) for v in config.scale_jitter)
        factor = tf.random.stateless_uniform([batch], _fold(seed, 0), minval=low, maxval=high)
        u = tf.random.stateless_uniform([2, batch], _fold(seed, 1))
        # The window sits uniformly at random in the zoomed picture, or (zoomed out) the
        # picture sits uniformly at random in the window.
        dy = tf.cast(grid.h, tf.float32) * (factor - 1.0)
        dx = tf.cast(grid.w, tf.float32) * (factor - 1.0)
        grid = grid.then_scale(factor, tf.minimum(dy, 0.0) + u[0] * tf.abs(dy),
                               tf.minimum(dx, 0.0) + u[1] * tf.abs(dx))
    if config.crop_padding:
        p = int(config.crop_padding)
        grid = grid.then_shift(_uniform_int([batch], _fold(seed, 2), -p, p),
                               _uniform_int([batch], _fold(seed, 3), -p, p), grid.h, grid.w)
    if config.crop_size:
        ch, cw = (int(v) for v in config.crop_size)
        grid = grid.then_shift(_random_offsets(batch, _fold(seed, 4), grid.h, ch),
                               _random_offsets(batch, _fold(seed, 5), grid.w, cw), ch, cw)
    if config.horizontal_flip:
        grid = grid.then_flip(tf.random.stateless_uniform([batch], _fold(seed, 6)) < 0.5)
    return grid


def _color_jitter_frames(frames: Example, layout: _Layout, strength: float, seed) -> Example:
    """Brightness, contrast and saturation factors in [1 - 0.8 s, 1 + 0.8 s], one draw of each per
    example; image only, float32 in [0, 255].

    Brightness scales the pixels, contrast blends with the per-channel mean, saturation with
    the luma grey (skipped for one-channel images). The three are linear, so they are applied
    as one affine colour transform per example (a batched 3x3 matmul) and clipped once.
    """
    s = _JITTER_SCALE * float(strength)
    low, high = max(0.0, 1.0 - s), 1.0 + s
    factors = _per_frame(tf.random.stateless_uniform([layout.batch, 3], seed, low, high), layout)
    b, c, sat = factors[:, 0], factors[:, 1], factors[:, 2]
    image = frames["image"]
    x = tf.cast(image, tf.float32)
    channels = x.shape[-1]
    shape = tf.shape(x)
    pixels = tf.reshape(x, [shape[0], -1, channels])  # [frames, H*W, C]
    mean = tf.reduce_mean(pixels, axis=1)  # [frames, C]
    if channels == 3:
        luma = tf.constant(_LUMA)
        # out = sat*c*b*x + (1-sat)*c*b*luma(x) + (1-c)*b*(sat*mean + (1-sat)*luma(mean))
        matrix = ((sat * c * b)[:, None, None] * tf.eye(3)
                  + ((1 - sat) * c * b)[:, None, None] * (luma[:, None] * tf.ones([1, 3])))
        bias = ((1 - c) * b)[:, None] * (sat[:, None] * mean
                                         + (1 - sat)[:, None] * tf.reduce_sum(mean * luma, -1, keepdims=True))
        pixels = tf.linalg.matmul(pixels, matrix) + bias[:, None, :]
    else:
        pixels = (c * b)[:, None, None] * pixels + ((1 - c) * b)[:, None, None] * mean[:, None, :]
    out = dict(frames)
    out["image"] = tf.reshape(tf.clip_by_value(pixels, 0.0, 255.0), shape)
    out["image"].set_shape(image.shape)
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


def _augment_frames(frames: Example, layout: _Layout, config: AugmentConfig, training: bool, seed) -> Example:
    frames = dict(frames)
    frames["image"] = tf.cast(frames["image"], tf.float32)
    if training and has_random_ops(config):
        if seed is None:
            seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
        if has_geometric_ops(config):
            frames = _sample(frames, _random_grid(frames, layout, config, _fold(seed, 1)), layout)
        if config.color_jitter:
            frames = _color_jitter_frames(frames, layout, config.color_jitter, _fold(seed, 2))
    elif config.crop_size:
        frames = _center_crop_frames(frames, config.crop_size)
    return frames


def augment_batch(batch: Mapping[str, Any], config: AugmentConfig, *, training: bool, seed=None) -> Example:
    """Apply `config` to a batch of examples (leading `B` axis; boxes `[B, N, 4]` or
    `[B, T, N, 4]`, padded); returns it with a float32 image in [0, 255].

    Training: scale jitter, padded random crop (`crop_padding`), random crop to `crop_size`,
    horizontal flip (composed, then sampled once), colour jitter; each example draws its own
    parameters. Evaluation: only the centre crop to `crop_size`. `seed` (shape `[2]`) drives
    every draw; when None one is drawn from the stateful global generator.
    """
    frames, layout = _to_frames(batch, batched=True)
    return _from_frames(_augment_frames(frames, layout, config, training, seed), layout)


def augment_example(example: Mapping[str, Any], config: AugmentConfig, *, training: bool,
                    seed=None) -> Example:
    """`augment_batch` for one example (boxes may be ragged: `[N, 4]` of any N)."""
    frames, layout = _to_frames(example, batched=False)
    return _from_frames(_augment_frames(frames, layout, config, training, seed), layout)


# --------------------------------------------------------------------------------------------
# Single operations on one example
# --------------------------------------------------------------------------------------------

def _on_frames(fn, example: Mapping[str, Any], *args) -> Example:
    frames, layout = _to_frames(example, batched=False)
    return _from_frames(fn(frames, *args), layout)


def _random_on_example(example: Mapping[str, Any], seed, **ops) -> Example:
    config = AugmentConfig(**ops)
    frames, layout = _to_frames(example, batched=False)
    image_dtype = frames["image"].dtype
    out = _sample(frames, _random_grid(frames, layout, config, _fold(seed, 1)), layout)
    out["image"] = _cast_like(out["image"], image_dtype)
    return _from_frames(out, layout)


def resize(example: Mapping[str, Any], size: Sequence[int]) -> Example:
    """Resize image (bilinear) and dense maps (nearest; normals renormalised) to `size`.

    The image keeps its dtype (integer images are rounded back). A no-op when the (static)
    size already matches.
    """
    if tuple(tf.convert_to_tensor(example["image"]).shape[-3:-1]) == tuple(int(s) for s in size):
        return dict(example)
    return _on_frames(_resize_frames, example, size)


def flip_left_right(example: Mapping[str, Any]) -> Example:
    """Mirror image, dense maps and boxes; negate the x component of normals."""
    return _on_frames(_flip_frames, example)


def center_crop(example: Mapping[str, Any], size: Sequence[int]) -> Example:
    """The centred `size` window (padded with 0 where the input is smaller)."""
    return _on_frames(_center_crop_frames, example, size)


def random_flip_left_right(example: Mapping[str, Any], seed) -> Example:
    """`flip_left_right` with probability 1/2 (one draw for the whole clip)."""
    return _random_on_example(example, seed, horizontal_flip=True)


def random_crop(example: Mapping[str, Any], size: Sequence[int], seed) -> Example:
    """A random `size` window (padded with 0 at a random place where the input is smaller)."""
    return _random_on_example(example, seed, crop_size=tuple(size))


def random_crop_with_padding(example: Mapping[str, Any], padding: int, seed) -> Example:
    """CIFAR style: pad by `padding` pixels on every side, then randomly crop back to size."""
    return _random_on_example(example, seed, crop_padding=padding)


def random_scale_jitter(example: Mapping[str, Any], scale_range: Sequence[float], seed) -> Example:
    """Resize by a random factor in `scale_range`, then random-crop (or pad) back to size."""
    return _random_on_example(example, seed, scale_jitter=tuple(scale_range))


def color_jitter(example: Mapping[str, Any], strength: float, seed) -> Example:
    """Brightness/contrast/saturation jitter on the image only (float32 in [0, 255] out)."""
    frames, layout = _to_frames(example, batched=False)
    return _from_frames(_color_jitter_frames(frames, layout, strength, seed), layout)


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
