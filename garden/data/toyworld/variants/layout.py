"""Toys on a ground plane in front of a wall: what the scenes and video variants share."""

from __future__ import annotations

import dataclasses

import numpy as np
from pydantic import Field, model_validator

from garden.data.toyworld import toys
from garden.data.toyworld.geometry import boxes_from_instance_map
from garden.data.toyworld.scene import Background, Material, Primitive, Scene, SceneObject
from garden.data.toyworld.variants import common, styling

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



def check_ordered(name: str, value: tuple[float, float], lowest: float, highest: float) -> None:
    """A (low, high) option must satisfy lowest <= low <= high <= highest."""
    low, high = value
    if not lowest <= low <= high <= highest:
        raise ValueError(f"{name} must satisfy {lowest:g} <= low <= high <= {highest:g}, got {value}")


class LayoutOptions(common.BaseOptions):
    """Options of the variants that stand several toys before a wall (scenes, video).

    Each variant re-declares the fields whose defaults (or descriptions) differ for it.
    """

    min_objects: int = Field(1, ge=1, le=12)
    max_objects: int = Field(6, ge=1, le=12)
    num_categories: int = Field(len(toys.CATEGORIES), ge=1, le=len(toys.CATEGORIES))
    instances_per_category: int = Field(20, ge=1, le=1000)
    scale_range: tuple[float, float] = Field((0.6, 1.3), description="toy scale factors, 0.2 <= low <= high <= 2")
    area_half_extent: float = Field(1.2, ge=0.5, le=4.0, description="toys stand in [-a, a]^2 metres")
    elevation_range: tuple[float, float] = Field((6.0, 28.0), description="camera elevation, degrees")
    wall_probability: float = Field(1.0, ge=0.0, le=1.0, description="chance of a wall behind the toys")
    wall_height: float = Field(WALL_HEIGHT, gt=0.0, le=20.0, description="wall height, metres")

    @model_validator(mode="after")
    def _check_layout(self) -> "LayoutOptions":
        if self.min_objects > self.max_objects:
            raise ValueError(f"min_objects ({self.min_objects}) exceeds max_objects ({self.max_objects})")
        check_ordered("scale_range", self.scale_range, 0.2, 2.0)
        check_ordered("elevation_range", self.elevation_range, 5.0, 80.0)
        return self


def dense_label_features(*shape: int) -> dict:
    """The dense label maps of scenes and video (TFDS features) at `shape`: (H, W) or (T, H, W)."""
    return {
        "segmentation": common.dense_feature(shape, np.int32),
        "instance_map": common.dense_feature(shape, np.int32),
        "depth": common.dense_feature(shape, np.float32),
        "normals": common.dense_feature((*shape, 3), np.float32),
        "mask": common.dense_feature(shape, np.uint8),
    }

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
