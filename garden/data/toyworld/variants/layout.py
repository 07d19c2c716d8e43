"""Toys on a ground plane in front of a wall: what the scenes and video variants share."""

from __future__ import annotations

import dataclasses

import numpy as np

from garden.data.toyworld import toys
from garden.data.toyworld.geometry import boxes_from_instance_map
from garden.data.toyworld.scene import Background, Material, Primitive, Scene, SceneObject
from garden.data.toyworld.variants import styling

GROUND_BASE = (0.5, 0.52, 0.42)
WALL_BASE = (0.78, 0.74, 0.68)
SKY_BASE = (0.6, 0.75, 0.92)
WALL_DISTANCE = 4.0  # the wall is the plane x = -4; cameras stay on the +x side of the toys
WALL_HEIGHT = 1.0  # metres: low enough for the sky to show above it at most default elevations


@dataclasses.dataclass(frozen=True)
class Toy:
    category: int
    instance: int
    primitives: tuple[Primitive, ...]
    radius: float  # footprint radius in metres, after scaling


def sample_toy(rng: np.random.Generator, num_categories: int, instances_per_category: int,
               scale_range: tuple[float, float]) -> Toy:
    """A random catalogue toy, uniformly rescaled (scenes need small, medium and large
    objects: seed_002_ch6_7.md A7 "Sizes spanning small, medium and large")."""
    category = int(rng.integers(num_categories))
    instance = int(rng.integers(instances_per_category))
    primitives = toys.scale_toy(toys.build_toy(category, instance), rng.uniform(*scale_range))
    return Toy(category, instance, primitives, toys.footprint_radius(primitives))


def place(rng: np.random.Generator, radii: list[float], half_extent: float, margin: float = 0.05,
          tries: int = 100) -> list[tuple[float, float] | None]:
    """Non-overlapping footprint discs in the square [-half_extent, half_extent]^2 by rejection
    sampling; None for a toy that found no room in `tries` draws (it is left out)."""
    placed: list[tuple[np.ndarray, float]] = []
    out: list[tuple[float, float] | None] = []
    for radius in radii:
        spot = None
        for _ in range(tries):
            xy = rng.uniform(-half_extent, half_extent, size=2)
            if all(np.hypot(*(xy - other)) >= radius + r + margin for other, r in placed):
                spot = xy
                break
        if spot is not None:
            placed.append((spot, radius))
        out.append(None if spot is None else (float(spot[0]), float(spot[1])))
    return out


def stage(style: str, rng: np.random.Generator) -> tuple[Material, Material, Background]:
    """(ground, wall, sky): plain surfaces and sky (clean) or patterned ones and a picture (photo)."""
    ground = styling.surface(style, rng, GROUND_BASE, (0.2, 0.6))
    wall = styling.surface(style, rng, WALL_BASE, (0.15, 0.5))
    if style == "clean":
        sky = Background(kind="plain", colors=(tuple(float(c) for c in np.clip(
            np.asarray(SKY_BASE) + rng.uniform(-0.05, 0.05, size=3), 0, 1)),))
    else:
        sky = styling.background(style, rng)
    return ground, wall, sky


def make_scene(objects: list[SceneObject], style: str, ground: Material, wall: Material | None,
               sky: Background, wall_height: float = WALL_HEIGHT) -> Scene:
    return Scene(objects=tuple(objects), background=sky, ground=ground, wall=wall,
                 wall_distance=WALL_DISTANCE, wall_height=float(wall_height), flat_shading=style == "clean")


def boxes(instance_map: np.ndarray, segmentation: np.ndarray) -> dict[str, np.ndarray]:
    """The contract's box keys of one frame, from the rendered instance map."""
    box, labels, ids = boxes_from_instance_map(instance_map, segmentation)
    return {"boxes": box.astype(np.float32), "box_labels": labels.astype(np.int64),
            "box_instances": ids.astype(np.int64)}


def label_names(num_categories: int) -> dict[str, list[str]]:
    """Semantic classes by id: the stuff classes of scene.py, then the toy categories."""
    classes = ["sky", "wall", "ground", *toys.CATEGORIES[:num_categories]]
    return {"segmentation": classes, "box_labels": classes}
