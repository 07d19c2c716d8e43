"""Fashion-MNIST: 70,000 grey 28x28 clothing images in 10 classes (train 60,000, test 10,000).

Where the data comes from, first found wins:

1. `data.options.path`: a folder with the four IDX files (an error if they are not there);
2. `data.data_dir` (default `$GARDEN_DATA_DIR` or `~/.cache/garden`): the files directly in it,
   or in its `fashion_mnist/` or `fashion-mnist/` subfolder;
3. `/usr/share/datasets/fashion-mnist`, installed by the Debian package `dataset-fashion-mnist`;
4. TensorFlow Datasets (`fashion_mnist`, in `data.data_dir`'s TFDS layout or TFDS's default
   folder), downloading it unless `data.options.download` is false.

The IDX files are `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`
and `t10k-labels-idx1-ubyte`, each gzipped (`.gz`, as the Debian package and the original site
ship them) or not. The splits are `train` and `test`; there is no validation split: use e.g.
`train_split: train[:90%]`, `validation_split: train[90%:]`.

Examples: `image` uint8 `[28, 28, 1]`, `label` int64.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import tensorflow as tf
from pydantic import BaseModel, ConfigDict, Field

from garden.data.config import DataConfig
from garden.data.errors import DataError
from garden.data.idx import read_idx
from garden.data.sources import SourceInfo, one_line, select_split, validate_options

NAME = "fashion_mnist"
CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
SPLIT_SIZES = {"train": 60_000, "test": 10_000}
IMAGE_SHAPE = (28, 28, 1)
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SPLIT_HINT = "Fashion-MNIST has no validation split: use e.g. train[:90%] and train[90%:]"


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(None, description="folder holding the four IDX files (.gz or not)")
    download: bool = Field(True, description="let TFDS download the data when no IDX files are found")


def _options(config: DataConfig) -> Options:
    return validate_options(Options, config.options, NAME)


def _find_file(folder: str, stem: str) -> str | None:
    for name in (stem + ".gz", stem):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    return None


def _has_files(folder: str) -> bool:
    return all(_find_file(folder, stem) for pair in FILES.values() for stem in pair)


def _candidate_folders(config: DataConfig) -> list[str]:
    from garden.data.config import resolve_data_dir

    base = resolve_data_dir(config)
    return [base, os.path.join(base, "fashion_mnist"), os.path.join(base, "fashion-mnist"), DEBIAN_DIR]


def find_idx_folder(config: DataConfig) -> str | None:
    """The folder whose IDX files will be read, or None (then TFDS is used)."""
    options = _options(config)
    if options.path is not None:
        path = os.path.expanduser(options.path)
        if not os.path.isdir(path):
            raise DataError(f"data.options.path {path!r} for fashion_mnist is not a folder; expected one holding "
                            f"{', '.join(s + '.gz' for pair in FILES.values() for s in pair)}")
        missing = [s + "[.gz]" for pair in FILES.values() for s in pair if not _find_file(path, s)]
        if missing:
            raise DataError(f"data.options.path {path!r} for fashion_mnist lacks {', '.join(missing)}")
        return path
    for folder in _candidate_folders(config):
        if os.path.isdir(folder) and _has_files(folder):
            return folder
    return None


@functools.lru_cache(maxsize=4)
def _read_split_cached(images_path: str, labels_path: str, _stamp: tuple) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_path, expected_ndim=3)
    labels = read_idx(labels_path, expected_ndim=1)
    if images.shape[1:] != IMAGE_SHAPE[:2] or images.dtype != np.uint8:
        raise DataError(f"IDX file {images_path!r} holds {images.dtype} images of shape {list(images.shape[1:])}; "
                        f"expected uint8 {list(IMAGE_SHAPE[:2])}")
    if labels.shape[0] != images.shape[0]:
        raise DataError(f"IDX file {labels_path!r} has {labels.shape[0]} labels but {images_path!r} has "
                        f"{images.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
        raise DataError(f"IDX file {labels_path!r} has labels outside 0..{len(CLASS_NAMES) - 1}")
    return images, labels.astype(np.int64)


def read_split(folder: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28], labels int64 [N]) of the base split `train` or `test`."""
    images_path, labels_path = (_find_file(folder, stem) for stem in FILES[split])
    stamp = tuple((os.stat(p).st_mtime_ns, os.stat(p).st_size) for p in (images_path, labels_path))
    return _read_split_cached(images_path, labels_path, stamp)


def load(config: DataConfig, split: str) -> tf.data.Dataset:
    options = _options(config)
    folder = find_idx_folder(config)
    if folder is None:
        return _load_tfds(config, options, split)
    sizes = {name: int(read_split(folder, name)[1].shape[0]) for name in FILES}
    parts = select_split(split, sizes, NAME, hint=SPLIT_HINT)
    images = np.concatenate([read_split(folder, name)[0][start:stop] for name, start, stop in parts])
    labels = np.concatenate([read_split(folder, name)[1][start:stop] for name, start, stop in parts])
    return tf.data.Dataset.from_tensor_slices({"image": images[..., None], "label": labels})


def _tfds_data_dir(config: DataConfig) -> str | None:
    return os.path.expanduser(config.data_dir) if config.data_dir else None


def _not_found_message(config: DataConfig, reason: str) -> str:
    from garden.data.config import resolve_data_dir

    return (f"Fashion-MNIST not found ({reason}): install the Debian package dataset-fashion-mnist "
            f"(apt-get install dataset-fashion-mnist) or put the IDX files in {resolve_data_dir(config)} "
            "(or data.options.path), or let TFDS download it (data.options.download: true, needs network)")


def _load_tfds(config: DataConfig, options: Options, split: str) -> tf.data.Dataset:
    import tensorflow_datasets as tfds

    from garden.data import tfds_source

    select_split(split, SPLIT_SIZES, NAME, hint=SPLIT_HINT)  # same split names and errors as the IDX path
    builder = tfds.builder(NAME, data_dir=_tfds_data_dir(config))
    try:
        ds = builder.as_dataset(split=split)
    except AssertionError:  # TFDS: "could not find data in ..."
        if not options.download:
            raise DataError(_not_found_message(config, f"no TFDS data in {builder.data_dir_root} and "
                                                       "data.options.download is false")) from None
        try:
            builder.download_and_prepare()
        except Exception as e:  # noqa: BLE001 - any download failure gets the same advice
            raise DataError(_not_found_message(config, f"the TFDS download failed: {one_line(e)[:200]}")) from None
        ds = builder.as_dataset(split=split)
    return tfds_source.to_examples(ds, builder, NAME)


def info(config: DataConfig) -> SourceInfo:
    _options(config)
    return SourceInfo(
        name=NAME,
        image_shape=IMAGE_SHAPE,
        feature_keys=("image", "label"),
        num_classes=len(CLASS_NAMES),
        class_names=CLASS_NAMES,
        label_names={"label": CLASS_NAMES},
        split_sizes=dict(SPLIT_SIZES),
    )
