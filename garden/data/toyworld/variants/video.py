"""`video`: clips of T frames with moving toys and a moving camera (seed_002_ch6_7.md B7).

B7's synthetic generator: ground, wall and sky as stuff; toys as things; objects move with
constant velocity plus noise and enter and leave the view; instance ids stay the same over
the clip; per frame the image, semantic map, instance map and z-depth. Vehicles drive along
their heading; towers, chairs and lamps stand still. Toys start without overlapping but are
not collision-checked while they move (they may pass through each other, rarely). As in the
scenes variant, a wall `wall_height` metres tall is there in `wall_probability` of the clips
(all by default), and the sky shows over it when the camera pitch is below about half the
vertical field of view (at the default elevations in about 70% of the frames).

Per-frame boxes: `boxes` is float32 [T, N, 4] over the N instances that are visible in at
least one frame of the clip (sorted by id), with `box_labels` / `box_instances` int64 [N]
naming them once for the whole clip (ids are stable, so one row per instance). A frame in
which instance n is not visible has boxes[t, n] = (0, 0, 0, 0) (zero area). TFDS stores it as
a Tensor of shape (T, None, 4).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from pydantic import Field, model_validator

from garden.data.toyworld import toys
from garden.data.toyworld.render import render
from garden.data.toyworld.scene import Camera, Light, SceneObject
from garden.data.toyworld.variants import common, layout, styling

STREAM = 4
FOV_DEG = 45.0
LOOK_AT_HEIGHT = 0.2


class Options(layout.LayoutOptions):
    image_size: common.ImageSize = (64, 96)
    num_train: int = Field(200, ge=0, le=100_000)
    num_validation: int = Field(20, ge=0, le=100_000)
    num_test: int = Field(40, ge=0, le=100_000)
    num_frames: int = Field(6, ge=1, le=64)
    min_objects: int = Field(2, ge=1, le=12)
    max_objects: int = Field(5, ge=1, le=12)
    scale_range: tuple[float, float] = Field((0.6, 1.1), description="toy scale factors, 0.2 <= low <= high <= 2")
    area_half_extent: float = Field(2.0, ge=0.5, le=4.0, description="toys start in [-a, a]^2 metres")
    elevation_range: tuple[float, float] = Field((5.0, 18.0), description="initial camera elevation, degrees")
    speed_range: tuple[float, float] = Field((0.08, 0.25), description="metres per frame, 0 <= low <= high")
    motion_noise: float = Field(0.02, ge=0.0, le=0.5, description="std of the per-frame velocity noise, metres")
    camera_speed: float = Field(0.08, ge=0.0, le=1.0, description="max look-at drift, metres per frame")
    camera_turn: float = Field(4.0, ge=0.0, le=30.0, description="max azimuth change, degrees per frame")

    @model_validator(mode="after")
    def _check_motion(self) -> "Options":
        layout.check_ordered("speed_range", self.speed_range, 0.0, 2.0)
        return self


@dataclasses.dataclass(frozen=True)
class Track:
    toy: layout.Toy
    instance_id: int
    positions: np.ndarray  # [T, 2] ground positions
    yaw: float


def sample_content(options: Options, split: str, index: int) -> dict:
    """Tracks of the toys and the camera path: everything the labels depend on."""
    rng = common.example_rng(options, STREAM, split, index, common.CONTENT)
    frames = options.num_frames
    count = int(rng.integers(options.min_objects, options.max_objects + 1))
    candidates = [layout.sample_toy(rng, options.num_categories, options.instances_per_category,
                                    options.scale_range) for _ in range(count)]
    spots = layout.place(rng, [t.radius for t in candidates], options.area_half_extent)
    tracks = []
    for i, (toy, spot) in enumerate(zip(candidates, spots)):
        heading = float(rng.uniform(0.0, 2 * np.pi))
        moving = toys.CATEGORIES[toy.category] in toys.VEHICLES
        speed = float(rng.uniform(*options.speed_range)) if moving else 0.0
        velocity = speed * np.array([np.cos(heading), np.sin(heading)])
        noise = rng.normal(0.0, options.motion_noise, size=(frames - 1, 2)) if moving else np.zeros((frames - 1, 2))
        if spot is None:
            continue
        steps = np.concatenate([np.zeros((1, 2)), velocity + noise]).cumsum(axis=0)
        tracks.append(Track(toy, i + 1, np.asarray(spot) + steps, heading))
    t = np.arange(frames, dtype=np.float64)
    # Aim near the first toy (it always gets a spot), so that no clip starts empty.
    look0 = np.append(tracks[0].positions[0] + rng.uniform(-0.4, 0.4, size=2), LOOK_AT_HEIGHT)
    drift = np.append(rng.uniform(-options.camera_speed, options.camera_speed, size=2), 0.0)
    camera = {
        "look_at": look0 + t[:, None] * drift,
        "azimuth_deg": rng.uniform(-40.0, 40.0) + t * rng.uniform(-options.camera_turn, options.camera_turn),
        "elevation_deg": np.clip(rng.uniform(*options.elevation_range) + t * rng.uniform(-1.5, 1.5), 3.0, 85.0),
        "distance": float(rng.uniform(3.2, 4.2)),
    }
    return {"tracks": tracks, "camera": camera, "wall": bool(rng.uniform() < options.wall_probability)}


def _frame_objects(tracks: list[Track], frame: int, specular: float | None) -> list[SceneObject]:
    objects = []
    for track in tracks:
        primitives = track.toy.primitives
        if specular is not None:
            primitives = styling.with_specular(primitives, specular)
        x, y = track.positions[frame]
        objects.append(SceneObject(primitives=primitives, class_id=toys.class_id(track.toy.category),
                                   instance_id=track.instance_id, position=(float(x), float(y), 0.0),
                                   yaw=track.yaw))
    return objects


def _clip_boxes(frames: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-frame boxes scattered into [T, N, 4] over the instances seen in any frame."""
    ids = np.unique(np.concatenate([f["box_instances"] for f in frames]).astype(np.int64))
    boxes = np.zeros((len(frames), ids.size, 4), np.float32)
    labels = np.zeros((ids.size,), np.int64)
    for t, f in enumerate(frames):
        slots = np.searchsorted(ids, f["box_instances"])
        boxes[t, slots] = f["boxes"]
        labels[slots] = f["box_labels"]
    return {"boxes": boxes, "box_labels": labels, "box_instances": ids}


