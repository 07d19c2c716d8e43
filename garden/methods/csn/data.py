"""`csn_triplets`: conditional triplets over any garden image source (registered dataset).

Each example is one triplet of one notion of similarity:
    image      uint8 [3, H, W, C]: anchor, the close image (same label under the notion), the far
               image (another label): the pipeline treats it like a 3-frame clip
    condition  int64 []: the notion's index in `data.options.notions`

    data:
      name: csn_triplets
      options:
        source: toyworld:attributes          # any data.name of the garden (toyworld, folder, tfds, ...)
        source_options: {image_size: 32}     # that source's data.options
        notions: [shape, color, size, texture]   # label keys of the source, one condition each
        triplets_per_notion: {train: 4000, validation: 500, test: 1000}
        seed: 0

Protocol (Veit, thesis Sec. 3.4.1): images are split first (the source's splits, 70/10/20 for
toyworld:attributes and the Zappos layout), then triplets are sampled *within* each split:
"two [images] of the same [label] and one different", uniformly, per notion, in equal numbers
(`garden.nn.metric_learning.sample_condition_triplets`), fixed by `seed` and the split string.
The thesis uses 200k/20k/40k triplets per notion on Zappos (the code's default is 100k train).
A split string (e.g. `train[:2000]`) selects the source's *images*; the number of triplets comes
from `triplets_per_notion` under the split's base name, so `split_sizes` counts triplets.

Labels below 0 (a folder source's empty cell) are unknown: those images are left out of that
notion's triplets. A continuous notion (Zappos heel height) is given as bins in its own column
(docs/methods/csn.md, "Folder layouts").

Folder sources are read lazily (three image files decoded per triplet; `image_size` resizes them
so that triplets stack, e.g. Zappos' 136x102 to 112x112); other sources are read into memory once
per process (toyworld:attributes at 32x32: 5,000 images, 15 MB).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import zlib
from typing import Any, Literal

import numpy as np
import tensorflow as tf
from pydantic import BaseModel, ConfigDict, Field

from garden.data.config import DataConfig
from garden.data.errors import DataError
from garden.data.sources import SourceInfo, load_source, select_split, source_info, validate_options
from garden.errors import unknown_choice
from garden.nn.metric_learning import sample_condition_triplets
from garden.registry import register_dataset

NAME = "csn_triplets"
TRIPLET_ROLES = ("anchor", "close", "far")


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field("toyworld:attributes", description="the image source (any data.name but csn_triplets)")
    source_options: dict[str, Any] = Field(default_factory=dict, description="the source's data.options")
    notions: list[str] = Field(["shape", "color", "size", "texture"], min_length=1,
                               description="label keys of the source, one condition id each (in this order)")
    triplets_per_notion: dict[str, int] = Field(
        {"train": 4000, "validation": 500, "test": 1000},
        description="triplets per notion for each base split name")
    seed: int = Field(0, ge=0, description="fixes the triplets (with the split string)")
    image_size: tuple[int, int] | None = Field(None, description="resize every image to (height, width) "
                                               "before stacking a triplet (needed when sizes vary)")
    channels: Literal[1, 3] | None = Field(None, description="force 1 or 3 channels before stacking")


@dataclasses.dataclass(frozen=True)
class TripletSourceInfo(SourceInfo):
    """SourceInfo whose split sizes count triplets of the split's *base name*: a split string
    slices the source's images, not the triplets (see the module docstring)."""

    def split_size(self, split: str) -> int | None:
        base = _base_name(split)
        return self.split_sizes.get(base)


def _options(config: DataConfig) -> Options:
    options = validate_options(Options, config.options, NAME)
    if options.source == NAME:
        raise DataError(f"data.options.source: {NAME} cannot read from itself; name an image source")
    for split, count in options.triplets_per_notion.items():
        if count < 1:
            raise DataError(f"data.options.triplets_per_notion.{split}: must be >= 1, got {count}")
    return options


def _source_config(config: DataConfig, options: Options) -> DataConfig:
    return DataConfig(name=options.source, options=options.source_options, data_dir=config.data_dir,
                      cache=False, shuffle_buffer=0)


def _check_notions(options: Options, info: SourceInfo) -> None:
    for notion in options.notions:
        if notion not in info.label_keys:
            raise DataError("data.options.notions: " + unknown_choice(f"label key of {options.source}", notion,
                                                                      info.label_keys))


def _base_name(split: str) -> str:
    """`train` for `train`, `train[:2000]`, `train[10%:]+validation` (the first split named)."""
    return split.split("+")[0].split("[")[0].strip()


def _base_split(split: str, options: Options) -> str:
    base = _base_name(split)
    if base not in options.triplets_per_notion:
        raise DataError(f"split {split!r}: data.options.triplets_per_notion has no entry for {base!r}; it has "
                        f"{', '.join(options.triplets_per_notion)}")
    return base


