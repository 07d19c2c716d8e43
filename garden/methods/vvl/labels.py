"""Variation class ids from the data's label keys.

A variation may combine several keys: the paper's pose class is one of "5 elevations from
camera and 6 azimuths from rotation" = 30 classes (specs/seeds_000_001.md A.4, iLab-2M). Keys
combine in mixed radix, first key most significant, so [azimuth, elevation] gives
azimuth * n_elevation + elevation: the same pose id as toyworld:objects (docs/data.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from keras import ops

from garden.errors import ConfigError


def variation_sizes(variations: Mapping[str, Sequence[str]], label_names: Mapping[str, Sequence[str]],
                    given: Mapping[str, int] | None = None) -> dict[str, list[int]]:
    """{variation: [size of each of its keys]}: from `given` (task.variation_sizes), else the
    data's label names. Raises ConfigError naming the key whose size is unknown."""
    given = dict(given or {})
    out = {}
    for name, keys in variations.items():
        if not keys:
            raise ConfigError(f"task.variations.{name}: needs at least one label key")
        sizes = []
        for key in keys:
            if key in given:
                size = int(given[key])
            elif key in label_names:
                size = len(label_names[key])
            else:
                known = sorted(label_names)
                raise ConfigError(f"task.variations.{name}: the number of classes of label key {key!r} is unknown; "
                                  f"set task.variation_sizes.{key} (keys with class names: "
                                  f"{', '.join(known) or 'none'})")
            if size < 1:
                raise ConfigError(f"task.variation_sizes.{key}: must be >= 1, got {size}")
            sizes.append(size)
        out[name] = sizes
    return out


def check_heads(model_variations: Mapping[str, int], sizes: Mapping[str, Sequence[int]],
                variations: Mapping[str, Sequence[str]]) -> None:
    """The model's heads and the task's variations agree (names and class counts)."""
    if set(model_variations) != set(sizes):
        raise ConfigError(f"task.variations {sorted(sizes)} must name the model's variation heads "
                          f"(model.variations: {sorted(model_variations)})")
    for name, key_sizes in sizes.items():
        total = math.prod(key_sizes)
        if total != model_variations[name]:
            product = " x ".join(str(s) for s in key_sizes)
            raise ConfigError(f"model.variations.{name}: {model_variations[name]} classes, but task.variations."
                              f"{name} {list(variations[name])} has {product} = {total}; make them equal")


def combine(labels: Mapping, keys: Sequence[str], sizes: Sequence[int]):
    """Mixed-radix class id of `keys` (int32 [B]); first key most significant."""
    code = None
    for key, size in zip(keys, sizes):
        value = ops.reshape(ops.cast(labels[key], "int32"), (-1,))
        code = value if code is None else code * size + value
    return code