def make_example(options: Options, split: str, index: int) -> dict[str, np.ndarray]:
    content = sample_content(options, split, index)
    style = common.style_for(options, split)
    look = common.example_rng(options, STREAM, split, index, common.STYLE)
    specular = float(look.uniform(0.2, 0.5)) if style == "photo" else None
    ground, wall, sky = layout.stage(style, look)
    light = styling.photo_light(look) if style == "photo" else Light()
    cam = content["camera"]
    height, width = options.image_size
    keys = ("image", "segmentation", "instance_map", "depth", "normals", "mask")
    stacks: dict[str, list[np.ndarray]] = {key: [] for key in keys}
    frame_boxes = []
    for t in range(options.num_frames):
        look_at = cam["look_at"][t].copy()
        if style == "photo":  # hand-held camera shake
            look_at += look.normal(0.0, 0.03, size=3)
        camera = Camera.orbit(float(cam["azimuth_deg"][t]), float(cam["elevation_deg"][t]), cam["distance"],
                              look_at=tuple(float(v) for v in look_at), fov_deg=FOV_DEG)
        scene = layout.make_scene(_frame_objects(content["tracks"], t, specular), style, ground,
                                  wall if content["wall"] else None, sky, options.wall_height)
        result = render(scene, camera, light, height, width)
        stacks["image"].append(styling.finish(result.rgb, style, look))
        stacks["segmentation"].append(result.segmentation.astype(np.int32))
        stacks["instance_map"].append(result.instance_map.astype(np.int32))
        stacks["depth"].append(result.depth.astype(np.float32))
        stacks["normals"].append(result.normals.astype(np.float32))
        stacks["mask"].append(result.mask.astype(np.uint8))
        frame_boxes.append(layout.boxes(result.instance_map, result.segmentation))
    return {**{key: np.stack(value) for key, value in stacks.items()}, **_clip_boxes(frame_boxes)}


def label_names(options: Options) -> dict[str, list[str]]:
    return layout.label_names(options.num_categories)


def features(options: Options):
    T = options.num_frames
    height, width = options.image_size
    return common.F.FeaturesDict({
        "image": common.F.Video(shape=(T, height, width, 3)),  # PNG per frame, uint8 [T, H, W, 3]
        **layout.dense_label_features(T, height, width),
        "boxes": common.F.Tensor(shape=(T, None, 4), dtype=np.float32),
        "box_labels": common.F.Tensor(shape=(None,), dtype=np.int64),
        "box_instances": common.F.Tensor(shape=(None,), dtype=np.int64),
    })


VARIANT = common.Variant(
    name="video",
    description="clips of moving toys and a moving camera; per-frame dense labels, stable instance ids",
    Options=Options,
    make_example=make_example,
    make_features=features,
    make_label_names=label_names,
)