def _split_seed(options: Options, split: str) -> int:
    # Different, reproducible triplets per split string (crc32 is stable across processes, hash() is not).
    return int(options.seed) * 1_000_003 + zlib.crc32(split.encode())


def _triplets(labels: dict[str, np.ndarray], options: Options, split: str) -> np.ndarray:
    count = options.triplets_per_notion[_base_split(split, options)]
    try:
        return sample_condition_triplets([labels[n] for n in options.notions], count,
                                         seed=_split_seed(options, split))
    except ValueError as e:
        raise DataError(f"split {split!r} of {options.source}: cannot sample triplets: {e}") from None


def _fix_image(image, options: Options):
    if options.channels == 1 and image.shape[-1] == 3:
        image = tf.image.rgb_to_grayscale(image)
    elif options.channels == 3 and image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    if options.image_size is not None:
        image = tf.cast(tf.clip_by_value(tf.round(tf.image.resize(image, options.image_size, antialias=True)),
                                         0, 255), tf.uint8)
    return image


@functools.lru_cache(maxsize=8)
def _in_memory(config_json: str, split: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(images [N, H, W, C] uint8, {notion: labels [N]}) of a split of a non-folder source."""
    config = DataConfig.model_validate_json(config_json)
    options = _options(config)
    ds = load_source(_source_config(config, options), split)
    ds = ds.map(lambda ex: {"image": _fix_image(ex["image"], options), **{n: ex[n] for n in options.notions}})
    parts: dict[str, list[np.ndarray]] = {}
    for batch in ds.batch(1024).as_numpy_iterator():
        for key, value in batch.items():
            parts.setdefault(key, []).append(value)
    if not parts:
        raise DataError(f"split {split!r} of {options.source} has no images")
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    return arrays.pop("image"), arrays


def _load_folder(config: DataConfig, options: Options, split: str) -> tf.data.Dataset:
    from garden.data import folder

    source = _source_config(config, options)
    index = folder.read_index(source)
    channels = folder.validate_options(folder.Options, source.options, "folder").channels
    parts = select_split(split, index.split_sizes, "folder")
    rows = np.concatenate([np.flatnonzero(index.splits == name)[start:stop] for name, start, stop in parts])
    columns = {c.key: c.values[rows] for c in index.columns}
    triplets = _triplets(columns, options, split)
    paths = index.images[rows][triplets[:, :3]]

    def decode(example):
        frames = []
        for i in range(3):  # the three images of one triplet (a fixed count, not a loop over data)
            image = tf.io.decode_image(tf.io.read_file(example["paths"][i]), channels=channels,
                                       expand_animations=False, dtype=tf.uint8)
            image.set_shape([None, None, channels])
            frames.append(_fix_image(image, options))
        return {"image": tf.stack(frames), "condition": example["condition"]}

    ds = tf.data.Dataset.from_tensor_slices({"paths": paths, "condition": triplets[:, 3]})
    return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


@register_dataset(NAME)
class CSNTriplets:
    """The registered source: `load(config, split)` and `info(config)` (garden.data.sources)."""

    @staticmethod
    def load(config: DataConfig, split: str) -> tf.data.Dataset:
        options = _options(config)
        _base_split(split, options)
        _check_notions(options, source_info(_source_config(config, options)))
        if options.source == "folder":
            return _load_folder(config, options, split)
        images, labels = _in_memory(config.model_dump_json(), split)
        triplets = _triplets(labels, options, split)
        table = tf.constant(images)

        def gather(row):
            return {"image": tf.gather(table, row[:3]), "condition": row[3]}

        return tf.data.Dataset.from_tensor_slices(triplets).map(gather, num_parallel_calls=tf.data.AUTOTUNE,
                                                                 deterministic=True)

    @staticmethod
    def info(config: DataConfig) -> SourceInfo:
        options = _options(config)
        source = source_info(_source_config(config, options))
        _check_notions(options, source)
        shape = source.image_shape or (None, None, None)
        if options.image_size is not None:
            shape = (*options.image_size, shape[-1])
        if options.channels is not None:
            shape = (*shape[:-1], options.channels)
        return TripletSourceInfo(
            name=NAME,
            image_shape=(3, *shape),
            feature_keys=("image", "condition"),
            label_names={"condition": tuple(options.notions),
                         **{n: tuple(source.label_names[n]) for n in options.notions if n in source.label_names}},
            split_sizes={split: count * len(options.notions) for split, count in options.triplets_per_notion.items()},
        )


def notion_labels(config: DataConfig, split: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The images and per-notion labels of a split of the triplets' image source (in memory),
    for the pictures and the off-task probe."""
    return _in_memory(config.model_dump_json(), split)


def describe(config: DataConfig) -> str:
    """One line naming the source, the notions and the triplet counts (for logs and docs)."""
    options = _options(config)
    return json.dumps({"source": options.source, "notions": options.notions,
                       "triplets_per_notion": options.triplets_per_notion, "seed": options.seed})
