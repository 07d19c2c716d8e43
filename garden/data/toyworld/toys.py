"""The toy catalogue: composite toys built from 2-5 analytic primitives.

In the spirit of iLab-20M's toy vehicles (seeds_000_001.md A.7 "mini-iLab": vehicle-like
categories from box bodies, cylinder wheels, a cabin, wings, a turret; category-specific
layouts with per-instance dimensions, colours and textures). Shapes are elongated and
front/back asymmetric on purpose, so that the viewpoint changes the appearance a lot
(A.7 "Making the auxiliary task matter").

Object frame: x points to the toy's front, y to its left, z up; the toy stands on z = 0 and
its footprint is centred on the origin; every toy fits in a sphere of about 1 m diameter.
`build_toy(category, instance)` is a pure function of its arguments: the same (category,
instance) is the same toy on every machine (PCG64 streams, no global state).
"""

from __future__ import annotations

import colorsys
import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from garden.data.toyworld.scene import FIRST_THING_CLASS, Material, Primitive, TextureKind

CATEGORIES: tuple[str, ...] = (
    "car", "truck", "tank", "bus", "plane", "boat", "train", "tower", "chair", "lamp")
# Categories that drive around in the video variant; towers, chairs and lamps stay put.
VEHICLES: frozenset[str] = frozenset({"car", "truck", "tank", "bus", "plane", "boat", "train"})
TEXTURES: tuple[TextureKind, ...] = ("solid", "stripes", "checker", "noise")

# Fixed salt of the catalogue's random streams: changing it changes every toy (and so
# requires a GENERATOR_VERSION bump in variants).
_CATALOGUE_SALT = 0x70E5
_GEOMETRY, _COLOUR, _TEXTURE = 0, 1, 2

Vec = tuple[float, float, float]
Rotation = tuple[Vec, Vec, Vec]
IDENTITY: Rotation = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
# Local z (the axis of cylinders, cones and capsules) turned onto object x / object y.
ALONG_X: Rotation = ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (-1.0, 0.0, 0.0))
ALONG_Y: Rotation = ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, -1.0, 0.0))

_WHEEL = Material(color=(0.12, 0.12, 0.13), specular=0.05)
_GLASS = Material(color=(0.16, 0.22, 0.3), specular=0.6)


def class_id(category: int) -> int:
    """The semantic class of a category in segmentation maps and box labels."""
    return FIRST_THING_CLASS + int(category)


def tilt_y(angle_rad: float) -> Rotation:
    """Rotation about object y: local z leans towards +x by `angle_rad`."""
    c, s = float(np.cos(angle_rad)), float(np.sin(angle_rad))
    return ((c, 0.0, s), (0.0, 1.0, 0.0), (-s, 0.0, c))


# --------------------------------------------------------------------------------------
# Per-instance appearance.


@dataclasses.dataclass(frozen=True)
class _Look:
    body: Material  # the big, possibly textured, part
    trim: Material  # a second solid colour for cabins, turrets, sails


def _hsv(h: float, s: float, v: float) -> Vec:
    return tuple(float(c) for c in colorsys.hsv_to_rgb(h % 1.0, s, v))


def _look(category: int, instance: int, texture_palette: Sequence[TextureKind]) -> _Look:
    """Colours and texture of one instance; separate streams so the palette only changes
    the texture, never the colours or the proportions."""
    colour = np.random.default_rng([_CATALOGUE_SALT, category, instance, _COLOUR])
    hue = colour.uniform()
    body_rgb = _hsv(hue, colour.uniform(0.45, 0.9), colour.uniform(0.55, 0.95))
    # Trim: a shifted hue, so that instances differ by colour pairs as well.
    trim_rgb = _hsv(hue + colour.uniform(0.25, 0.75), colour.uniform(0.2, 0.7), colour.uniform(0.6, 1.0))
    pattern_rgb = _hsv(hue + colour.uniform(-0.1, 0.1), colour.uniform(0.1, 0.5), colour.uniform(0.15, 0.45))
    scale = colour.uniform(0.05, 0.14)
    texture_rng = np.random.default_rng([_CATALOGUE_SALT, category, instance, _TEXTURE])
    texture = texture_palette[int(texture_rng.integers(len(texture_palette)))]
    body = Material(color=body_rgb, texture=texture, texture_color=pattern_rgb, texture_scale=scale)
    return _Look(body=body, trim=Material(color=trim_rgb))


