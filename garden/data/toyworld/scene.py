"""Plain-data description of a toyworld scene: what the renderer draws.

This module is the contract between the scene *samplers* (toys.py, variants) and the
*renderer* (render.py). It holds no rendering logic. World frame: right-handed, z up,
metres; the ground plane is z = 0.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

PrimitiveKind = Literal["ellipsoid", "box", "cylinder", "cone", "capsule"]
TextureKind = Literal["solid", "stripes", "checker", "noise"]
BackgroundKind = Literal["plain", "gradient", "noise", "clutter"]


@dataclasses.dataclass(frozen=True)
class Material:
    color: tuple[float, float, float]  # base albedo, RGB in [0, 1]
    texture: TextureKind = "solid"
    texture_color: tuple[float, float, float] = (1.0, 1.0, 1.0)  # second colour of patterns
    texture_scale: float = 0.1  # pattern period in metres (object frame)
    specular: float = 0.15  # weight of the Blinn-Phong highlight


@dataclasses.dataclass(frozen=True)
class Primitive:
    """An analytic solid in the frame of its object.

    `size` meaning per kind (all in metres):
      ellipsoid: semi-axes (a, b, c)
      box:       half-extents (hx, hy, hz)
      cylinder:  (radius_x, radius_y, half_height), axis along local z, capped
      cone:      (base_radius_x, base_radius_y, height), base at local z = 0, apex at +height
      capsule:   (radius, radius, half_length), segment along local z, hemispherical caps
    `rotation` is the 3x3 local->object rotation; `center` the local origin in the object frame.
    """

    kind: PrimitiveKind
    center: tuple[float, float, float]
    size: tuple[float, float, float]
    material: Material
    rotation: tuple[tuple[float, float, float], ...] = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))


@dataclasses.dataclass(frozen=True)
class SceneObject:
    """A toy: primitives placed in the world by a yaw about z and a translation."""

    primitives: tuple[Primitive, ...]
    class_id: int  # semantic class written into the class map
    instance_id: int  # >= 1, unique within a scene and stable over the frames of a video
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)  # object origin in world
    yaw: float = 0.0  # radians, rotation about world z


@dataclasses.dataclass(frozen=True)
class Camera:
    """Pinhole camera. `fov_deg` is the horizontal field of view."""

    position: tuple[float, float, float]
    look_at: tuple[float, float, float] = (0.0, 0.0, 0.0)
    fov_deg: float = 40.0
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)

    @classmethod
    def orbit(cls, azimuth_deg: float, elevation_deg: float, distance: float,
              look_at=(0.0, 0.0, 0.0), fov_deg: float = 40.0) -> "Camera":
        """Camera on a sphere around `look_at`; azimuth 0 looks along -x, counter-clockwise."""
        az, el = np.deg2rad(azimuth_deg), np.deg2rad(elevation_deg)
        offset = distance * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        position = tuple(float(v) for v in np.asarray(look_at, dtype=np.float64) + offset)
        return cls(position=position, look_at=tuple(float(v) for v in look_at), fov_deg=fov_deg)


@dataclasses.dataclass(frozen=True)
class Light:
    """Directional light plus ambient. `direction` points from the scene towards the light."""

    direction: tuple[float, float, float] = (0.4, -0.3, 0.85)
    intensity: float = 0.85
    ambient: float = 0.3
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)


@dataclasses.dataclass(frozen=True)
class Background:
    """What rays that hit nothing (sky: above the horizon or over the top of the wall) show."""

    kind: BackgroundKind = "plain"
    colors: tuple[tuple[float, float, float], ...] = ((0.55, 0.7, 0.9),)
    seed: int = 0  # drives the procedural pattern of noise/clutter backgrounds


@dataclasses.dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]
    background: Background = Background()
    ground: Material | None = None  # None: no ground plane (objects float on the background)
    wall: Material | None = None  # vertical plane behind the objects (scenes variant)
    wall_distance: float = 4.0  # the wall is the plane x = -wall_distance
    wall_height: float = 1.5  # the wall spans 0 <= z <= wall_height; rays above it see the background
    flat_shading: bool = False  # "clean" style: albedo only, no lighting or highlight


# Reserved semantic ids of the class map for the non-object surfaces. Toy categories take
# ids from FIRST_THING_CLASS upwards (see toys.py).
SKY_CLASS = 0
WALL_CLASS = 1
GROUND_CLASS = 2
FIRST_THING_CLASS = 3
