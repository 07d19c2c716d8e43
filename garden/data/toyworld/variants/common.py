"""What every toyworld variant shares: options base, the Variant record, seeding, features.

Determinism: an example is a pure function of (options, split, index). Each example draws
from PCG64 generators seeded with `[seed, variant stream, split id, index, purpose]`
(PCG64 and its `uniform`/`integers`/`normal` are bit-exact across machines). Purpose
`CONTENT` drives everything that a label describes (object, viewpoint, layout); `STYLE`
drives the look of the render (backgrounds, surface textures, camera offset, noise), so the
clean and the photo rendering of the same (seed, split, index) show the same labelled
content: paired domains for seed 003 (seed_003.md 9.2).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

import numpy as np
import pydantic
import tensorflow_datasets as tfds
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from garden.data.errors import DataError
from garden.errors import unknown_choice

# Bump GENERATOR_VERSION whenever `example()` may return different content for unchanged
# options: any change in toys.py, the variants, render.py, effects.py or geometry.py that
# moves a pixel or a label, or a change in the order of random draws. The TFDS cache key
# includes it, so a bump regenerates the caches; a missing bump silently serves stale data.
# Pure refactors, docs and new options whose default keeps the old output need no bump.
GENERATOR_VERSION = "1.1.0"

SPLITS: tuple[str, ...] = ("train", "validation", "test")
SPLIT_IDS: dict[str, int] = {name: i for i, name in enumerate(SPLITS)}
CONTENT, STYLE = 0, 1
Style = Literal["clean", "photo"]


def _square(value: Any) -> Any:
    """Lets `image_size: 64` mean (64, 64)."""
    return (value, value) if isinstance(value, int) and not isinstance(value, bool) else value


_Side = Annotated[int, Field(ge=8, le=1024)]
ImageSize = Annotated[tuple[_Side, _Side], BeforeValidator(_square)]


class BaseOptions(BaseModel):
    """Options every variant has. Variants redeclare the split sizes with their defaults.

    Style per split (seed 003 trains on clean renders and tests on photo-like ones):
    `style` applies to every split, and `test_style`, when set, replaces it for the test
    split only. Validation keeps `style` on purpose: model selection must not see the
    target domain.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(0, ge=0, le=2**31 - 1, description="dataset seed")
    style: Style = Field("clean", description="clean: flat, plain, centred, noiseless; "
                         "photo: cluttered backgrounds, off-centre, noise, blur, colour shift, JPEG")
    test_style: Style | None = Field(None, description="style of the test split (default: style)")
    num_train: int = Field(1000, ge=0, le=1_000_000)
    num_validation: int = Field(100, ge=0, le=1_000_000)
    num_test: int = Field(200, ge=0, le=1_000_000)


def style_for(options: BaseOptions, split: str) -> Style:
    return options.test_style if split == "test" and options.test_style else options.style


def split_sizes(options: BaseOptions) -> dict[str, int]:
    return {"train": options.num_train, "validation": options.num_validation, "test": options.num_test}


def example_rng(options: BaseOptions, stream: int, split: str, index: int, purpose: int) -> np.random.Generator:
    """The generator of one example's `purpose` (CONTENT or STYLE)."""
    return np.random.default_rng([options.seed, stream, SPLIT_IDS[split], index, purpose])


# --------------------------------------------------------------------------------------
# The Variant record.


def parse_options(name: str, options_cls: type[BaseOptions], raw: Any) -> BaseOptions:
    """`raw` (None, a mapping or an Options) as validated Options, else a one-line DataError."""
    if isinstance(raw, options_cls):
        return raw
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise DataError(f"toyworld:{name} options must be a mapping, got {type(raw).__name__}")
    valid = list(options_cls.model_fields)
    unknown = [key for key in raw if key not in valid]
    if unknown:
        raise DataError(unknown_choice(f"toyworld:{name} option", unknown[0], valid))
    try:
        return options_cls(**raw)
    except pydantic.ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first.get("loc", ())) or "options"
        raise DataError(f"bad toyworld:{name} option {key}={first.get('input')!r}: {first['msg']}") from None


@dataclasses.dataclass(frozen=True)
class Variant:
    """A named dataset variant. The methods accept Options or a plain mapping of options."""

    name: str
    description: str
    Options: type[BaseOptions]
    make_example: Callable[[Any, str, int], dict[str, np.ndarray]]
    make_features: Callable[[Any], tfds.features.FeaturesDict]
    make_label_names: Callable[[Any], dict[str, list[str]]]
    make_split_sizes: Callable[[Any], dict[str, int]] = split_sizes

    def parse_options(self, raw: Any = None) -> BaseOptions:
        return parse_options(self.name, self.Options, raw)

    def split_sizes(self, options: Any = None) -> dict[str, int]:
        return self.make_split_sizes(self.parse_options(options))

    def features(self, options: Any = None) -> tfds.features.FeaturesDict:
        return self.make_features(self.parse_options(options))

    def label_names(self, options: Any = None) -> dict[str, list[str]]:
        return self.make_label_names(self.parse_options(options))

    def example(self, options: Any, split: str, index: int) -> dict[str, np.ndarray]:
        opts = self.parse_options(options)
        if split not in SPLIT_IDS:
            raise DataError(unknown_choice(f"split of toyworld:{self.name}", split, SPLITS))
        size = self.make_split_sizes(opts)[split]
        if not 0 <= int(index) < size:
            raise DataError(f"toyworld:{self.name} {split} index {index} out of range [0, {size})")
        return self.make_example(opts, split, int(index))


# --------------------------------------------------------------------------------------
# Feature helpers: what TFDS encodes reliably (checked by the tests' encode round trip).

F = tfds.features


def image_feature(height: int, width: int) -> F.Image:
    return F.Image(shape=(height, width, 3), dtype=np.uint8)  # PNG


def dense_feature(shape: tuple, dtype) -> F.Tensor:
    """Dense maps are zlib-compressed raw tensors (segmentation maps compress very well)."""
    return F.Tensor(shape=tuple(shape), dtype=dtype, encoding=F.Encoding.ZLIB)


def class_feature(names: list[str]) -> F.ClassLabel:
    """int64 [] on decoding; the names travel with the dataset info."""
    return F.ClassLabel(names=list(names))


def scalar_feature(dtype) -> F.Tensor:
    return F.Tensor(shape=(), dtype=dtype)


def int64(value) -> np.ndarray:
    return np.asarray(value, dtype=np.int64)


def float32(value) -> np.ndarray:
    return np.asarray(value, dtype=np.float32)
