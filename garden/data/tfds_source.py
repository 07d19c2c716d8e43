"""`tfds:<name>[/<config>]`: any TensorFlow Datasets dataset, as example dicts with shared keys.

Nothing is downloaded unless `data.options.download: true`; a dataset that is not prepared gives
one DataError saying how to prepare it. The TFDS data folder is `data.options.data_dir`, else
`data.data_dir`, else TFDS's own default (`$TFDS_DATA_DIR` or `~/tensorflow_datasets`).

Features are renamed to the keys of `docs/design/contracts.md` by `FEATURE_MAPS` (one table per
dataset) and `COMMON_RENAMES`; other numeric features keep their names, nested ones joined with
`_` (`objects/area` -> `objects_area`); string features (ids, file names) are dropped. Values are
brought to the contract's dtypes: booleans and integer labels to int64, floats to float32,
`segmentation` to int32 `[H, W]`, `depth` to float32 `[H, W]`, `mask` to uint8 `[H, W]`.
"""

from __future__ import annotations

import difflib
import os
from typing import Any, Iterator

import tensorflow as tf
from pydantic import BaseModel, ConfigDict, Field

from garden.data.config import DataConfig
from garden.data.errors import DataError
from garden.data.sources import SourceInfo, check_split_syntax, one_line, select_split, validate_options
from garden.errors import did_you_mean

# ---------------------------------------------------------------------------------------------
# The mapping tables: TFDS feature path ("/" for nested features) -> example key.
# A dataset's table is applied first, then COMMON_RENAMES; a key mapped to None is dropped.

COMMON_RENAMES: dict[str, str | None] = {
    "segmentation_mask": "segmentation",
    "objects/bbox": "boxes",  # TFDS boxes are (ymin, xmin, ymax, xmax) in [0, 1], as ours
    "objects/label": "box_labels",
}

FEATURE_MAPS: dict[str, dict[str, str | None]] = {
    "mnist": {},
    "fashion_mnist": {},
    "cifar10": {},
    "cifar100": {},  # label (fine, 100) and coarse_label (20)
    "svhn_cropped": {},
    "smallnorb": {
        "image": "image",
        "image2": "image2",  # the second camera of the stereo pair
        "label_category": "label",
        "instance": "instance",
        "label_azimuth": "azimuth",
        "label_elevation": "elevation",
        "label_lighting": "lighting",
    },
    "oxford_iiit_pet": {"segmentation_mask": "segmentation", "label": "label", "species": "species"},
    "cityscapes": {"image_left": "image", "segmentation_label": "segmentation"},
    "nyu_depth_v2": {"depth": "depth"},
    "coco": {"image/id": "image_id", "objects/bbox": "boxes", "objects/label": "box_labels",
             "objects/is_crowd": "box_is_crowd", "objects/id": "box_ids", "objects/area": "box_areas"},
    "voc": {"objects/bbox": "boxes", "objects/label": "box_labels"},
}

# Value offsets for segmentation maps whose classes do not start at 0 (pets: 1 pet, 2 background,
# 3 border -> 0, 1, 2).
SEGMENTATION_OFFSETS: dict[str, int] = {"oxford_iiit_pet": -1}

_DENSE_2D = {"segmentation": tf.int32, "depth": tf.float32, "mask": tf.uint8, "instance_map": tf.int32}


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    download: bool = Field(False, description="download and prepare the dataset when it is not prepared")
    data_dir: str | None = Field(None, description="TFDS data folder (default data.data_dir, else TFDS's)")
    shuffle_files: bool = Field(False, description="read the record files in random order")
    rename: dict[str, str] = Field(default_factory=dict, description="extra TFDS feature path -> example key")
    drop: list[str] = Field(default_factory=list, description="TFDS feature paths to leave out")