def _prim(kind, center, size, material, rotation: Rotation = IDENTITY) -> Primitive:
    return Primitive(kind=kind, center=tuple(float(v) for v in center),
                     size=tuple(float(v) for v in size), material=material, rotation=rotation)


def _axle(x: float, radius: float, half_width: float) -> Primitive:
    """A pair of wheels as one cylinder across the body (keeps toys within 5 primitives)."""
    return _prim("cylinder", (x, 0.0, radius), (radius, radius, half_width), _WHEEL, ALONG_Y)


# --------------------------------------------------------------------------------------
# Category layouts. Each takes the geometry stream and the instance look; sizes in metres.


def _car(g: np.random.Generator, look: _Look) -> list[Primitive]:
    length, width = g.uniform(0.75, 0.95), g.uniform(0.34, 0.44)
    body_h, wheel_r = g.uniform(0.13, 0.19), g.uniform(0.085, 0.115)
    bottom = 0.7 * wheel_r
    cabin_len, cabin_h = g.uniform(0.4, 0.55) * length, g.uniform(0.11, 0.16)
    cabin_x = g.uniform(-0.16, -0.02) * length  # set back: the bonnet is longer than the boot
    axle_x = length / 2 - 1.3 * wheel_r
    return [
        _prim("box", (0, 0, bottom + body_h / 2), (length / 2, width / 2, body_h / 2), look.body),
        _prim("box", (cabin_x, 0, bottom + body_h + cabin_h / 2),
              (cabin_len / 2, 0.42 * width, cabin_h / 2), look.trim),
        _axle(axle_x, wheel_r, width / 2 + 0.015),
        _axle(-axle_x, wheel_r, width / 2 + 0.015),
    ]


def _truck(g: np.random.Generator, look: _Look) -> list[Primitive]:
    length, width, wheel_r = g.uniform(0.85, 1.0), g.uniform(0.32, 0.4), g.uniform(0.07, 0.095)
    bottom = 0.8 * wheel_r
    cab_len, cab_h = g.uniform(0.2, 0.28) * length, g.uniform(0.26, 0.34)
    cargo_len, cargo_h = length - cab_len - 0.03, g.uniform(0.34, 0.44)
    front = length / 2
    return [
        _prim("box", (front - cab_len / 2, 0, bottom + cab_h / 2), (cab_len / 2, width / 2, cab_h / 2), look.trim),
        _prim("box", (-front + cargo_len / 2, 0, bottom + cargo_h / 2),
              (cargo_len / 2, width / 2, cargo_h / 2), look.body),
        _axle(front - cab_len / 2, wheel_r, width / 2 + 0.015),
        _axle(-front + 1.3 * wheel_r, wheel_r, width / 2 + 0.015),
        _axle(-front + 3.6 * wheel_r, wheel_r, width / 2 + 0.015),
    ]


def _tank(g: np.random.Generator, look: _Look) -> list[Primitive]:
    length, width, hull_h = g.uniform(0.7, 0.85), g.uniform(0.42, 0.5), g.uniform(0.1, 0.14)
    track_r = g.uniform(0.065, 0.085)
    hull_bottom = 0.9 * track_r
    turret_r, turret_hh = g.uniform(0.13, 0.17), g.uniform(0.04, 0.06)
    turret_x = g.uniform(-0.12, -0.03)
    turret_z = hull_bottom + hull_h + turret_hh
    barrel_hl = g.uniform(0.16, 0.23)
    track_y = width / 2 - 0.6 * track_r
    tracks = [_prim("capsule", (0, side * track_y, track_r), (track_r, track_r, length / 2 - track_r),
                    _WHEEL, ALONG_X) for side in (1, -1)]
    return tracks + [
        _prim("box", (0, 0, hull_bottom + hull_h / 2), (length / 2 - 0.02, width / 2 - 0.3 * track_r, hull_h / 2),
              look.body),
        _prim("cylinder", (turret_x, 0, turret_z), (turret_r, 0.85 * turret_r, turret_hh), look.trim),
        _prim("cylinder", (turret_x + 0.8 * turret_r + barrel_hl, 0, turret_z), (0.024, 0.024, barrel_hl),
              _WHEEL, ALONG_X),
    ]


