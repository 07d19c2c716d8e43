"""The toy catalogue (garden/data/toyworld/toys.py): determinism, variety, size, placement."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from garden.data.toyworld import toys
from garden.data.toyworld.scene import FIRST_THING_CLASS

# sha256 of the rounded parameters of a few toys. Changing the catalogue changes every dataset:
# update this together with variants.GENERATOR_VERSION.
GOLDEN_TOYS_SHA256 = "47610967717e0ef8c3ce59f6cea0f3af78dbf7cc02559ebbb2ea18beb8023b9d"


def _params(primitives) -> list:
    """Toy parameters rounded to 1e-6, so that a last-ulp difference of sin/cos between CPUs
    cannot flip the hash."""
    return [[p.kind, *(round(float(v), 6) for v in (*p.center, *p.size)),
             *(round(float(v), 6) for row in p.rotation for v in row),
             *(round(float(v), 6) for v in (*p.material.color, *p.material.texture_color,
                                            p.material.texture_scale, p.material.specular)),
             p.material.texture] for p in primitives]


def test_catalogue_names_and_class_ids():
    assert len(toys.CATEGORIES) >= 10
    assert len(set(toys.CATEGORIES)) == len(toys.CATEGORIES)
    assert toys.VEHICLES <= set(toys.CATEGORIES)
    assert [toys.class_id(c) for c in range(3)] == [FIRST_THING_CLASS, FIRST_THING_CLASS + 1, FIRST_THING_CLASS + 2]


@pytest.mark.parametrize("category", range(len(toys.CATEGORIES)))
def test_toys_are_deterministic_small_and_standing(category):
    shapes = set()
    for instance in range(12):
        toy = toys.build_toy(category, instance)
        assert toy == toys.build_toy(category, instance)
        assert 2 <= len(toy) <= 5
        lo, hi = toys.toy_bounds(toy)
        assert abs(lo[2]) < 1e-9, f"{toys.CATEGORIES[category]} {instance} does not stand on z = 0"
        np.testing.assert_allclose((lo[:2] + hi[:2]) / 2, 0.0, atol=1e-9)  # footprint centred
        corners = np.concatenate([toys.primitive_corners(p) for p in toy])
        radius = np.sqrt(((corners - [0.0, 0.0, hi[2] / 2]) ** 2).sum(axis=1)).max()
        assert radius < 0.62, f"{toys.CATEGORIES[category]} {instance} is too big ({radius:.2f} m)"
        assert all(min(p.size) > 0 for p in toy)
        shapes.add(json.dumps(_params(toy)))
    assert len(shapes) == 12, "instances must differ"


def test_vehicles_are_elongated():
    """Length over width well above 1 makes the azimuth change the silhouette a lot."""
    for name in ("car", "truck", "bus", "train", "boat"):
        lo, hi = toys.toy_bounds(toys.build_toy(toys.CATEGORIES.index(name), 0))
        assert (hi[0] - lo[0]) > 1.8 * (hi[1] - lo[1]), name


def test_texture_palette_changes_only_textures():
    for category in range(len(toys.CATEGORIES)):
        textured = toys.build_toy(category, 3)
        plain = toys.build_toy(category, 3, texture_palette=("solid",))
        assert all(p.material.texture == "solid" for p in plain)
        for a, b in zip(textured, plain):
            assert (a.kind, a.center, a.size, a.rotation, a.material.color) == \
                   (b.kind, b.center, b.size, b.rotation, b.material.color)
    textures = {p.material.texture for c in range(len(toys.CATEGORIES)) for i in range(10)
                for p in toys.build_toy(c, i)}
    assert textures == set(toys.TEXTURES)


def test_scale_toy_keeps_it_on_the_ground():
    toy = toys.build_toy(0, 0)
    big = toys.scale_toy(toy, 2.0)
    lo, hi = toys.toy_bounds(big)
    lo0, hi0 = toys.toy_bounds(toy)
    np.testing.assert_allclose(hi - lo, 2 * (hi0 - lo0))
    assert abs(lo[2]) < 1e-9
    assert toys.footprint_radius(big) == pytest.approx(2 * toys.footprint_radius(toy))
    assert big[0].material.texture_scale == pytest.approx(2 * toy[0].material.texture_scale)


def test_bad_arguments():
    with pytest.raises(ValueError, match="category"):
        toys.build_toy(len(toys.CATEGORIES), 0)
    with pytest.raises(ValueError, match="instance"):
        toys.build_toy(0, -1)
    with pytest.raises(ValueError, match="texture_palette"):
        toys.build_toy(0, 0, texture_palette=("dots",))


def test_golden_parameters():
    payload = json.dumps([_params(toys.build_toy(c, i)) for c in range(len(toys.CATEGORIES)) for i in (0, 7)])
    assert hashlib.sha256(payload.encode()).hexdigest() == GOLDEN_TOYS_SHA256


def _local_to_object(p, point) -> np.ndarray:
    """Where the local point of primitive p sits in the object frame: R @ point + center, the
    convention of scene.Primitive that render.py and toys.primitive_corners share."""
    return np.asarray(p.rotation, dtype=np.float64) @ np.asarray(point, dtype=np.float64) + np.asarray(p.center)


def test_lamp_shade_hangs_from_the_arm_tip():
    lamp = toys.CATEGORIES.index("lamp")
    for instance in range(20):
        base, lower, upper, shade = toys.build_toy(lamp, instance)
        assert (lower.kind, upper.kind, shade.kind) == ("capsule", "capsule", "cone")
        # The arms chain up: the lower arm's top end is the upper arm's bottom end.
        elbow_low = _local_to_object(lower, (0.0, 0.0, lower.size[2]))
        elbow_up = _local_to_object(upper, (0.0, 0.0, -upper.size[2]))
        assert np.linalg.norm(elbow_low - elbow_up) < 1e-3, instance
        tip = _local_to_object(upper, (0.0, 0.0, upper.size[2]))  # the far end of the upper arm
        apex = _local_to_object(shade, (0.0, 0.0, shade.size[2]))  # where the shade is attached
        assert np.linalg.norm(apex - tip) < 0.01, (instance, apex, tip)
        # The shade opens forward-down: its base lies below and in front of the apex.
        assert shade.center[2] < apex[2] and shade.center[0] > apex[0], instance