def parse_name(source_name: str) -> tuple[str, str | None]:
    """'tfds:smallnorb' -> ('smallnorb', None); 'tfds:coco/2017' -> ('coco', '2017')."""
    rest = source_name.split(":", 1)[1] if source_name.startswith("tfds:") else source_name
    name, _, config = rest.partition("/")
    return name, (config or None)


def _options(config: DataConfig) -> Options:
    return validate_options(Options, config.options, config.name)


def _data_dir(config: DataConfig, options: Options) -> str | None:
    folder = options.data_dir or config.data_dir
    return os.path.expanduser(folder) if folder else None


def make_builder(source_name: str, data_dir: str | None):
    """`tfds.builder` for `tfds:<name>[/<config>]` with one-line DataErrors for unknown names."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.registered import DatasetNotFoundError

    name, builder_config = parse_name(source_name)
    full = name + (f"/{builder_config}" if builder_config else "")
    try:
        return tfds.builder(full, data_dir=data_dir)
    except DatasetNotFoundError:
        names = tfds.list_builders(with_community_datasets=False)
        close = difflib.get_close_matches(name.split(":")[0], names, n=3)
        hint = f" (did you mean {', '.join(repr('tfds:' + c) for c in close)}?)" if close else ""
        raise DataError(f"unknown TFDS dataset {name!r}{hint}; {len(names)} are known: "
                        "see tfds.list_builders() or https://www.tensorflow.org/datasets/catalog") from None
    except (ValueError, KeyError, AttributeError) as e:
        configs = _builder_configs(name)
        if builder_config is not None and configs and builder_config.split(":")[0] not in configs:
            raise DataError(f"unknown config {builder_config!r} of TFDS dataset {name!r}"
                            f"{did_you_mean(builder_config, configs)}; valid: {', '.join(configs)}") from None
        if builder_config is None and configs:
            raise DataError(f"TFDS dataset {name!r} needs a config: use tfds:{name}/<config> with one of "
                            f"{', '.join(configs)} ({one_line(e)[:200]})") from None
        raise DataError(f"cannot open TFDS dataset {full!r}: {one_line(e)[:300]}") from None


def _builder_configs(name: str) -> list[str]:
    import tensorflow_datasets as tfds

    try:
        return [c.name for c in (tfds.builder_cls(name.split(":")[0]).BUILDER_CONFIGS or [])]
    except Exception:  # noqa: BLE001 - only used for a message
        return []


# ---------------------------------------------------------------------------------------------
# Feature mapping


def _walk(features, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(path, leaf feature) of a FeaturesDict, through Sequence(FeaturesDict) too."""
    import tensorflow_datasets as tfds

    for key, feature in features.items():
        path = f"{prefix}{key}"
        inner = feature.feature if isinstance(feature, tfds.features.Sequence) else feature
        if isinstance(inner, tfds.features.FeaturesDict):
            yield from _walk(inner, path + "/")
        else:
            yield path, feature


def _flat(tree: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}/")
        else:
            yield f"{prefix}{key}", value


def key_map(dataset: str, tensor_info: dict, options: Options | None = None) -> dict[str, str]:
    """TFDS feature path -> example key for the kept (non-string) features of `dataset`."""
    table = {**COMMON_RENAMES, **FEATURE_MAPS.get(dataset, {})}
    if options is not None:
        table.update(options.rename)
        table.update({path: None for path in options.drop})
    out: dict[str, str] = {}
    for path, ti in _flat(tensor_info):
        dtype = ti.tf_dtype if hasattr(ti, "tf_dtype") else tf.as_dtype(ti.dtype)
        if dtype == tf.string:
            continue
        key = table.get(path, path.replace("/", "_"))
        if key is None:
            continue
        if key in out.values():
            raise DataError(f"TFDS dataset {dataset!r}: two features map to the example key {key!r}; "
                            "fix it with data.options.rename / data.options.drop")
        out[path] = key
    return out