def _bus(g: np.random.Generator, look: _Look) -> list[Primitive]:
    length, width, height = g.uniform(0.85, 1.0), g.uniform(0.28, 0.34), g.uniform(0.3, 0.38)
    wheel_r = g.uniform(0.065, 0.085)
    bottom = 0.7 * wheel_r
    band_h = g.uniform(0.055, 0.08)
    band_z = bottom + height * g.uniform(0.62, 0.74)
    axle_x = length / 2 - g.uniform(1.5, 2.5) * wheel_r
    return [
        _prim("box", (0, 0, bottom + height / 2), (length / 2, width / 2, height / 2), look.body),
        # The window band stands a few millimetres proud of the body on both sides.
        _prim("box", (0.02 * length, 0, band_z), (0.44 * length, width / 2 + 0.006, band_h / 2), _GLASS),
        _axle(axle_x, wheel_r, width / 2 + 0.012),
        _axle(-axle_x, wheel_r, width / 2 + 0.012),
    ]


def _plane(g: np.random.Generator, look: _Look) -> list[Primitive]:
    radius, half_len = g.uniform(0.055, 0.075), g.uniform(0.3, 0.36)
    chord, span = g.uniform(0.07, 0.11), g.uniform(0.36, 0.46)
    wing_x, wing_z = g.uniform(-0.02, 0.08), radius * g.uniform(0.5, 1.3)  # low or high wing
    fin_h, fin_len = g.uniform(0.09, 0.13), g.uniform(0.05, 0.08)
    stab_span = g.uniform(0.12, 0.17)
    tail_x = -half_len - 0.5 * radius
    return [
        _prim("capsule", (0, 0, radius), (radius, radius, half_len), look.body, ALONG_X),
        _prim("box", (wing_x, 0, wing_z), (chord, span, 0.012), look.trim),
        _prim("box", (tail_x + fin_len / 2, 0, radius + fin_h), (fin_len, 0.01, fin_h), look.trim),
        _prim("box", (tail_x + 0.6 * fin_len, 0, 1.2 * radius), (0.045, stab_span, 0.01), look.trim),
    ]


def _boat(g: np.random.Generator, look: _Look) -> list[Primitive]:
    hull = (g.uniform(0.4, 0.47), g.uniform(0.13, 0.17), g.uniform(0.08, 0.1))
    deck_z = 1.6 * hull[2]
    cabin = (g.uniform(0.08, 0.13), 0.65 * hull[1], g.uniform(0.04, 0.07))
    cabin_x = -g.uniform(0.1, 0.2)
    mast_x, mast_hh = g.uniform(0.0, 0.12), g.uniform(0.18, 0.24)
    sail_len, sail_h = g.uniform(0.13, 0.2), 2 * mast_hh * g.uniform(0.8, 0.95)
    return [
        _prim("ellipsoid", (0, 0, hull[2]), hull, look.body),
        _prim("box", (cabin_x, 0, deck_z + cabin[2]), cabin, look.trim),
        _prim("cylinder", (mast_x, 0, deck_z + mast_hh), (0.012, 0.012, mast_hh), _WHEEL),
        # A cone squashed flat in y reads as a triangular sail behind the mast.
        _prim("cone", (mast_x - sail_len - 0.012, 0, deck_z + 0.02), (sail_len, 0.006, sail_h), look.trim),
    ]


