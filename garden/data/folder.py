"""`folder`: datasets users download themselves (iLab-20M, NYUv2, UT-Zappos50k, ...).

A root folder holds the images and one index file, `labels.csv` (or `labels.json`), with one
row per image: the image path relative to the root, its split, and label columns::

    root/
      labels.csv            image,split,label,azimuth,segmentation,depth
      images/0001.png       images/0001.png,train,car,3,seg/0001.png,depth/0001.png
      seg/0001.png          ...
      depth/0001.png

- Label cells are integers (kept as int64), numbers (float32) or names (mapped to ids in the
  order of `data.options.class_names[column]`, else sorted). An empty cell gives -1 (NaN for
  float columns): a missing label.
- Columns whose example key is `segmentation`, `depth`, `normals`, `mask` or `instance_map` name
  dense label files (relative paths): PNG (8- or 16-bit) or `.npy`. 16-bit depth PNGs are scaled by
  `data.options.depth_scale` (metres per unit, default 0.001 = millimetres); PNG normals are
  mapped from [0, max] to [-1, 1]; `.npy` files hold the values as they are.
- `labels.json` is a list of row objects, or `{"examples": [...], "class_names": {...}}`.

Images are decoded with `tf.io` inside a parallel `tf.data` map; `.npy` files with `np.load`
through `tf.numpy_function`. Every file named by the index is checked to exist when the index is
read (`data.options.check_files`), so a missing file fails at once with its path.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import os
from typing import Any, Literal

import numpy as np
import tensorflow as tf
from pydantic import BaseModel, ConfigDict, Field

from garden.data.config import DataConfig
from garden.data.errors import DataError
from garden.data.sources import SourceInfo, select_split, validate_options
from garden.errors import did_you_mean

NAME = "folder"
INDEX_FILES = ("labels.csv", "labels.json")
DENSE_KEYS = {"segmentation": tf.int32, "depth": tf.float32, "normals": tf.float32, "mask": tf.uint8,
              "instance_map": tf.int32}
DENSE_EXTENSIONS = (".png", ".npy")


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    root: str | None = Field(None, description="the dataset folder (default data.data_dir)")
    index: str | None = Field(None, description="index file relative to root (default labels.csv, else labels.json)")
    image_column: str = Field("image", description="column with the image path relative to root")
    split_column: str = Field("split", description="column with the split name")
    label_columns: list[str] | None = Field(None, description="label columns to keep (default: all others)")
    class_names: dict[str, list[str]] = Field(default_factory=dict, description="column -> names in id order")
    rename: dict[str, str] = Field(default_factory=dict, description="column -> example key")
    channels: Literal[1, 3] = Field(3, description="decode images to this many channels")
    depth_scale: float = Field(0.001, gt=0, description="metres per unit of 16-bit depth PNGs")
    check_files: bool = Field(True, description="check that every listed file exists when reading the index")


class _Column:
    """One kept column: its example key and values (numbers) or absolute file paths (dense)."""

    def __init__(self, name: str, key: str, values: np.ndarray, names: tuple[str, ...] | None = None,
                 file_kind: str | None = None, png_depth: int = 8):
        self.name, self.key, self.values, self.names = name, key, values, names
        self.file_kind, self.png_depth = file_kind, png_depth  # file_kind: ".png" | ".npy" for dense


class _Index:
    def __init__(self, path: str, images: np.ndarray, splits: np.ndarray, columns: list[_Column]):
        self.path, self.images, self.splits, self.columns = path, images, splits, columns
        self.split_sizes = {name: int((splits == name).sum()) for name in dict.fromkeys(splits.tolist())}


def _options(config: DataConfig) -> Options:
    return validate_options(Options, config.options, NAME)


def _root(config: DataConfig, options: Options) -> str:
    root = options.root or config.data_dir
    if not root:
        raise DataError("the folder source needs data.options.root (or data.data_dir): the folder holding "
                        "labels.csv / labels.json and the images")
    root = os.path.expanduser(root)
    if not os.path.isdir(root):
        raise DataError(f"folder source root {root!r} does not exist or is not a folder; expected a folder holding "
                        "labels.csv (or labels.json) and the images")
    return root


def _index_path(root: str, options: Options) -> str:
    if options.index:
        path = os.path.join(root, options.index)
        if not os.path.isfile(path):
            raise DataError(f"folder source index {path!r} (data.options.index) does not exist")
        return path
    for name in INDEX_FILES:
        path = os.path.join(root, name)
        if os.path.isfile(path):
            return path
    raise DataError(f"folder source root {root!r} has no labels.csv or labels.json; expected one row per image "
                    "with columns image, split and the labels (or set data.options.index)")


def _read_rows(path: str) -> tuple[list[str], list[dict[str, Any]], dict[str, list[str]]]:
    """(columns, rows, class names from the file) of a labels.csv / labels.json."""
    try:
        if path.endswith(".json"):
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            file_names: dict[str, list[str]] = {}
            if isinstance(data, dict):
                file_names = {str(k): [str(n) for n in v] for k, v in dict(data.get("class_names", {})).items()}
                data = data.get("examples")
            if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
                raise DataError(f"folder source index {path!r} must be a list of row objects or "
                                '{"examples": [...], "class_names": {...}}')
            columns = list(dict.fromkeys(k for row in data for k in row))
            return columns, data, file_names
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            raw_rows = list(reader)
            columns = [c.strip() for c in (reader.fieldnames or [])]
        for i, row in enumerate(raw_rows):
            if None in row:
                raise DataError(f"folder source index {path!r} {_where(path, i)} has more cells than the header's "
                                f"{len(columns)} columns")
        return columns, [{k.strip(): v for k, v in row.items()} for row in raw_rows], {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as e:
        raise DataError(f"cannot read folder source index {path!r}: {' '.join(str(e).split())}") from None


def _where(path: str, i: int) -> str:
    """Where row `i` (0-based) is in the index file: a CSV line (header is line 1) or a JSON entry."""
    return f"entry {i + 1}" if path.endswith(".json") else f"line {i + 2}"


def _cell(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _parse_labels(path: str, column: str, cells: list[str], names: list[str] | None):
    """(values, class names or None) for a label column."""
    present = [c for c in cells if c != ""]
    if names is None:
        try:
            ints = [int(c) for c in present]
            values = np.array([int(c) if c != "" else -1 for c in cells], dtype=np.int64)
            top = max(ints) if ints else -1
            return values, tuple(str(i) for i in range(top + 1))
        except ValueError:
            pass
        try:
            [float(c) for c in present]
            return np.array([float(c) if c != "" else math.nan for c in cells], dtype=np.float32), None
        except ValueError:
            names = sorted(set(present))
    lookup = {n: i for i, n in enumerate(names)}
    values = np.full(len(cells), -1, dtype=np.int64)
    for i, c in enumerate(cells):
        if c == "":
            continue
        if c not in lookup:
            raise DataError(f"folder source index {path!r} {_where(path, i)}: {column} {c!r} is not a known class"
                            f"{did_you_mean(c, names)}; valid: {', '.join(names)}")
        values[i] = lookup[c]
    return values, tuple(names)


def _png_bit_depth(path: str) -> int:
    with open(path, "rb") as f:
        head = f.read(25)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or len(head) < 25:
        raise DataError(f"dense label file {path!r} is not a PNG file")
    return int(head[24])


def _dense_column(path: str, root: str, column: str, key: str, cells: list[str], check: bool) -> _Column:
    if any(c == "" for c in cells):
        where = _where(path, cells.index(""))
        raise DataError(f"folder source index {path!r} {where}: empty {column} cell; every row needs a {key} file")
    exts = {os.path.splitext(c)[1].lower() for c in cells}
    if len(exts) != 1 or next(iter(exts)) not in DENSE_EXTENSIONS:
        raise DataError(f"folder source index {path!r}: {column} files have extensions {sorted(exts)}; expected "
                        f"all {' or all '.join(DENSE_EXTENSIONS)}")
    files = np.array([os.path.join(root, c) for c in cells])
    if check:
        _check_exist(path, column, files)
    kind = next(iter(exts))
    depth = _png_bit_depth(files[0]) if kind == ".png" and len(files) else 8
    return _Column(column, key, files, file_kind=kind, png_depth=depth)


def _check_exist(index_path: str, column: str, files: np.ndarray) -> None:
    for i, f in enumerate(files):
        if not os.path.isfile(f):
            raise DataError(f"file {f!r} listed in {index_path!r} ({_where(index_path, i)}, column {column}) "
                            "does not exist")


@functools.lru_cache(maxsize=8)
def _read_index(root: str, index_path: str, _stamp: tuple, options_json: str) -> _Index:
    options = Options.model_validate_json(options_json)
    columns, rows, file_names = _read_rows(index_path)
    if not rows:
        raise DataError(f"folder source index {index_path!r} lists no images")
    for needed, what in ((options.image_column, "image_column"), (options.split_column, "split_column")):
        if needed not in columns:
            raise DataError(f"folder source index {index_path!r} has no column {needed!r} (data.options.{what})"
                            f"{did_you_mean(needed, columns)}; its columns: {', '.join(columns)}")
    others = [c for c in columns if c not in (options.image_column, options.split_column)]
    wanted = options.label_columns if options.label_columns is not None else others
    for name in [*wanted, *options.class_names, *options.rename]:
        if name not in columns:
            raise DataError(f"folder source index {index_path!r} has no column {name!r}{did_you_mean(name, columns)}"
                            f"; its columns: {', '.join(columns)}")
    names = {**file_names, **options.class_names}

    images = np.array([os.path.join(root, _cell(r.get(options.image_column))) for r in rows])
    empty = [i for i, r in enumerate(rows) if _cell(r.get(options.image_column)) == ""]
    if empty:
        raise DataError(f"folder source index {index_path!r} {_where(index_path, empty[0])}: "
                        f"empty {options.image_column} cell")
    if options.check_files:
        _check_exist(index_path, options.image_column, images)
    splits = np.array([_cell(r.get(options.split_column)) for r in rows])
    if (splits == "").any():
        where = _where(index_path, int(np.argmax(splits == "")))
        raise DataError(f"folder source index {index_path!r} {where}: empty {options.split_column} cell")

    kept: list[_Column] = []
    for column in wanted:
        key = options.rename.get(column, column)
        if key == "image" or key in {c.key for c in kept}:
            raise DataError(f"folder source index {index_path!r}: column {column!r} gives the example key {key!r} "
                            "twice or clashes with image; use data.options.rename")
        cells = [_cell(r.get(column)) for r in rows]
        if key in DENSE_KEYS:
            kept.append(_dense_column(index_path, root, column, key, cells, options.check_files))
        else:
            values, class_names = _parse_labels(index_path, column, cells, names.get(column))
            kept.append(_Column(column, key, values, names=class_names))
    return _Index(index_path, images, splits, kept)


def read_index(config: DataConfig) -> _Index:
    """The parsed index of the folder source of `config` (cached per file version and options)."""
    options = _options(config)
    root = _root(config, options)
    path = _index_path(root, options)
    stat = os.stat(path)
    return _read_index(root, path, (stat.st_mtime_ns, stat.st_size), options.model_dump_json())


# ---------------------------------------------------------------------------------------------
# Decoding


def _decode_dense(column: _Column, path: tf.Tensor, options: Options) -> tf.Tensor:
    dtype = DENSE_KEYS[column.key]
    channels = 3 if column.key == "normals" else 1
    if column.file_kind == ".npy":
        def load(p):
            array = np.load(p.decode() if isinstance(p, bytes) else str(p))
            if channels == 1 and array.ndim == 3 and array.shape[-1] == 1:
                array = array[..., 0]
            return array.astype(dtype.as_numpy_dtype)

        value = tf.numpy_function(load, [path], dtype, stateful=False)
    else:
        png_dtype = tf.uint16 if column.png_depth == 16 else tf.uint8
        value = tf.io.decode_png(tf.io.read_file(path), channels=channels, dtype=png_dtype)
        if column.key == "normals":
            top = 65535.0 if png_dtype == tf.uint16 else 255.0
            value = tf.cast(value, tf.float32) / (top / 2.0) - 1.0
        else:
            value = tf.squeeze(value, -1)
            if column.key == "depth" and png_dtype == tf.uint16:
                value = tf.cast(value, tf.float32) * options.depth_scale
            value = tf.cast(value, dtype)
    value.set_shape([None, None, 3] if channels == 3 else [None, None])
    return value


def load(config: DataConfig, split: str) -> tf.data.Dataset:
    options = _options(config)
    index = read_index(config)
    parts = select_split(split, index.split_sizes, NAME)
    rows = np.concatenate([np.flatnonzero(index.splits == name)[start:stop] for name, start, stop in parts])
    slices = {"image": index.images[rows], **{c.key: c.values[rows] for c in index.columns}}
    dense = {c.key: c for c in index.columns if c.file_kind}

    def decode(example):
        image = tf.io.decode_image(tf.io.read_file(example["image"]), channels=options.channels,
                                   expand_animations=False, dtype=tf.uint8)
        image.set_shape([None, None, options.channels])
        out = {"image": image}
        for key, value in example.items():
            if key in dense:
                out[key] = _decode_dense(dense[key], value, options)
            elif key != "image":
                out[key] = value
        return out

    ds = tf.data.Dataset.from_tensor_slices(slices)
    return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def info(config: DataConfig) -> SourceInfo:
    options = _options(config)
    index = read_index(config)
    first = index.images[0]
    try:
        shape = tuple(int(d) for d in tf.io.decode_image(tf.io.read_file(first), channels=options.channels,
                                                         expand_animations=False).shape)
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as e:
        raise DataError(f"cannot decode image {first!r}: {' '.join(str(e.message).split())[:200]}") from None
    label_names = {c.key: c.names for c in index.columns if c.names is not None}
    class_names = label_names.get("label")
    return SourceInfo(
        name=NAME,
        image_shape=shape,
        feature_keys=("image", *(c.key for c in index.columns)),
        num_classes=len(class_names) if class_names is not None else None,
        class_names=class_names,
        label_names=label_names,
        split_sizes=dict(index.split_sizes),
    )
