"""`objects`: one toy per image with iLab-like labels (seeds_000_001.md A.7, "mini-iLab").

Every image carries category, instance, viewpoint (azimuth and elevation bins and the
continuous angles), lighting, focus and background. Splits are by instance, as in the paper
(A.7 "Split train/val/test by instance"): each toy instance belongs to exactly one split.
Sparse variations (A.7 "Sparse-variation test", seed 000's n_VPI): with
`variations_per_instance = k` each training instance is only ever seen from k of the
azimuth x elevation viewpoint cells; the evaluation splits keep every viewpoint.

Choices where the spec leaves room:
- 6 azimuths x 5 elevations = 30 pose classes by default (A.7 "5 camera elevations x 6
  turntable azimuths"); `azimuth_bins: 8` with `variations_per_instance: 1` gives A.7's
  optional transfer setting. The pose class of seed 000 is azimuth * elevation_bins + elevation.
- A "viewpoint" of the sparse-variation test is one (azimuth bin, elevation bin) cell;
  lighting, focus and background still vary freely within it.
- The 5 lighting conditions are fixed relative to the camera (like iLab's lamps on the camera
  rig), so a lighting label looks the same at every turntable angle.
- Lighting is a label here, so even the clean style shades the toy (Lambertian, no highlight;
  A.7 "rendered with Lambertian shading"); flat shading would erase the lighting label.
- Focus is a label too, so its blur is applied in both styles.
- Categories are balanced by index (category = index mod num_categories); the rest is random.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from garden.data.toyworld import toys
from garden.data.toyworld.render import render
from garden.data.toyworld.scene import Background, Camera, Light, Scene, SceneObject
from garden.data.toyworld.variants import common, styling

STREAM = 1
_INSTANCE_SPLIT_SALT, _VIEWPOINT_SALT, _BACKGROUND_SALT = 101, 102, 103

# (azimuth offset from the camera in degrees, elevation in degrees, intensity, ambient).
# Positive offsets put the light on the camera's right (see scene.Camera.orbit).
LIGHTINGS: tuple[tuple[str, float, float, float, float], ...] = (
    ("front", 0.0, 45.0, 0.85, 0.3),
    ("right", 75.0, 30.0, 0.9, 0.2),
    ("left", -75.0, 30.0, 0.9, 0.2),
    ("top", 180.0, 80.0, 0.8, 0.3),
    ("dim", 0.0, 45.0, 0.4, 0.15),
)
FOCUS_NAMES = ("sharp", "soft", "blurred")
CAMERA_DISTANCE = 1.6  # with a 40 degree field of view a ~0.9 m toy spans ~75% of the frame
LOOK_AT_HEIGHT = 0.22  # about half the height of an average toy
FOV_DEG = 40.0


class Options(common.BaseOptions):
    image_size: common.ImageSize = (64, 64)
    num_train: int = Field(2400, ge=0, le=1_000_000)
    num_validation: int = Field(300, ge=0, le=1_000_000)
    num_test: int = Field(600, ge=0, le=1_000_000)
    num_categories: int = Field(len(toys.CATEGORIES), ge=2, le=len(toys.CATEGORIES),
                                description="use the first n toy categories")
    instances_per_category: int = Field(20, ge=3, le=1000)
    validation_instances: int = Field(3, ge=1, description="held-out instances per category")
    test_instances: int = Field(4, ge=1, description="held-out instances per category")
    azimuth_bins: int = Field(6, ge=1, le=72)
    elevation_bins: int = Field(5, ge=1, le=18)
    elevation_range: tuple[float, float] = Field((10.0, 60.0), description="degrees, low < high, within (-10, 85)")
    viewpoint_jitter: float = Field(0.25, ge=0.0, lt=1.0, description="fraction of a bin width")
    num_lightings: int = Field(len(LIGHTINGS), ge=1, le=len(LIGHTINGS))
    num_focus: int = Field(len(FOCUS_NAMES), ge=1, le=len(FOCUS_NAMES))
    num_backgrounds: int = Field(8, ge=1, le=256)
    backgrounds: Literal["style", "plain", "textured"] = Field(
        "style", description="style: plain for clean, textured for photo; or force one family")
    variations_per_instance: int | None = Field(None, ge=1, description="sparse variations n_VPI (train only)")
    textured: bool = Field(True, description="False: untextured single-colour toy bodies")
    dense_labels: bool = Field(False, description="also return depth and normals")

    @model_validator(mode="after")
    def _check(self) -> "Options":
        train = self.instances_per_category - self.validation_instances - self.test_instances
        if train < 1:
            raise ValueError(f"instances_per_category ({self.instances_per_category}) must exceed "
                             f"validation_instances + test_instances ({self.validation_instances} + "
                             f"{self.test_instances}) to leave training instances")
        low, high = self.elevation_range
        if not -10.0 < low < high < 85.0:
            raise ValueError(f"elevation_range must satisfy -10 < low < high < 85, got {self.elevation_range}")
        cells = self.azimuth_bins * self.elevation_bins
        if self.variations_per_instance is not None and self.variations_per_instance > cells:
            raise ValueError(f"variations_per_instance ({self.variations_per_instance}) exceeds the "
                             f"{cells} viewpoint cells (azimuth_bins x elevation_bins)")
        return self


# --------------------------------------------------------------------------------------
# Instances, viewpoints, backgrounds.


def instance_splits(options: Options, category: int) -> dict[str, np.ndarray]:
    """Instance indices (within the category) of each split: a seeded permutation, cut."""
    order = np.random.default_rng([options.seed, STREAM, _INSTANCE_SPLIT_SALT, category]).permutation(
        options.instances_per_category)
    n_test, n_val = options.test_instances, options.validation_instances
    return {"test": np.sort(order[:n_test]), "validation": np.sort(order[n_test:n_test + n_val]),
            "train": np.sort(order[n_test + n_val:])}


def global_instance(options: Options, category: int, instance: int) -> int:
    """The `instance` label: unique over all categories."""
    return category * options.instances_per_category + instance


def allowed_viewpoints(options: Options, category: int, instance: int) -> np.ndarray | None:
    """The viewpoint cells (azimuth * elevation_bins + elevation) a training instance may show;
    None when every cell is allowed."""
    k = options.variations_per_instance
    if k is None:
        return None
    cells = options.azimuth_bins * options.elevation_bins
    rng = np.random.default_rng([options.seed, STREAM, _VIEWPOINT_SALT, category, instance])
    return np.sort(rng.choice(cells, size=k, replace=False))


def background_of(options: Options, style: str, background_id: int) -> Background:
    """The fixed backdrop number `background_id` (the same in every split): a plain colour or
    a textured picture (A.7 "N random textured or photo-like noise backgrounds")."""
    textured = options.backgrounds == "textured" or (options.backgrounds == "style" and style == "photo")
    rng = np.random.default_rng([options.seed, STREAM, _BACKGROUND_SALT, textured, background_id])
    return styling.background("photo" if textured else "clean", rng)


def _angle(rng: np.random.Generator, bin_index: int, low: float, width: float, jitter: float) -> float:
    return float(low + (bin_index + 0.5 + jitter * rng.uniform(-0.5, 0.5)) * width)


def lighting_of(index: int, azimuth_deg: float) -> Light:
    _, offset, elevation, intensity, ambient = LIGHTINGS[index]
    az, el = np.deg2rad(azimuth_deg + offset), np.deg2rad(elevation)
    direction = (float(np.cos(el) * np.cos(az)), float(np.cos(el) * np.sin(az)), float(np.sin(el)))
    return Light(direction=direction, intensity=intensity, ambient=ambient)


# --------------------------------------------------------------------------------------
# The example.


def sample_labels(options: Options, split: str, index: int) -> dict[str, float | int]:
    """The labelled content of one example (no rendering); the CONTENT stream only."""
    rng = common.example_rng(options, STREAM, split, index, common.CONTENT)
    category = index % options.num_categories
    instances = instance_splits(options, category)[split]
    instance = int(instances[rng.integers(instances.size)])
    cells = options.azimuth_bins * options.elevation_bins
    allowed = allowed_viewpoints(options, category, instance) if split == "train" else None
    cell = int(allowed[rng.integers(allowed.size)]) if allowed is not None else int(rng.integers(cells))
    azimuth, elevation = divmod(cell, options.elevation_bins)
    low, high = options.elevation_range
    az_width = 360.0 / options.azimuth_bins
    return {
        "category": category,
        "instance_in_category": instance,
        "azimuth": azimuth,
        "elevation": elevation,
        # Azimuth bin a is centred on a * width (bin 0 is the front view).
        "azimuth_deg": _angle(rng, azimuth, -az_width / 2, az_width, options.viewpoint_jitter) % 360.0,
        "elevation_deg": _angle(rng, elevation, low, (high - low) / options.elevation_bins, options.viewpoint_jitter),
        "lighting": int(rng.integers(options.num_lightings)),
        "focus": int(rng.integers(options.num_focus)),
        "background": int(rng.integers(options.num_backgrounds)),
    }


def _camera(labels: dict, style: str, rng: np.random.Generator) -> Camera:
    """Orbit camera on the toy; photo moves and zooms it so the toy is off-centre, maybe cut."""
    look_at, distance = np.array([0.0, 0.0, LOOK_AT_HEIGHT]), CAMERA_DISTANCE
    if style == "photo":
        look_at = look_at + rng.uniform(-0.3, 0.3, size=3) * np.array([1.0, 1.0, 0.5])
        distance *= rng.uniform(0.75, 1.1)
    return Camera.orbit(labels["azimuth_deg"], labels["elevation_deg"], distance,
                        look_at=tuple(float(v) for v in look_at), fov_deg=FOV_DEG)


def make_example(options: Options, split: str, index: int) -> dict[str, np.ndarray]:
    labels = sample_labels(options, split, index)
    style = common.style_for(options, split)
    look = common.example_rng(options, STREAM, split, index, common.STYLE)
    category = labels["category"]
    palette = toys.TEXTURES if options.textured else ("solid",)
    primitives = toys.build_toy(category, labels["instance_in_category"], palette)
    # Clean toys are Lambertian; photo toys get highlights (seed_003.md 9.2 R1: "Phong/specular").
    primitives = styling.with_specular(primitives, 0.0 if style == "clean" else look.uniform(0.2, 0.5))
    light = lighting_of(labels["lighting"], labels["azimuth_deg"])
    if style == "photo":
        light = dataclasses.replace(light, color=styling.photo_light(look).color)  # tinted lamps
    scene = Scene(objects=(SceneObject(primitives=primitives, class_id=toys.class_id(category), instance_id=1),),
                  background=background_of(options, style, labels["background"]))
    height, width = options.image_size
    result = render(scene, _camera(labels, style, look), light, height, width)
    out = {
        "image": styling.finish(result.rgb, style, look, blur_level=labels["focus"]),
        "label": common.int64(category),
        "category": common.int64(category),
        "instance": common.int64(global_instance(options, category, labels["instance_in_category"])),
        **{key: common.int64(labels[key]) for key in ("azimuth", "elevation", "lighting", "focus", "background")},
        "azimuth_deg": common.float32(labels["azimuth_deg"]),
        "elevation_deg": common.float32(labels["elevation_deg"]),
        "mask": result.mask.astype(np.uint8),
    }
    if options.dense_labels:
        out["depth"] = result.depth.astype(np.float32)
        out["normals"] = result.normals.astype(np.float32)
    return out


# --------------------------------------------------------------------------------------
# Names and features.


def label_names(options: Options) -> dict[str, list[str]]:
    categories = list(toys.CATEGORIES[:options.num_categories])
    low, high = options.elevation_range
    el_width = (high - low) / options.elevation_bins
    return {
        "label": categories,
        "category": categories,
        "instance": [f"{c}_{i:03d}" for c in categories for i in range(options.instances_per_category)],
        "azimuth": [f"az{a * 360.0 / options.azimuth_bins:05.1f}" for a in range(options.azimuth_bins)],
        "elevation": [f"el{low + (e + 0.5) * el_width:04.1f}" for e in range(options.elevation_bins)],
        "lighting": [name for name, *_ in LIGHTINGS[:options.num_lightings]],
        "focus": list(FOCUS_NAMES[:options.num_focus]),
        "background": [f"bg{b:03d}" for b in range(options.num_backgrounds)],
    }


def features(options: Options):
    F = common.F
    names = label_names(options)
    height, width = options.image_size
    spec = {
        "image": common.image_feature(height, width),
        **{key: common.class_feature(names[key]) for key in names},
        "azimuth_deg": common.scalar_feature(np.float32),
        "elevation_deg": common.scalar_feature(np.float32),
        "mask": common.dense_feature((height, width), np.uint8),
    }
    if options.dense_labels:
        spec["depth"] = common.dense_feature((height, width), np.float32)
        spec["normals"] = common.dense_feature((height, width, 3), np.float32)
    return F.FeaturesDict(spec)


VARIANT = common.Variant(
    name="objects",
    description="one toy per image; category, instance, viewpoint, lighting, focus, background; "
                "instance-disjoint splits; optional sparse viewpoints per training instance",
    Options=Options,
    make_example=make_example,
    make_features=features,
    make_label_names=label_names,
)
