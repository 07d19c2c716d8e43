"""`scenes`: 1-6 toys on a ground plane in front of a wall under the sky.

Dense labels for detection and panoptic work (seed_002_ch6_7.md A7 and B7): semantic
segmentation (stuff: sky, wall, ground; things: the toy categories), instance map, depth,
normals, the things mask and tight boxes from the instance masks. Toys stand on the ground
without overlapping (footprint discs), are rescaled so that sizes vary, and the camera looks
down on them from a random azimuth (on the open side, away from the wall) and elevation.

The wall is `wall_height` metres tall (1 m) and there in `wall_probability` of the scenes (all
by default). The sky shows over it whenever the camera pitch is below about half the vertical
field of view: at the default elevations (6-28 degrees) in about 80% of the images.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from pydantic import Field

from garden.data.toyworld import toys
from garden.data.toyworld.render import render
from garden.data.toyworld.scene import Camera, Light, SceneObject
from garden.data.toyworld.variants import common, layout, styling

STREAM = 3
FOV_DEG = 45.0
LOOK_AT_HEIGHT = 0.2


class Options(layout.LayoutOptions):
    image_size: common.ImageSize = (128, 128)
    num_train: int = Field(1000, ge=0, le=1_000_000)
    num_validation: int = Field(100, ge=0, le=1_000_000)
    num_test: int = Field(200, ge=0, le=1_000_000)
    area_half_extent: float = Field(1.2, ge=0.5, le=3.0, description="toys stand in [-a, a]^2 metres")
    azimuth_range: float = Field(45.0, ge=0.0, le=70.0, description="camera azimuth in [-r, r] degrees")


def sample_content(options: Options, split: str, index: int) -> dict:
    """Toys, their placement and the camera pose: everything the labels depend on."""
    rng = common.example_rng(options, STREAM, split, index, common.CONTENT)
    count = int(rng.integers(options.min_objects, options.max_objects + 1))
    candidates = [layout.sample_toy(rng, options.num_categories, options.instances_per_category,
                                    options.scale_range) for _ in range(count)]
    spots = layout.place(rng, [t.radius for t in candidates], options.area_half_extent)
    yaws = rng.uniform(0.0, 2 * np.pi, size=count)
    # Toys that found no room are dropped; the first always fits (the area holds one toy).
    objects = [SceneObject(primitives=toy.primitives, class_id=toys.class_id(toy.category), instance_id=i + 1,
                           position=(spot[0], spot[1], 0.0), yaw=float(yaw))
               for i, (toy, spot, yaw) in enumerate(zip(candidates, spots, yaws)) if spot is not None]
    return {"objects": objects, "azimuth_deg": float(rng.uniform(-options.azimuth_range, options.azimuth_range)),
            "elevation_deg": float(rng.uniform(*options.elevation_range)),
            "wall": bool(rng.uniform() < options.wall_probability)}


def _camera(options: Options, content: dict, style: str, rng: np.random.Generator) -> Camera:
    """Aimed at the toys' centroid from far enough to see them all (clean); photo aims off
    and comes closer, so toys get cut by the frame."""
    objects = content["objects"]
    xy = np.array([o.position[:2] for o in objects])
    centroid = xy.mean(axis=0)
    reach = max(float(np.hypot(*(p - centroid))) + toys.footprint_radius(o.primitives)
                for p, o in zip(xy, objects))
    height, width = options.image_size
    tan_half = np.tan(np.deg2rad(FOV_DEG / 2)) * min(1.0, height / width)  # the narrower side
    distance = float(np.clip((reach + 0.25) / tan_half, 2.5, 9.0))
    look_at = np.array([centroid[0], centroid[1], LOOK_AT_HEIGHT])
    if style == "photo":
        look_at[:2] += rng.uniform(-0.5, 0.5, size=2)
        distance *= rng.uniform(0.7, 1.0)
    return Camera.orbit(content["azimuth_deg"], content["elevation_deg"], distance,
                        look_at=tuple(float(v) for v in look_at), fov_deg=FOV_DEG)


def make_example(options: Options, split: str, index: int) -> dict[str, np.ndarray]:
    content = sample_content(options, split, index)
    style = common.style_for(options, split)
    look = common.example_rng(options, STREAM, split, index, common.STYLE)
    objects = content["objects"]
    if style == "photo":
        spec = look.uniform(0.2, 0.5)
        objects = [dataclasses.replace(o, primitives=styling.with_specular(o.primitives, spec)) for o in objects]
    ground, wall, sky = layout.stage(style, look)
    scene = layout.make_scene(objects, style, ground, wall if content["wall"] else None, sky,
                              options.wall_height)
    camera = _camera(options, content, style, look)
    light = styling.photo_light(look) if style == "photo" else Light()
    height, width = options.image_size
    result = render(scene, camera, light, height, width)
    return {
        "image": styling.finish(result.rgb, style, look),
        "segmentation": result.segmentation.astype(np.int32),
        "instance_map": result.instance_map.astype(np.int32),
        "depth": result.depth.astype(np.float32),
        "normals": result.normals.astype(np.float32),
        "mask": result.mask.astype(np.uint8),
        **layout.boxes(result.instance_map, result.segmentation),
    }


def label_names(options: Options) -> dict[str, list[str]]:
    return layout.label_names(options.num_categories)


def features(options: Options):
    height, width = options.image_size
    return common.F.FeaturesDict({
        "image": common.image_feature(height, width),
        **layout.dense_label_features(height, width),
        # Ragged: N boxes per image (possibly 0), (ymin, xmin, ymax, xmax) in [0, 1].
        "boxes": common.F.Tensor(shape=(None, 4), dtype=np.float32),
        "box_labels": common.F.Tensor(shape=(None,), dtype=np.int64),
        "box_instances": common.F.Tensor(shape=(None,), dtype=np.int64),
    })


VARIANT = common.Variant(
    name="scenes",
    description="1-6 toys on a ground plane before a wall; segmentation, instances, depth, normals, boxes",
    Options=Options,
    make_example=make_example,
    make_features=features,
    make_label_names=label_names,
)
