"""Small geometry helpers of the toyworld renderer, and boxes from instance maps.

Frames (see scene.py): the world is right-handed with z up; the camera frame has x to the right,
y down and z forward (the optical axis), so a pixel's ray is (x, y, 1) in camera coordinates and
the ray parameter of a hit is directly its z-depth.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from garden.data.toyworld.scene import Camera


def rotation_x(angle: float) -> np.ndarray:
    """3x3 rotation by `angle` radians about the x axis (right-handed)."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rotation_y(angle: float) -> np.ndarray:
    """3x3 rotation by `angle` radians about the y axis (right-handed)."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rotation_z(angle: float) -> np.ndarray:
    """3x3 rotation by `angle` radians about the z axis (right-handed): an object's yaw."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def as_rotation_tuple(matrix: np.ndarray) -> tuple[tuple[float, float, float], ...]:
    """A 3x3 matrix as the hashable tuple-of-tuples that `Primitive.rotation` stores."""
    m = np.asarray(matrix, dtype=np.float64).reshape(3, 3)
    return tuple(tuple(float(v) for v in row) for row in m)


def _cross(a, b) -> tuple[float, float, float]:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def camera_basis(camera: Camera) -> np.ndarray:
    """World-from-camera rotation: columns are the camera's right, down and forward axes in world.

    right = forward x up and down = forward x right make (right, down, forward) right-handed.
    When `up` is (nearly) parallel to the viewing direction the basis is undefined; we then fall
    back to the world y axis (and x after it) as `up` so that straight-down views still work.
    Plain Python floats: this runs once per render on 3-vectors, where numpy's call overhead
    would dominate.
    """
    forward = [float(t) - float(p) for t, p in zip(camera.look_at, camera.position)]
    norm = math.sqrt(sum(v * v for v in forward))
    if norm == 0.0:
        raise ValueError("camera.look_at must differ from camera.position")
    forward = [v / norm for v in forward]
    for up in (tuple(float(v) for v in camera.up), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0)):
        right = _cross(forward, up)
        right_norm = math.sqrt(sum(v * v for v in right))
        if right_norm > 1e-9:
            break
    right = [v / right_norm for v in right]
    down = _cross(forward, right)
    return np.array([right, down, forward]).T


def focal_length_px(width: int, fov_deg: float) -> float:
    """Focal length in pixels for a horizontal field of view `fov_deg` over `width` pixels."""
    return 0.5 * width / math.tan(math.radians(fov_deg) / 2.0)


@functools.lru_cache(maxsize=32)
def pixel_grid(height: int, width: int, fov_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Camera-plane coordinates (x/z for columns, y/z for rows) of the pixel centres.

    Pixel (i, j) has its centre at (j + 0.5, i + 0.5); its ray is (xs[j], ys[i], 1). Square
    pixels, principal point at the image centre. Cached (read-only) because every render of a
    dataset uses the same few image sizes.
    """
    f = focal_length_px(width, fov_deg)
    xs = ((np.arange(width, dtype=np.float64) + 0.5 - width / 2.0) / f).astype(np.float32)
    ys = ((np.arange(height, dtype=np.float64) + 0.5 - height / 2.0) / f).astype(np.float32)
    xs.flags.writeable = False
    ys.flags.writeable = False
    return xs, ys


def boxes_from_instance_map(instance_map: np.ndarray, segmentation: np.ndarray
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tight boxes of every instance present in `instance_map` (ids > 0), sorted by id.

    Returns `(boxes, labels, instance_ids)`: boxes float32 [N, 4] as normalised
    (ymin, xmin, ymax, xmax) where the max edges are exclusive ((row_max + 1) / H), so a box
    covering the whole image is (0, 0, 1, 1); labels int64 [N] the semantic class found under
    the instance; instance_ids int64 [N].
    """
    instance_map = np.asarray(instance_map)
    segmentation = np.asarray(segmentation)
    if instance_map.shape != segmentation.shape or instance_map.ndim != 2:
        raise ValueError(f"instance_map {instance_map.shape} and segmentation {segmentation.shape} "
                         "must be two equal [H, W] maps")
    height, width = instance_map.shape
    rows, cols = np.nonzero(instance_map > 0)
    values = instance_map[rows, cols]
    # return_index gives each id's first pixel in raster order, which names its class (the
    # renderer writes one class per instance, so any pixel would do).
    ids, first = np.unique(values, return_index=True)
    n = ids.size
    if n == 0:
        return (np.zeros((0, 4), np.float32), np.zeros((0,), np.int64), np.zeros((0,), np.int64))
    slot = np.searchsorted(ids, values)
    row_min = np.full(n, height, np.int64)
    col_min = np.full(n, width, np.int64)
    row_max = np.full(n, -1, np.int64)
    col_max = np.full(n, -1, np.int64)
    np.minimum.at(row_min, slot, rows)
    np.minimum.at(col_min, slot, cols)
    np.maximum.at(row_max, slot, rows)
    np.maximum.at(col_max, slot, cols)
    labels = segmentation[rows[first], cols[first]].astype(np.int64)
    boxes = np.stack([row_min / height, col_min / width,
                      (row_max + 1) / height, (col_max + 1) / width], axis=1).astype(np.float32)
    return boxes, labels, ids.astype(np.int64)
