"""`vvl_triplets`: a registered dataset of (anchor, neighbouring-pose, distant-pose) images.

    data:
      name: vvl_triplets
      options:
        source: toyworld:objects         # any source with instance / azimuth / elevation keys
        source_options: {image_size: 32}
        seed: 0                          # the static draw of partners (A.3: sampled once)
      label_keys: [label, image_positive, image_negative]

Every example of the inner source's split is an anchor once; `image_positive` and
`image_negative` are images of the same instance (see `pairs.py`). They travel in the label
dict (the pipeline hands only `image` to the model), so the split is read into memory once
and partners are gathered from it: fine for toyworld and smallNORB sizes, not for iLab-2M's
1.2M images (stream such a dataset from pre-sampled triplet files instead). Geometric
augmentation and `data.image_size` cannot be used with it (the pipeline would move the anchor
only); render or store the images at the training size.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import tensorflow as tf
from pydantic import BaseModel, ConfigDict, Field

from garden.data.config import DataConfig
from garden.data.errors import DataError
from garden.data.sources import SourceInfo, load_source, source_info, validate_options
from garden.methods.vvl.pairs import sample_pose_triplets
from garden.registry import register_dataset

NAME = "vvl_triplets"
PARTNER_KEYS = ("image_positive", "image_negative")


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field("toyworld:objects", description="the inner data source (a data.name)")
    source_options: dict = Field(default_factory=dict, description="the inner source's data.options")
    instance_key: str = "instance"
    azimuth_key: str = "azimuth"
    elevation_key: str = "elevation"
    azimuth_bins: int | None = Field(None, ge=1, description="default: the number of azimuth class names")
    near: int = Field(1, ge=0, description="positive: pose distance <= near")
    far: int = Field(3, ge=0, description="negative: pose distance > far")
    seed: int = 0


def _options(config: DataConfig) -> Options:
    return validate_options(Options, config.options, NAME)


def _inner(config: DataConfig, options: Options) -> DataConfig:
    if options.source == NAME:
        raise DataError(f"data.options.source: {NAME} cannot wrap itself; name a source such as toyworld:objects")
    return config.model_copy(update={"name": options.source, "options": dict(options.source_options)})


_CACHE: dict[str, tuple[dict[str, np.ndarray], np.ndarray]] = {}


def _materialise(config: DataConfig, split: str):
    """(arrays of every kept key, triplet indices) of a split, computed once per process."""
    options = _options(config)
    inner = _inner(config, options)
    key = json.dumps([inner.model_dump(mode="json"), split, options.model_dump(mode="json")], sort_keys=True)
    if key in _CACHE:
        return _CACHE[key]
    ds = load_source(inner, split)
    spec = ds.element_spec
    needed = (options.instance_key, options.azimuth_key, options.elevation_key)
    missing = [k for k in needed if k not in spec]
    if missing:
        raise DataError(f"data.options.source {options.source!r} has no key {missing[0]!r} for pose pairs; "
                        f"keys: {', '.join(sorted(spec))}")
    # Keep the image and the per-example scalar labels (masks and other maps are left out).
    keep = ["image"] + [k for k, s in spec.items() if k != "image" and s.shape.rank == 0]
    ds = ds.map(lambda ex: {k: ex[k] for k in keep})
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keep}
    for batch in ds.batch(1024).as_numpy_iterator():
        for k in keep:
            parts[k].append(batch[k])
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    bins = options.azimuth_bins or len(source_info(inner).label_names.get(options.azimuth_key, ())) \
        or int(arrays[options.azimuth_key].max()) + 1
    triplets = sample_pose_triplets(arrays[options.instance_key], arrays[options.azimuth_key],
                                    arrays[options.elevation_key], azimuth_bins=bins,
                                    seed=options.seed + _split_salt(split), near=options.near, far=options.far)
    _CACHE[key] = (arrays, triplets)
    return arrays, triplets


def _split_salt(split: str) -> int:
    return sum(ord(c) * (i + 1) for i, c in enumerate(split)) % 100_003


@register_dataset(NAME)
class VariationTriplets:
    """Registered source: `load(config, split)` and `info(config)` (garden.data.sources)."""

    @staticmethod
    def load(config: DataConfig, split: str) -> tf.data.Dataset:
        arrays, triplets = _materialise(config, split)
        images = tf.constant(arrays["image"])
        labels = {k: tf.constant(v) for k, v in arrays.items() if k != "image"}

        def gather(index):
            example = {"image": tf.gather(images, index[0])}
            example.update({k: tf.gather(v, index[0]) for k, v in labels.items()})
            example["image_positive"] = tf.gather(images, index[1])
            example["image_negative"] = tf.gather(images, index[2])
            return example

        return tf.data.Dataset.from_tensor_slices(triplets).map(gather, num_parallel_calls=tf.data.AUTOTUNE)

    @staticmethod
    def info(config: DataConfig) -> SourceInfo:
        options = _options(config)
        inner = source_info(_inner(config, options))
        keys = tuple(k for k in inner.feature_keys if k not in ("mask", "depth", "normals")) + PARTNER_KEYS
        return dataclasses.replace(inner, name=NAME, feature_keys=keys)