def _train(g: np.random.Generator, look: _Look) -> list[Primitive]:
    length, width, wheel_r = g.uniform(0.85, 1.0), g.uniform(0.26, 0.32), g.uniform(0.06, 0.08)
    chassis_z, chassis_hh = 2 * wheel_r + 0.03, 0.03
    deck = chassis_z + chassis_hh
    boiler_r, boiler_hl = g.uniform(0.1, 0.13), g.uniform(0.27, 0.32) * length
    boiler_x = length / 2 - boiler_hl - 0.02
    cab_len, cab_h = g.uniform(0.18, 0.25) * length, g.uniform(0.28, 0.34)
    return [
        _prim("box", (0, 0, chassis_z), (length / 2, width / 2, chassis_hh), _WHEEL),
        _prim("box", (0, 0, wheel_r + 0.02), (0.42 * length, width / 2 + 0.01, wheel_r + 0.02), look.trim),
        _prim("cylinder", (boiler_x, 0, deck + boiler_r), (boiler_r, boiler_r, boiler_hl), look.body, ALONG_X),
        _prim("cylinder", (boiler_x + 0.7 * boiler_hl, 0, deck + 2 * boiler_r + 0.05), (0.04, 0.04, 0.06), _WHEEL),
        _prim("box", (-length / 2 + cab_len / 2, 0, deck + cab_h / 2), (cab_len / 2, width / 2, cab_h / 2),
              look.body),
    ]


def _tower(g: np.random.Generator, look: _Look) -> list[Primitive]:
    base = (g.uniform(0.16, 0.21), g.uniform(0.16, 0.21), g.uniform(0.05, 0.08))
    shaft_r, shaft_hh = g.uniform(0.08, 0.11), g.uniform(0.2, 0.26)
    roof_r, roof_h = g.uniform(0.12, 0.16), g.uniform(0.12, 0.18)
    annex = (g.uniform(0.08, 0.12), g.uniform(0.1, 0.15), g.uniform(0.07, 0.12))
    shaft_top = 2 * base[2] + 2 * shaft_hh
    return [
        _prim("box", (0, 0, base[2]), base, look.trim),
        _prim("cylinder", (0, 0, 2 * base[2] + shaft_hh), (shaft_r, shaft_r, shaft_hh), look.body),
        _prim("cone", (0, 0, shaft_top), (roof_r, roof_r, roof_h), look.trim),
        # A side annex breaks the rotational symmetry so that azimuth stays visible.
        _prim("box", (base[0] + annex[0], 0.3 * base[1], annex[2]), annex, look.body),
    ]


def _chair(g: np.random.Generator, look: _Look) -> list[Primitive]:
    seat = (g.uniform(0.17, 0.23), g.uniform(0.17, 0.23), 0.025)
    leg_h, back_h = g.uniform(0.22, 0.3), g.uniform(0.15, 0.22)
    back_lean = np.deg2rad(g.uniform(-15.0, 0.0))
    seat_z = leg_h + seat[2]
    back_center = (-seat[0] + 0.025 + back_h * np.sin(back_lean), 0, seat_z + seat[2] + back_h * np.cos(back_lean))
    # Front and back legs as bars across the chair (two primitives instead of four legs).
    return [
        _prim("box", (0, 0, seat_z), seat, look.body),
        _prim("box", back_center, (0.025, seat[1], back_h), look.body, tilt_y(back_lean)),
        _prim("box", (seat[0] - 0.03, 0, leg_h / 2), (0.025, 0.9 * seat[1], leg_h / 2), look.trim),
        _prim("box", (-seat[0] + 0.03, 0, leg_h / 2), (0.025, 0.9 * seat[1], leg_h / 2), look.trim),
    ]


def _lamp(g: np.random.Generator, look: _Look) -> list[Primitive]:
    """A desk lamp: base, lower arm leaning forward, upper arm, shade opening forward-down."""
    base_r, base_hh = g.uniform(0.14, 0.18), 0.025
    lean1, len1 = np.deg2rad(g.uniform(5.0, 25.0)), g.uniform(0.36, 0.46)
    lean2, len2 = np.deg2rad(g.uniform(70.0, 110.0)), g.uniform(0.28, 0.38)
    shade_r, shade_h = g.uniform(0.11, 0.14), g.uniform(0.14, 0.19)
    shade_lean = np.deg2rad(g.uniform(20.0, 45.0))
    start = np.array([-0.05, 0.0, 2 * base_hh])
    axis1 = np.array([np.sin(lean1), 0.0, np.cos(lean1)])
    elbow = start + len1 * axis1
    axis2 = np.array([np.sin(lean2), 0.0, np.cos(lean2)])
    tip = elbow + len2 * axis2
    shade_rot = tilt_y(-shade_lean)  # apex leans back, so the opening faces forward-down
    shade_center = tip - np.asarray(shade_rot) @ np.array([0.0, 0.0, shade_h])
    return [
        _prim("cylinder", (0, 0, base_hh), (base_r, base_r, base_hh), look.trim),
        _prim("capsule", start + axis1 * len1 / 2, (0.028, 0.028, len1 / 2), look.body, tilt_y(lean1)),
        _prim("capsule", elbow + axis2 * len2 / 2, (0.024, 0.024, len2 / 2), look.body, tilt_y(lean2)),
        _prim("cone", shade_center, (shade_r, shade_r, shade_h), look.trim, shade_rot),
    ]


