"""`attributes`: one primitive with independent attributes (seed_004.md M3 section 7, "Shapes").

Attributes, drawn independently and uniformly: shape (5 primitive kinds; the label), colour
(a named palette of 8), size (a continuous `size_value` in [0.3, 0.9] of the frame width,
M3 7 "size in continuous [0.3, 0.9] of the canvas", plus its bin) and texture
(solid/stripes/checker/noise; M3 7 lists "dots", we use value noise instead since the
renderer's textures are these four). Nuisances (M3 7: "position jitter, rotation, background
noise"): the object's yaw and tilt, the camera elevation, the position in the frame and the
backdrop.
Splits are independent draws (separate index streams per split), 70/10/20 by default
(M3 7 "Split images 70/10/20").
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from garden.data.toyworld import geometry
from garden.data.toyworld.render import render
from garden.data.toyworld.scene import FIRST_THING_CLASS, Camera, Light, Material, Primitive, Scene, SceneObject
from garden.data.toyworld.toys import TEXTURES
from garden.data.toyworld.variants import common, styling

STREAM = 2
SHAPES: tuple[str, ...] = ("ellipsoid", "box", "cylinder", "cone", "capsule")
# Unit shapes with a bounding radius of about 1 about their centre, so `size_value` means
# the same apparent size for every shape: kind -> (size triple, local z of the centre).
_UNIT_SHAPES = {
    "ellipsoid": ((1.0, 1.0, 1.0), 0.0),
    "box": ((0.6, 0.6, 0.6), 0.0),
    "cylinder": ((0.65, 0.65, 0.65), 0.0),
    "cone": ((0.7, 0.7, 1.4), -0.7),  # the base is at local z = 0: shift it down by half
    "capsule": ((0.42, 0.42, 0.55), 0.0),
}
COLORS: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("red", (0.85, 0.1, 0.1)),
    ("orange", (0.95, 0.5, 0.05)),
    ("yellow", (0.95, 0.85, 0.1)),
    ("green", (0.1, 0.65, 0.2)),
    ("cyan", (0.1, 0.8, 0.85)),
    ("blue", (0.15, 0.25, 0.9)),
    ("purple", (0.55, 0.15, 0.8)),
    ("white", (0.93, 0.93, 0.93)),
)
SIZE_NAMES_3 = ("small", "medium", "large")
CAMERA_DISTANCE, FOV_DEG = 3.0, 30.0
FRAME_WIDTH = 2 * CAMERA_DISTANCE * np.tan(np.deg2rad(FOV_DEG / 2))  # metres seen at the object


class Options(common.BaseOptions):
    image_size: common.ImageSize = (32, 32)
    num_train: int = Field(3500, ge=0, le=1_000_000)
    num_validation: int = Field(500, ge=0, le=1_000_000)
    num_test: int = Field(1000, ge=0, le=1_000_000)
    size_bins: int = Field(3, ge=1, le=16)
    size_range: tuple[float, float] = Field((0.3, 0.9), description="fraction of the frame width, 0 < low < high <= 1")
    position_jitter: float = Field(0.5, ge=0.0, le=1.0, description="fraction of the free margin")
    elevation_range: tuple[float, float] = Field((10.0, 45.0), description="camera elevation, degrees")

    @model_validator(mode="after")
    def _check(self) -> "Options":
        low, high = self.size_range
        if not 0.0 < low < high <= 1.0:
            raise ValueError(f"size_range must satisfy 0 < low < high <= 1, got {self.size_range}")
        low, high = self.elevation_range
        if not -80.0 < low <= high < 85.0:
            raise ValueError(f"elevation_range must satisfy -80 < low <= high < 85, got {self.elevation_range}")
        return self


def size_bin(options: Options, size_value: float) -> int:
    low, high = options.size_range
    return int(np.clip(np.floor((size_value - low) / (high - low) * options.size_bins), 0, options.size_bins - 1))


def sample_labels(options: Options, split: str, index: int) -> dict:
    rng = common.example_rng(options, STREAM, split, index, common.CONTENT)
    size_value = float(rng.uniform(*options.size_range))
    return {
        "shape": int(rng.integers(len(SHAPES))),
        "color": int(rng.integers(len(COLORS))),
        "texture": int(rng.integers(len(TEXTURES))),
        "size_value": size_value,
        "size": size_bin(options, size_value),
        # Nuisances.
        "yaw": float(rng.uniform(0.0, 2 * np.pi)),
        "tilt": float(np.deg2rad(rng.uniform(-30.0, 30.0))),  # about the object's x axis
        "aspect": rng.uniform(0.9, 1.1, size=3),
        "elevation_deg": float(rng.uniform(*options.elevation_range)),
        "azimuth_deg": float(rng.uniform(0.0, 360.0)),
        "offset": rng.uniform(-1.0, 1.0, size=2),
    }


def _primitive(labels: dict) -> Primitive:
    kind = SHAPES[labels["shape"]]
    unit, center_z = _UNIT_SHAPES[kind]
    scale = labels["size_value"] * FRAME_WIDTH / 2  # bounding radius in metres
    size = tuple(float(s * scale * a) for s, a in zip(unit, labels["aspect"]))
    if kind == "capsule":  # keep the cap hemispherical: radius_y must equal radius_x
        size = (size[0], size[0], size[2])
    color = COLORS[labels["color"]][1]
    material = Material(color=color, texture=TEXTURES[labels["texture"]],
                        texture_color=tuple(0.4 * c for c in color), texture_scale=float(0.4 * scale))
    # Tilt about the bounding centre: the centre offset (cones) turns with the shape.
    rotation = geometry.rotation_x(labels["tilt"])
    center = rotation @ np.array([0.0, 0.0, center_z * scale])
    return Primitive(kind=kind, center=tuple(float(v) for v in center), size=size, material=material,
                     rotation=geometry.as_rotation_tuple(rotation))


def _placement(options: Options, labels: dict, camera: Camera, style: str, rng) -> tuple[float, float, float]:
    """Object position: jittered within the free margin; photo may push it over the edge."""
    free = (1.0 - labels["size_value"]) / 2 * FRAME_WIDTH
    offset = labels["offset"] * free * options.position_jitter
    if style == "photo":
        offset = offset + rng.uniform(-0.25, 0.25, size=2) * FRAME_WIDTH * labels["size_value"]
    basis = geometry.camera_basis(camera)  # columns: right, down, forward
    position = basis[:, 0] * offset[0] + basis[:, 1] * offset[1]
    return tuple(float(v) for v in position)


def make_example(options: Options, split: str, index: int) -> dict[str, np.ndarray]:
    labels = sample_labels(options, split, index)
    style = common.style_for(options, split)
    look = common.example_rng(options, STREAM, split, index, common.STYLE)
    camera = Camera.orbit(labels["azimuth_deg"], labels["elevation_deg"], CAMERA_DISTANCE, fov_deg=FOV_DEG)
    primitive = _primitive(labels)
    if style == "photo":
        primitive = styling.with_specular((primitive,), look.uniform(0.2, 0.5))[0]
    obj = SceneObject(primitives=(primitive,), class_id=FIRST_THING_CLASS + labels["shape"], instance_id=1,
                      position=_placement(options, labels, camera, style, look), yaw=labels["yaw"])
    scene = Scene(objects=(obj,), background=styling.background(style, look), flat_shading=style == "clean")
    light = styling.photo_light(look) if style == "photo" else Light()
    height, width = options.image_size
    result = render(scene, camera, light, height, width)
    return {
        "image": styling.finish(result.rgb, style, look),
        "label": common.int64(labels["shape"]),
        **{key: common.int64(labels[key]) for key in ("shape", "color", "size", "texture")},
        "size_value": common.float32(labels["size_value"]),
        "mask": result.mask.astype(np.uint8),
    }


def label_names(options: Options) -> dict[str, list[str]]:
    sizes = list(SIZE_NAMES_3) if options.size_bins == 3 else [f"size{i}" for i in range(options.size_bins)]
    return {"label": list(SHAPES), "shape": list(SHAPES), "color": [name for name, _ in COLORS],
            "size": sizes, "texture": list(TEXTURES)}


def features(options: Options):
    names = label_names(options)
    height, width = options.image_size
    return common.F.FeaturesDict({
        "image": common.image_feature(height, width),
        **{key: common.class_feature(names[key]) for key in names},
        "size_value": common.scalar_feature(np.float32),
        "mask": common.dense_feature((height, width), np.uint8),
    })


VARIANT = common.Variant(
    name="attributes",
    description="one primitive with independent shape, colour, size and texture (label = shape)",
    Options=Options,
    make_example=make_example,
    make_features=features,
    make_label_names=label_names,
)