def _convert(key: str, value: tf.Tensor, offset: int) -> tf.Tensor:
    if key in _DENSE_2D:
        if value.shape.rank == 3 and value.shape[-1] == 1:
            value = tf.squeeze(value, -1)
        value = tf.cast(value, _DENSE_2D[key])
        if key == "segmentation" and offset:
            value = value + offset
        return value
    if value.dtype == tf.bool or value.dtype in (tf.int8, tf.int16, tf.int32, tf.uint16, tf.uint32):
        return tf.cast(value, tf.int64)
    if value.dtype in (tf.float16, tf.float64, tf.bfloat16):
        return tf.cast(value, tf.float32)
    return value


def to_examples(ds: tf.data.Dataset, builder, dataset: str, options: Options | None = None) -> tf.data.Dataset:
    """Map a TFDS dataset of feature dicts to example dicts with the shared key names."""
    mapping = key_map(dataset, builder.info.features.get_tensor_info(), options)
    offset = SEGMENTATION_OFFSETS.get(dataset, 0)

    def convert(example):
        flat = dict(_flat(example))
        return {key: _convert(key, flat[path], offset) for path, key in mapping.items() if path in flat}

    return ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE)


# ---------------------------------------------------------------------------------------------
# Entry points


def load(config: DataConfig, split: str) -> tf.data.Dataset:
    import tensorflow_datasets as tfds

    options = _options(config)
    builder = make_builder(config.name, _data_dir(config, options))
    sizes = _split_sizes(builder)
    if sizes:
        select_split(split, sizes, config.name)
    else:
        check_split_syntax(split, config.name)
    if options.download:
        try:
            builder.download_and_prepare()
        except Exception as e:  # noqa: BLE001 - one line for any download failure
            raise DataError(f"downloading TFDS dataset {config.name!r} failed: {one_line(e)[:300]}") from None
    try:
        ds = builder.as_dataset(split=split, shuffle_files=options.shuffle_files,
                                read_config=tfds.ReadConfig(try_autocache=False))
    except AssertionError:  # "could not find data in ..."
        name = config.name.split(":", 1)[1]
        raise DataError(
            f"TFDS dataset {name!r} is not prepared in {builder.data_dir_root}: run `tfds build {name} "
            f"--data_dir {builder.data_dir_root}` (or put prepared data there), or set "
            "data.options.download: true") from None
    except (ValueError, KeyError) as e:
        valid = ", ".join(sizes) if sizes else "unknown until prepared"
        raise DataError(f"bad split {split!r} for {config.name}: {one_line(e)[:300]}; split names: {valid}") from None
    return to_examples(ds, builder, builder.name, options)


def _split_sizes(builder) -> dict[str, int]:
    try:
        return {name: int(s.num_examples) for name, s in builder.info.splits.items()}
    except Exception:  # noqa: BLE001 - unknown before preparation
        return {}


def info(config: DataConfig) -> SourceInfo:
    import tensorflow_datasets as tfds

    options = _options(config)
    builder = make_builder(config.name, _data_dir(config, options))
    features = builder.info.features
    mapping = key_map(builder.name, features.get_tensor_info(), options)
    label_names: dict[str, tuple[str, ...]] = {}
    for path, feature in _walk(features):
        inner = feature.feature if isinstance(feature, tfds.features.Sequence) else feature
        if path in mapping and isinstance(inner, tfds.features.ClassLabel):
            label_names[mapping[path]] = tuple(inner.names)
    image_path = next((p for p, k in mapping.items() if k == "image"), None)
    image_shape = tuple(dict(_flat(features.get_tensor_info()))[image_path].shape) if image_path else None
    class_names = label_names.get("label")
    return SourceInfo(
        name=config.name,
        image_shape=image_shape,
        feature_keys=tuple(mapping.values()),
        num_classes=len(class_names) if class_names is not None else None,
        class_names=class_names,
        label_names=label_names,
        split_sizes=_split_sizes(builder),
    )
