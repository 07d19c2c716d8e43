"""tf.data input pipelines: example dicts in, batched `(features, labels)` pairs out.

    examples ─ keep label keys ─ shard ─ convert (channels, resize) ─ cache
             ─ [training] shuffle ─ pad boxes ─ batch ─ augment (parallel map, per batch)
             ─ prefetch

`features = {"image": float32 [B, H, W, C]}` in [0, 255] (normalisation is the model's job) and
`labels` holds the remaining keys of the example (`data.label_keys` when set). Boxes are padded
to `data.max_boxes` (boxes 0, `box_labels`/`box_instances` -1, valid boxes first) and
`num_boxes` (int32) is added whenever a box key is kept.

Augmentation runs on whole batches (`augment.augment_batch`: vectorised, each example draws its
own parameters), after the examples are padded and batched.

Randomness and determinism. With a `seed`, the shuffle order and every augmentation are a
function of (seed, epoch, position): iterating a freshly built dataset twice gives two different
epochs, and building it again with the same seed gives the same two epochs again. Augmentation
parameters come from a seeded `tf.data.Dataset.random` stream zipped with the batches *before*
the parallel map, so they do not depend on thread timing; `data.deterministic` then only
decides whether the maps keep element order (with `false`, batch composition may vary from run to run).
Without a seed, results follow the global TF seed (`tf.random.set_seed`) or are random.

Multi-worker: with a `tf.distribute.InputContext` each input pipeline keeps every
`num_input_pipelines`-th example (starting at its `input_pipeline_id`) before caching, batches
the per-replica share of the global batch size, and tf.data auto-sharding is switched off.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tensorflow as tf

from garden.data import augment
from garden.data.config import DataConfig
from garden.data.errors import DataError
from garden.errors import unknown_choice

AUTOTUNE = tf.data.AUTOTUNE
NUM_BOXES_KEY = "num_boxes"
BOX_KEYS = augment.BOX_KEYS
# Keys the augmentation knows how to move with the image.
_ALIGNED_KEYS = frozenset(augment.SPATIAL_KEYS) | frozenset(BOX_KEYS)


def build_dataset(config: DataConfig, split: str, *, batch_size: int | None = None, training: bool,
                  input_context: tf.distribute.InputContext | None = None,
                  seed: int | None = None) -> tf.data.Dataset:
    """The batched `(features, labels)` dataset of `split` of the configured source.

    `split` is a split name of the source (usually `config.train_split`, ...). `batch_size` is
    the global batch size (default `config.batch_size`); under `input_context` each pipeline
    yields per-replica batches. In training the examples are shuffled and augmented, and the
    last partial batch is dropped.
    """
    from garden.data.sources import load_source

    examples = load_source(config, split)
    return build_from_examples(examples, config, training=training, batch_size=batch_size,
                               input_context=input_context, seed=seed)


def build_from_examples(examples: tf.data.Dataset, config: DataConfig, *, training: bool,
                        batch_size: int | None = None,
                        input_context: tf.distribute.InputContext | None = None,
                        seed: int | None = None) -> tf.data.Dataset:
    """`build_dataset` on any dataset of (unbatched) example dicts."""
    spec = examples.element_spec
    if not isinstance(spec, Mapping) or "image" not in spec:
        raise DataError(f"examples must be dicts with an 'image' key, got element spec {spec!r}")
    label_keys, keep = _select_keys(spec, config.label_keys)
    _check_alignable(spec, keep, config)

    global_batch = int(batch_size or config.batch_size)
    pipeline_id, num_pipelines = 0, 1
    if input_context is not None:
        pipeline_id, num_pipelines = input_context.input_pipeline_id, input_context.num_input_pipelines
        try:
            per_replica_batch = input_context.get_per_replica_batch_size(global_batch)
        except ValueError as e:
            raise DataError(f"batch size {global_batch} cannot be split over "
                            f"{input_context.num_replicas_in_sync} replicas: {e}") from None
    else:
        per_replica_batch = global_batch

    ds = examples
    if set(spec) != keep:
        ds = ds.map(_plain(lambda ex: {k: ex[k] for k in spec if k in keep}))
    if num_pipelines > 1:
        ds = ds.shard(num_pipelines, pipeline_id)

    # Deterministic per-example conversion, cached (before any randomness).
    if config.channels is not None or config.image_size is not None:
        ds = ds.map(_plain(lambda ex: _convert(ex, config)), num_parallel_calls=AUTOTUNE,
                    deterministic=config.deterministic)
    if config.cache:
        ds = ds.cache()

    if training and config.shuffle_buffer > 0:
        ds = ds.shuffle(config.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if any(k in keep for k in BOX_KEYS):
        # Ragged boxes get a fixed count so that examples can be batched.
        ds = ds.map(_plain(lambda ex: pad_boxes(ex, config.max_boxes)), num_parallel_calls=AUTOTUNE,
                    deterministic=config.deterministic)
    ds = ds.batch(per_replica_batch, drop_remainder=training, num_parallel_calls=AUTOTUNE,
                  deterministic=config.deterministic)

    def finish(batch, batch_seed=None):
        batch = augment.augment_batch(batch, config.augment, training=training, seed=batch_seed)
        if "boxes" in batch:
            batch = pad_boxes(batch, config.max_boxes)  # drops boxes pushed out of the picture
        features = {"image": batch["image"]}
        labels = {k: batch[k] for k in label_keys}
        return features, labels

    # Augmentation runs on whole batches (one vectorised pass; every example draws its own
    # parameters). Each batch's seed comes from a seeded stream paired with it here, before the
    # parallel map, so results do not depend on thread timing.
    if training and augment.has_random_ops(config.augment):
        stream_seed = None if seed is None else _mix_seed(seed, pipeline_id)
        randoms = tf.data.Dataset.random(seed=stream_seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip(ds, randoms)
        ds = ds.map(_plain(lambda batch, r: finish(batch, tf.stack([r, tf.constant(0, tf.int64)]))),
                    num_parallel_calls=AUTOTUNE, deterministic=config.deterministic)
    else:
        ds = ds.map(_plain(finish), num_parallel_calls=AUTOTUNE, deterministic=config.deterministic)
    ds = ds.prefetch(AUTOTUNE)

    options = tf.data.Options()
    options.deterministic = config.deterministic
    if input_context is not None:
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.with_options(options)


def pad_boxes(example: Mapping[str, Any], max_boxes: int) -> dict[str, Any]:
    """Pad (or truncate) the box keys to `max_boxes` along the box axis and add `num_boxes`.

    Valid boxes (positive area and, when present, `box_labels >= 0`) move to the front in
    their original order; the rest become boxes of zeros and labels/instances of -1. Works on
    `[N, 4]` and per-frame `[T, N, 4]` boxes (then `num_boxes` is `[T]`).
    """
    out = dict(example)
    boxes = tf.cast(out["boxes"], tf.float32)
    valid = (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])
    if "box_labels" in out:
        valid &= tf.cast(out["box_labels"], tf.int64) >= 0
    order = tf.argsort(tf.cast(tf.logical_not(valid), tf.int32), axis=-1, stable=True)
    batch_dims = boxes.shape.rank - 2
    valid = tf.gather(valid, order, axis=-1, batch_dims=batch_dims)

    def fit(t, fill, box_axis):
        t = tf.gather(t, order, axis=box_axis, batch_dims=batch_dims)
        mask = valid if box_axis == -1 else valid[..., tf.newaxis]
        t = tf.where(mask, t, tf.cast(fill, t.dtype))
        pad_shape = tf.tensor_scatter_nd_update(tf.shape(t), [[t.shape.rank + box_axis]], [max_boxes])
        t = tf.concat([t, tf.fill(pad_shape, tf.cast(fill, t.dtype))], axis=box_axis)
        if box_axis == -1:
            t = t[..., :max_boxes]
        else:
            t = t[..., :max_boxes, :]
        static = t.shape.as_list()
        static[box_axis] = max_boxes
        t.set_shape(static)
        return t

    out["boxes"] = fit(boxes, 0, -2)
    for key in ("box_labels", "box_instances"):
        if key in out:
            out[key] = fit(out[key], -1, -1)
    out[NUM_BOXES_KEY] = tf.minimum(tf.reduce_sum(tf.cast(valid, tf.int32), axis=-1), max_boxes)
    return out


# The map functions branch only on the (static) config, never on tensor values, so AutoGraph's
# source rewriting (seconds per process for the augmentation code) buys nothing.
_plain = tf.autograph.experimental.do_not_convert


def _convert(example, config: DataConfig):
    ex = augment.force_channels(example, config.channels)
    if config.image_size is not None:
        ex = augment.resize(ex, config.image_size)
    return ex


def _select_keys(spec: Mapping[str, Any], wanted: list[str] | None) -> tuple[list[str], set[str]]:
    """(the label keys handed out, the source keys the pipeline keeps)."""
    available = [k for k in spec if k != "image"]
    if "boxes" in spec:
        available.append(NUM_BOXES_KEY)
    if wanted is None:
        labels = available
    else:
        for key in wanted:
            if key not in available:
                raise DataError("data.label_keys: " + unknown_choice("label key", key, available))
        labels = list(dict.fromkeys(wanted))
    if any(k in BOX_KEYS or k == NUM_BOXES_KEY for k in labels):
        # Box keys travel together (augmentation may drop boxes), and num_boxes comes along.
        if NUM_BOXES_KEY not in labels and "boxes" in spec:
            labels.append(NUM_BOXES_KEY)
        keep = {"image"} | {k for k in labels if k in spec} | {k for k in BOX_KEYS if k in spec}
    else:
        keep = {"image"} | set(labels)
    return labels, keep


def _check_alignable(spec: Mapping[str, Any], keep: set[str], config: DataConfig) -> None:
    image_spec = spec["image"]
    if image_spec.shape.rank not in (3, 4):
        raise DataError(f"'image' must be [H, W, C] or [T, H, W, C], got shape {image_spec.shape}")
    if config.image_size is None and (image_spec.shape[-3] is None or image_spec.shape[-2] is None):
        raise DataError(f"images have no fixed size (shape {image_spec.shape}); set data.image_size "
                        "so that they can be batched")
    moves = augment.has_geometric_ops(config.augment) or config.image_size is not None
    if not moves:
        return
    spatial_rank = image_spec.shape.rank - 1  # rank of a per-pixel map
    unknown = sorted(k for k in keep if k not in _ALIGNED_KEYS
                     and spec[k].shape.rank is not None and spec[k].shape.rank >= spatial_rank)
    if unknown:
        raise DataError(f"keys {unknown} look like per-pixel maps that resizing/augmentation cannot "
                        f"keep aligned; leave them out with data.label_keys")


def _mix_seed(seed: int, pipeline_id: int) -> int:
    """A different, reproducible augmentation stream per input pipeline."""
    return (int(seed) * 1_000_003 + 7919 * (pipeline_id + 1)) % (2**63 - 1)
