"""The `data:` section of an experiment config.

Validated before TensorFlow starts. Source-specific `options` are validated by the source
itself (toyworld variants and the folder source have their own pydantic models), so that a
typo in an option fails with the valid option names.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class AugmentConfig(BaseModel):
    """Training-time augmentation, run in tf.data (never in the exported graph)."""

    model_config = ConfigDict(extra="forbid")

    crop_padding: int = Field(0, ge=0, description="pad by this many pixels, then random-crop back")
    crop_size: tuple[int, int] | None = Field(
        None, description="random crop to (height, width) in training, centre crop in evaluation")
    horizontal_flip: bool = Field(False, description="dense-aware left-right flip")
    scale_jitter: tuple[float, float] | None = Field(
        None, description="random resize by a factor in [low, high], then crop/pad back")
    color_jitter: float = Field(0.0, ge=0.0, le=1.0, description="brightness/contrast/saturation strength")

    @field_validator("crop_size")
    @classmethod
    def _positive_size(cls, value):
        if value is not None and min(value) < 1:
            raise ValueError(f"sizes must be >= 1, got {list(value)}")
        return value

    @field_validator("scale_jitter")
    @classmethod
    def _scale_range(cls, value):
        if value is not None and not 0.0 < value[0] <= value[1]:
            raise ValueError(f"need 0 < low <= high, got {list(value)}")
        return value


class DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., description="toyworld:<variant> | fashion_mnist | tfds:<name>[/<config>] | folder")
    options: dict[str, Any] = Field(default_factory=dict, description="source options (variant options, folder paths)")
    data_dir: str | None = Field(None, description="cache/data folder; default $GARDEN_DATA_DIR or ~/.cache/garden")
    train_split: str = "train"
    validation_split: str = "validation"
    test_split: str = "test"
    label_keys: list[str] | None = Field(None, description="label keys to keep; None keeps all")
    batch_size: int = Field(64, ge=1, description="global batch size (split over replicas)")
    shuffle_buffer: int = Field(10_000, ge=0)
    cache: bool = True
    deterministic: bool = Field(True, description="keep element order fixed for a given seed")
    max_boxes: int = Field(16, ge=1, description="boxes are padded to this many per image")
    image_size: tuple[int, int] | None = Field(None, description="resize images (and dense labels) to (height, width)")
    channels: int | None = Field(None, description="force 1 or 3 image channels")
    augment: AugmentConfig = Field(default_factory=AugmentConfig)

    @field_validator("image_size")
    @classmethod
    def _positive_image_size(cls, value):
        if value is not None and min(value) < 1:
            raise ValueError(f"sizes must be >= 1, got {list(value)}")
        return value

    @field_validator("channels")
    @classmethod
    def _channels(cls, value):
        if value not in (None, 1, 3):
            raise ValueError(f"must be 1 or 3 (or null), got {value}")
        return value


def default_data_dir() -> str:
    """$GARDEN_DATA_DIR, else the user's cache folder."""
    env = os.environ.get("GARDEN_DATA_DIR")
    if env:
        return env
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "garden")


def resolve_data_dir(config: DataConfig) -> str:
    return os.path.expanduser(config.data_dir) if config.data_dir else default_data_dir()