_LAYOUTS: tuple[Callable[[np.random.Generator, _Look], list[Primitive]], ...] = (
    _car, _truck, _tank, _bus, _plane, _boat, _train, _tower, _chair, _lamp)
assert len(_LAYOUTS) == len(CATEGORIES)


# --------------------------------------------------------------------------------------
# Public functions.


def primitive_corners(p: Primitive) -> np.ndarray:
    """[8, 3] corners of a box that contains the primitive, in the object frame."""
    a, b, c = p.size
    if p.kind == "cone":
        lo, hi = np.array([-a, -b, 0.0]), np.array([a, b, c])
    elif p.kind == "capsule":
        lo, hi = np.array([-a, -a, -c - a]), np.array([a, a, c + a])
    else:  # ellipsoid, box, cylinder: symmetric half-extents
        lo, hi = -np.array(p.size), np.array(p.size)
    grid = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    return grid @ np.asarray(p.rotation, dtype=np.float64).T + np.asarray(p.center)


def toy_bounds(primitives: Sequence[Primitive]) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) of an axis-aligned box containing the toy (conservative for rotated parts)."""
    corners = np.concatenate([primitive_corners(p) for p in primitives])
    return corners.min(axis=0), corners.max(axis=0)


def footprint_radius(primitives: Sequence[Primitive]) -> float:
    """Radius of a vertical cylinder about the object z axis that contains the toy."""
    corners = np.concatenate([primitive_corners(p) for p in primitives])
    return float(np.sqrt((corners[:, :2] ** 2).sum(axis=1)).max())


def _shift_xy(primitives: Sequence[Primitive], dx: float, dy: float) -> tuple[Primitive, ...]:
    return tuple(dataclasses.replace(p, center=(p.center[0] + dx, p.center[1] + dy, p.center[2]))
                 for p in primitives)


def scale_toy(primitives: Sequence[Primitive], factor: float) -> tuple[Primitive, ...]:
    """The toy uniformly scaled about the object origin (it still stands on z = 0)."""
    f = float(factor)
    return tuple(dataclasses.replace(
        p, center=tuple(f * v for v in p.center), size=tuple(f * v for v in p.size),
        material=dataclasses.replace(p.material, texture_scale=f * p.material.texture_scale))
        for p in primitives)


def build_toy(category: int, instance: int,
              texture_palette: Sequence[TextureKind] = TEXTURES) -> tuple[Primitive, ...]:
    """The primitives of toy `instance` of `category` (an index into CATEGORIES).

    Deterministic per (category, instance): proportions, colours and texture come from
    PCG64 streams seeded with them. `texture_palette` lists the textures the body may get
    (e.g. ("solid",) for untextured toys); it changes only the texture, never the shape or
    the colours of an instance.
    """
    if not 0 <= int(category) < len(CATEGORIES):
        raise ValueError(f"toy category must be in [0, {len(CATEGORIES)}), got {category}")
    if int(instance) < 0:
        raise ValueError(f"toy instance must be >= 0, got {instance}")
    palette = tuple(texture_palette)
    unknown = [t for t in palette if t not in TEXTURES]
    if not palette or unknown:
        raise ValueError(f"texture_palette must be a non-empty subset of {TEXTURES}, got {palette}")
    category, instance = int(category), int(instance)
    geometry = np.random.default_rng([_CATALOGUE_SALT, category, instance, _GEOMETRY])
    primitives = _LAYOUTS[category](geometry, _look(category, instance, palette))
    lo, hi = toy_bounds(primitives)
    # Centre the footprint on the origin so that placement and orbit cameras can treat
    # every toy alike.
    return _shift_xy(primitives, -float(lo[0] + hi[0]) / 2, -float(lo[1] + hi[1]) / 2)
