"""Vectorised numpy ray caster for toyworld scenes: RGB plus exact dense labels.

One primary ray per pixel, cast from the camera centre through the pixel centre. Rays are kept
unnormalised as (x, y, 1) in the camera frame (x right, y down, z forward), so the ray parameter
of a hit *is* its z-depth, and a rotation or per-axis scaling of the ray keeps that parameter.

Every primitive is intersected in its *normalised frame*: its local frame scaled per axis so that
the solid becomes a unit shape (unit sphere, cube [-1, 1]^3, unit cylinder |z| <= 1, unit cone
with base at z = 0 and apex at z = 1, capsule of radius 1). The camera-to-normalised affine maps
of all primitives are computed in one batch, and only the pixels inside the projection of a
primitive's bounding box are tested (array slices, no gathers), so a small object costs little.

Once the nearest hit of every pixel is known (the id of the winning surface in an id map), the
pixels are sorted by that id (a radix sort of small ints) and normals, textures and shading are
computed per surface on contiguous slices, for visible points only. Per-pixel vectors are kept
component-major ([3, N]) because numpy arithmetic on whole rows is much faster than on [N, 3].

Shading: Lambert (cosine) diffuse from the directional light plus ambient, and a Blinn-Phong
highlight (J. F. Blinn, "Models of light reflection for computer synthesized pictures",
SIGGRAPH 1977) weighted by `Material.specular`. The ground and the wall receive hard shadows of
the objects: one exact shadow ray per plane pixel, after a cull by the bounding boxes of the
objects and primitives seen along the light.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, NamedTuple

import numpy as np

from garden.data.toyworld import geometry, textures
from garden.data.toyworld.scene import GROUND_CLASS, SKY_CLASS, WALL_CLASS, Camera, Light, Material, Scene

EPS = 1e-4  # smallest accepted ray parameter: a hit must lie in front of the ray origin
SHININESS = 32.0  # Blinn-Phong exponent
_MIN_COSINE = 0.1  # floor of |cos(view, normal)| when estimating a pixel's footprint on a surface
_INF = np.float32(np.inf)


@dataclasses.dataclass(frozen=True)
class RenderResult:
    """Dense outputs of one render; all arrays are [H, W, ...] numpy arrays.

    rgb float32 [H,W,3] in [0,1]; depth float32 [H,W] z-depth in metres, 0 where nothing is hit;
    normals float32 [H,W,3] unit camera-frame normals facing the camera, 0 where nothing is hit;
    segmentation int32 [H,W] semantic class; instance_map int32 [H,W] object instance id, 0 for
    stuff; mask uint8 [H,W] 1 on objects.
    """

    rgb: np.ndarray
    depth: np.ndarray
    normals: np.ndarray
    segmentation: np.ndarray
    instance_map: np.ndarray
    mask: np.ndarray


class _Prim(NamedTuple):
    """A primitive with everything the ray caster needs, precomputed in the camera frame."""

    kind: str
    origin: list[float]  # the camera centre in the normalised frame
    camera_outside: bool  # the camera is outside the solid: primary rays only need entries
    to_normalised: np.ndarray  # float32 [3, 3], T: camera-frame directions -> normalised frame
    offset: np.ndarray  # float32 [3, 1], the origin again, for batched point transforms
    normal_matrix: np.ndarray  # float32 [3, 3]: normalised-frame gradient -> camera-frame normal
    scale: np.ndarray  # float32 [3, 1]: local metres per normalised unit
    param: float  # capsule: half-length / radius; unused otherwise
    window: tuple[slice, slice] | None  # pixels whose rays may hit it (None: off screen)
    corners: np.ndarray  # float64 [8, 3]: bounding box corners in the camera frame
    material: Material
    obj: int  # index of the owning object in scene.objects


# --------------------------------------------------------------------------------------------
# Ray / primitive intersection in the normalised frames.
#
# Each function takes the ray origin `o` and direction `d` as 3-sequences of components that
# are float32 arrays or scalars (primary rays: one origin, many directions; shadow rays: many
# origins, one direction), the kind's parameter and `entry_only` (the origins are known to be
# outside the solid, which allows cheaper tests), and returns the float32 ray parameter of the
# first hit beyond EPS, +inf where the ray misses. Scalars must be Python floats or np.float32
# so that the results stay float32 (numpy >= 2 treats Python scalars as weakly typed).
# --------------------------------------------------------------------------------------------

def _quadric_first_hit(a, b, c, entry_only):
    """First root beyond EPS of a t^2 + 2 b t + c = 0 (a > 0), or +inf.

    The near root is the entry point of a convex quadric. With `entry_only` (the origin is known
    to be outside) it is the only candidate, and a negative discriminant simply gives NaN, which
    fails the comparison; otherwise the far root (the exit, for an origin inside) is the fallback.
    """
    disc = b * b - a * c
    if entry_only:
        t = (-b - np.sqrt(disc)) / a
        return np.where(t > EPS, t, _INF)
    root = np.sqrt(np.maximum(disc, 0.0))
    t0 = (-b - root) / a
    t1 = (-b + root) / a
    t = np.where(t0 > EPS, t0, t1)
    return np.where((disc >= 0.0) & (t > EPS), t, _INF)


def _hit_ellipsoid(o, d, param, entry_only):
    """Unit sphere |p| = 1."""
    ox, oy, oz = o
    dx, dy, dz = d
    return _quadric_first_hit(dx * dx + dy * dy + dz * dz,
                              ox * dx + oy * dy + oz * dz,
                              ox * ox + oy * oy + oz * oz - 1.0, entry_only)


def _slab(oi, di):
    """Entry and exit parameters of the slab |p_i| <= 1 (Kay and Kajiya, SIGGRAPH 1986).

    A zero direction component gives infinite parameters of the right signs; the NaN of the
    degenerate 0 * inf case (origin exactly on the slab boundary) is dropped by fmin/fmax.
    """
    inv = 1.0 / di
    t1 = (-1.0 - oi) * inv
    t2 = (1.0 - oi) * inv
    return np.fmin(t1, t2), np.fmax(t1, t2)


def _hit_box(o, d, param, entry_only):
    """Cube [-1, 1]^3 as the intersection of three slabs."""
    near_x, far_x = _slab(o[0], d[0])
    near_y, far_y = _slab(o[1], d[1])
    near_z, far_z = _slab(o[2], d[2])
    near = np.fmax(np.fmax(near_x, near_y), near_z)
    far = np.fmin(np.fmin(far_x, far_y), far_z)
    if entry_only:
        return np.where((far >= near) & (near > EPS), near, _INF)
    t = np.where(near > EPS, near, far)
    return np.where((far >= near) & (t > EPS), t, _INF)


def _hit_cylinder(o, d, param, entry_only):
    """Capped unit cylinder x^2 + y^2 <= 1, |z| <= 1: the infinite cylinder's interval
    intersected with the z slab. A ray parallel to the axis (a = 0) is handled by flooring a at
    1e-12, which turns its interval into (-huge, +huge) inside the circle and empty outside."""
    ox, oy, oz = o
    dx, dy, dz = d
    a = np.maximum(dx * dx + dy * dy, np.float32(1e-12))
    b = ox * dx + oy * dy
    root = np.sqrt(b * b - a * (ox * ox + oy * oy - 1.0))  # NaN where the line misses
    near_z, far_z = _slab(oz, dz)
    near = np.maximum((-b - root) / a, near_z)  # maximum/minimum propagate the NaN of a miss
    far = np.minimum((-b + root) / a, far_z)
    if entry_only:
        return np.where((far >= near) & (near > EPS), near, _INF)
    t = np.where(near > EPS, near, far)
    return np.where((far >= near) & (t > EPS), t, _INF)


def _hit_cone(o, d, param, entry_only):
    """Unit cone x^2 + y^2 <= (1 - z)^2, 0 <= z <= 1 (apex at z = 1, base disc at z = 0).

    Candidates: both roots of the double cone's quadric that lie on the lower nappe between base
    and apex, and the base disc; the nearest beyond EPS wins (for an origin inside, that is the
    exit). Roots use the cancellation-free form q = -(b + sign(b) sqrt(disc)), t = q / a and
    c / q (Press et al., Numerical Recipes, section 5.6), which also copes with a = 0 (a ray
    parallel to a generatrix).
    """
    ox, oy, oz = o
    dx, dy, dz = d
    uo = 1.0 - oz
    a = dx * dx + dy * dy - dz * dz
    b = ox * dx + oy * dy + uo * dz
    c = ox * ox + oy * oy - uo * uo
    q = -(b + np.copysign(np.sqrt(b * b - a * c), b))  # NaN where the line misses the double cone
    best = None
    for r in (q / a, c / q):
        z = oz + r * dz
        valid = (r > EPS) & (z >= 0.0) & (z <= 1.0)
        best = np.where(valid, r, _INF) if best is None else np.where(valid & (r < best), r, best)
    tb = -oz / dz
    xb = ox + tb * dx
    yb = oy + tb * dy
    return np.where((tb > EPS) & (xb * xb + yb * yb <= 1.0) & (tb < best), tb, best)


def _hit_capsule(o, d, half_length, entry_only):
    """Capsule of radius 1 around the segment |z| <= L: the union of a side wall and two
    spheres, so the first hit is the minimum of the parts' first hits."""
    ox, oy, oz = o
    dx, dy, dz = d
    axy = dx * dx + dy * dy
    bxy = ox * dx + oy * dy
    cxy = ox * ox + oy * oy - 1.0
    side = _quadric_first_hit(np.maximum(axy, np.float32(1e-12)), bxy, cxy, entry_only)
    side = np.where(np.abs(oz + side * dz) <= half_length, side, _INF)
    a = axy + dz * dz
    for zc in (half_length, -half_length):
        ozc = oz - zc
        side = np.minimum(side, _quadric_first_hit(a, bxy + ozc * dz, cxy + ozc * ozc, entry_only))
    return side


def _outside(kind: str, o: np.ndarray, param: float) -> bool:
    """Whether a normalised-frame point lies outside the unit solid (then only entries count)."""
    x, y, z = (float(v) for v in o)
    if kind == "ellipsoid":
        return x * x + y * y + z * z > 1.0
    if kind == "box":
        return max(abs(x), abs(y), abs(z)) > 1.0
    if kind == "cylinder":
        return x * x + y * y > 1.0 or abs(z) > 1.0
    if kind == "cone":
        return not (0.0 <= z <= 1.0 and x * x + y * y <= (1.0 - z) ** 2)
    dz = abs(z) - param  # capsule: distance to the segment
    return x * x + y * y + max(dz, 0.0) ** 2 > 1.0


_HIT: dict[str, Callable] = {
    "ellipsoid": _hit_ellipsoid,
    "box": _hit_box,
    "cylinder": _hit_cylinder,
    "cone": _hit_cone,
    "capsule": _hit_capsule,
}


# --------------------------------------------------------------------------------------------
# Surface normals in the normalised frames, from hit points p [3, N]. Each returns the gradient
# of the implicit surface (any length); the normal matrix maps it to the camera frame. Faces of
# piecewise surfaces are chosen by the smaller distance in metres, so a point near an edge picks
# the face it lies on up to rounding.
# --------------------------------------------------------------------------------------------

def _normal_ellipsoid(p, prim):
    return p


def _normal_box(p, prim):
    gap = (1.0 - np.abs(p)) * prim.scale  # metres from the point to each axis' face plane
    return np.where(gap == gap.min(axis=0), np.sign(p), np.float32(0.0))  # edges: both faces


def _normal_cylinder(p, prim):
    x, y, z = p
    side_gap = np.abs(np.sqrt(x * x + y * y) - 1.0) * min(prim.scale[0, 0], prim.scale[1, 0])
    side = np.abs(np.abs(z) - 1.0) * prim.scale[2, 0] >= side_gap
    return np.stack([x * side, y * side, np.where(side, np.float32(0.0), np.sign(z))])


def _normal_cone(p, prim):
    x, y, z = p
    side_gap = np.abs(np.sqrt(x * x + y * y) - (1.0 - z)) * min(prim.scale[0, 0], prim.scale[1, 0])
    side = np.abs(z) * prim.scale[2, 0] >= side_gap
    # Gradient of x^2 + y^2 - (1 - z)^2; the tiny term keeps the normal at the apex finite (+z).
    return np.stack([x * side, y * side, np.where(side, 1.0 - z + 1e-6, np.float32(-1.0))])


def _normal_capsule(p, prim):
    n = p.copy()
    n[2] -= np.clip(p[2], -prim.param, prim.param)
    return n


_NORMAL: dict[str, Callable] = {
    "ellipsoid": _normal_ellipsoid,
    "box": _normal_box,
    "cylinder": _normal_cylinder,
    "cone": _normal_cone,
    "capsule": _normal_capsule,
}


# --------------------------------------------------------------------------------------------
# Scene preparation.
# --------------------------------------------------------------------------------------------

def _normalisation(kind: str, size) -> tuple[tuple[float, float, float], float, tuple, tuple]:
    """(scale, param, box_lo, box_hi) of a primitive.

    `scale` maps normalised units to local metres per axis; [box_lo, box_hi] is the bounding box
    of the unit shape in the normalised frame (for the screen window and the shadow cull). A
    capsule's radius is size[0] (scene.py gives it twice).
    """
    sx, sy, sz = (float(v) for v in size)
    if not (min(sx, sy, sz) > 0.0 or (kind == "capsule" and sx > 0.0 and sz == 0.0)):
        raise ValueError(f"{kind} size {tuple(size)} must be positive (a capsule's half-length may be 0)")
    if kind in ("ellipsoid", "box", "cylinder"):
        return (sx, sy, sz), 0.0, (-1.0, -1.0, -1.0), (1.0, 1.0, 1.0)
    if kind == "cone":
        return (sx, sy, sz), 0.0, (-1.0, -1.0, 0.0), (1.0, 1.0, 1.0)
    if kind == "capsule":
        half = sz / sx
        return (sx, sx, sx), half, (-1.0, -1.0, -1.0 - half), (1.0, 1.0, 1.0 + half)
    raise ValueError(f"unknown primitive kind {kind!r}; expected one of {sorted(_HIT)}")


_CORNER_SIGNS = np.array([[i & 1, (i >> 1) & 1, (i >> 2) & 1] for i in range(8)], dtype=np.float64)


def _windows(corners: np.ndarray, focal: float, height: int, width: int) -> list[tuple[slice, slice] | None]:
    """Pixel rows and columns whose rays may meet a convex body inside each box [P, 8, 3].

    With all corners in front of the camera, the projection of a box is the convex hull of its
    projected corners, so their bounding rectangle (plus a pixel for rounding) is conservative.
    A box reaching behind the camera gets the whole image.
    """
    z = corners[..., 2]
    behind = (z.min(axis=1) <= 1e-6).tolist()
    uv = corners[..., :2] / np.maximum(z, 1e-6)[..., None]
    lows, highs = uv.min(axis=1).tolist(), uv.max(axis=1).tolist()
    windows = []
    for full, (u0, v0), (u1, v1) in zip(behind, lows, highs):
        if full:
            windows.append((slice(0, height), slice(0, width)))
            continue
        # Pixel j's centre is at x = (j + 0.5 - W/2) / f: first and one-past-last pixels inside.
        c0 = max(0, math.ceil(u0 * focal + width / 2.0 - 0.5) - 1)
        c1 = min(width, math.floor(u1 * focal + width / 2.0 - 0.5) + 2)
        r0 = max(0, math.ceil(v0 * focal + height / 2.0 - 0.5) - 1)
        r1 = min(height, math.floor(v1 * focal + height / 2.0 - 0.5) + 2)
        windows.append((slice(r0, r1), slice(c0, c1)) if c0 < c1 and r0 < r1 else None)
    return windows


def _prepare(scene: Scene, world_from_camera: np.ndarray, camera_position: np.ndarray,
             focal: float, height: int, width: int) -> list[_Prim]:
    """Camera-frame transforms (local -> object -> world -> camera) of all primitives at once.

    Per-object yaw matrices are written out in plain Python; everything per primitive is one
    batch of numpy calls whatever the number of primitives.
    """
    owned = [(index, prim) for index, obj in enumerate(scene.objects) for prim in obj.primitives]
    if not owned:
        return []
    shapes = [_normalisation(prim.kind, prim.size) for _, prim in owned]
    scale = np.array([s[0] for s in shapes])
    box_lo = np.array([s[2] for s in shapes])
    box_hi = np.array([s[3] for s in shapes])
    camera_from_world = world_from_camera.T
    # Object -> camera: rotation camera_from_world @ yaw, translation camera_from_world @ (pos - cam).
    object_rows, object_offsets = [], []
    for obj in scene.objects:
        c, s = math.cos(obj.yaw), math.sin(obj.yaw)
        object_rows.append(((c, -s, 0.0), (s, c, 0.0), (0.0, 0.0, 1.0)))
        object_offsets.append(tuple(float(p) - float(q) for p, q in zip(obj.position, camera_position)))
    camera_from_object = camera_from_world @ np.array(object_rows)
    object_in_camera = np.array(object_offsets) @ world_from_camera
    owner = [index for index, _ in owned]
    # [R | c] per primitive: `rotation` holds the rows of the local -> object matrix R (scene.py),
    # so a local point p sits at R @ p + c in the object frame (as toys.primitive_corners has it).
    local_rows = np.array([tuple(row) + (center,) for _, prim in owned
                           for row, center in zip(prim.rotation, prim.center)], np.float64).reshape(-1, 3, 4)
    # Local -> camera rotation and origin, one batched product: camera_from_object @ [R | c].
    placed = camera_from_object[owner] @ local_rows  # [P, 3, 4]
    camera_from_local = placed[:, :, :3]
    local_in_camera = placed[:, :, 3] + object_in_camera[owner]
    to_normalised = camera_from_local.transpose(0, 2, 1) / scale[:, :, None]  # diag(1/s) @ local_from_camera
    origin = -(to_normalised @ local_in_camera[:, :, None])[:, :, 0]
    # Bounding box corners in the camera frame (screen windows, shadow culling).
    box = (box_lo[:, None, :] + (box_hi - box_lo)[:, None, :] * _CORNER_SIGNS) * scale[:, None, :]
    corners = box @ camera_from_local.transpose(0, 2, 1) + local_in_camera[:, None, :]
    windows = _windows(corners, focal, height, width)

    origins = origin.tolist()
    to_normalised32 = to_normalised.astype(np.float32)
    origin32 = origin.astype(np.float32)[:, :, None]
    normal_matrix32 = (camera_from_local / scale[:, None, :]).astype(np.float32)
    scale32 = scale.astype(np.float32)[:, :, None]
    return [_Prim(prim.kind, origins[k], _outside(prim.kind, origins[k], shapes[k][1]),
                  to_normalised32[k], origin32[k], normal_matrix32[k], scale32[k], shapes[k][1], windows[k],
                  corners[k], prim.material, index)
            for k, (index, prim) in enumerate(owned)]


@functools.lru_cache(maxsize=32)
def _camera_rays(height: int, width: int, fov_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel rays (x, y, 1) [3, H, W] and their unit versions [3, H*W], cached per image
    geometry. A hit at z-depth t along pixel k lies at unit[:, k] * t / unit[2, k]."""
    xs, ys = geometry.pixel_grid(height, width, fov_deg)
    rays = np.empty((3, height, width), np.float32)
    rays[0] = xs[None, :]
    rays[1] = ys[:, None]
    rays[2] = 1.0
    flat = rays.reshape(3, -1)
    unit = flat / np.sqrt((flat * flat).sum(axis=0))
    rays.flags.writeable = False
    unit.flags.writeable = False
    return rays, unit


# --------------------------------------------------------------------------------------------
# Visibility.
# --------------------------------------------------------------------------------------------

def _cast_plane(depth, ident, surface_id, xs, ys, normal_cam, numerator, up_cam=None, z_range=None):
    """Plane n.p = h (camera-frame normal n): t = (h - n.c) / (n.d) for every pixel ray d.

    With `z_range` = (camera height above the band's bottom, band height), only hits whose world
    z lies in the band count: z - z0 = camera term + t * (u.d), u the world up in camera frame.
    """
    denom = (float(normal_cam[1]) * ys + float(normal_cam[2]))[:, None] + float(normal_cam[0]) * xs[None, :]
    t = numerator / denom
    closer = (t > EPS) & (t < depth)
    if z_range is not None:
        rise = (float(up_cam[1]) * ys + float(up_cam[2]))[:, None] + float(up_cam[0]) * xs[None, :]
        z = z_range[0] + t * rise  # world height of the hit above the band's bottom
        closer &= (z >= 0.0) & (z <= z_range[1])
    np.copyto(depth, t, where=closer)
    np.copyto(ident, surface_id, where=closer)


def _cast_primitive(depth, ident, surface_id, rays, prim: _Prim):
    """Intersect the pixel rays of the primitive's window; keep hits nearer than before."""
    rows, cols = prim.window
    window = rays[:, rows, cols]
    directions = (prim.to_normalised @ window.reshape(3, -1)).reshape(window.shape)
    t = _HIT[prim.kind](prim.origin, directions, prim.param, prim.camera_outside)
    depth_w = depth[rows, cols]
    closer = t < depth_w
    np.copyto(depth_w, t, where=closer)
    np.copyto(ident[rows, cols], surface_id, where=closer)


def _light_frame(light: np.ndarray) -> np.ndarray:
    """Rows e1, e2, l: an orthonormal basis whose third axis is the unit light direction."""
    lx, ly, lz = (float(v) for v in light)
    # e1 = l x helper, with the helper axis (x or y) far from parallel to l; e2 = l x e1.
    e1 = (0.0, lz, -ly) if abs(lx) < 0.9 else (-lz, 0.0, lx)
    norm = math.sqrt(e1[0] ** 2 + e1[1] ** 2 + e1[2] ** 2)
    e1 = (e1[0] / norm, e1[1] / norm, e1[2] / norm)
    e2 = (ly * e1[2] - lz * e1[1], lz * e1[0] - lx * e1[2], lx * e1[1] - ly * e1[0])
    return np.array([e1, e2, (lx, ly, lz)])


def _in_shadow_boxes(q: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """[B, M] mask: can the ray towards the light from light-frame point q [3, M] (third axis
    along the light) meet a body whose light-frame bounding box is [lo[b], hi[b]]? Only if the
    point lies inside the box's extent across the light and not beyond its far end along it."""
    x, y, z = q[0], q[1], q[2]
    return ((x >= lo[:, 0:1]) & (x <= hi[:, 0:1]) & (y >= lo[:, 1:2]) & (y <= hi[:, 1:2])
            & (z <= hi[:, 2:3]))


def _shadowed(points: np.ndarray, light: np.ndarray, prims: list[_Prim]) -> np.ndarray:
    """Which camera-frame points [3, M] have an object between them and the directional light.

    In a frame whose third axis is the light, a point can only be shadowed by a body whose
    bounding box (from the corners of its primitives' boxes) covers it across the light; that
    cull, per object and then per primitive, leaves exact shadow-ray tests for the few points
    that may be shadowed.
    """
    occluded = np.zeros(points.shape[1], bool)
    frame = _light_frame(light)
    q = frame.astype(np.float32) @ points
    light32 = light.astype(np.float32)
    boxes = np.array([p.corners for p in prims]) @ frame.T  # [P, 8, 3] light-frame corners
    box_lo = (boxes.min(axis=1) - 1e-3).astype(np.float32)
    box_hi = (boxes.max(axis=1) + 1e-3).astype(np.float32)
    # Primitives come grouped by object (see _prepare): [start, stop) ranges of each object.
    starts = [k for k in range(len(prims)) if k == 0 or prims[k].obj != prims[k - 1].obj]
    groups = list(zip(starts, starts[1:] + [len(prims)]))
    object_lo = np.array([box_lo[a:b].min(axis=0) for a, b in groups])
    object_hi = np.array([box_hi[a:b].max(axis=0) for a, b in groups])
    for (a, b), mask in zip(groups, _in_shadow_boxes(q, object_lo, object_hi)):
        near = np.flatnonzero(mask)
        if near.size == 0:
            continue
        sub = np.take(points, near, axis=1)
        blocked = np.zeros(near.size, bool)
        for k, prim_mask in zip(range(a, b), _in_shadow_boxes(np.take(q, near, axis=1), box_lo[a:b], box_hi[a:b])):
            close = np.flatnonzero(prim_mask)
            if close.size == 0:
                continue
            prim = prims[k]
            o = prim.to_normalised @ np.take(sub, close, axis=1) + prim.offset
            d = prim.to_normalised @ light32  # np.float32 scalars keep the arithmetic in float32
            # Entry-only: a visible plane point is never inside a solid.
            blocked[close[_HIT[prim.kind](o, (d[0], d[1], d[2]), prim.param, True) < _INF]] = True
        occluded[near] = blocked
    return occluded


# --------------------------------------------------------------------------------------------
# The renderer.
# --------------------------------------------------------------------------------------------

def render(scene: Scene, camera: Camera, light: Light, height: int, width: int) -> RenderResult:
    """Ray-cast `scene` from `camera` under `light` into an H x W image with dense labels.

    Deterministic: the same inputs give bit-identical outputs. The cost grows with the screen
    area of the primitives, the number of visible surfaces and, with a ground or wall, the plane
    pixels whose shadow rays pass near objects.
    """
    height, width = int(height), int(width)
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _render(scene, camera, light, height, width)


class _Plane(NamedTuple):
    """The ground or the wall: world normal n and offset h of the plane n.p = h, its material,
    its surface id in the id map, and the world axes used as its texture coordinates."""

    normal: tuple[float, float, float]
    offset: float
    material: Material
    surface_id: int
    texture_axes: tuple[int, int, int]  # world axes as texture coordinates: (in-plane, normal, in-plane)
    top: float = math.inf  # the plane spans 0 <= world z <= top (the wall); inf: unbounded


def _render(scene: Scene, camera: Camera, light: Light, height: int, width: int) -> RenderResult:
    world_from_camera = geometry.camera_basis(camera)
    camera_position = np.asarray(camera.position, np.float64)
    fov = float(camera.fov_deg)
    focal = geometry.focal_length_px(width, fov)
    xs, ys = geometry.pixel_grid(height, width, fov)
    prims = _prepare(scene, world_from_camera, camera_position, focal, height, width)
    n_prims = len(prims)
    planes = []
    if scene.ground is not None:  # z = 0; stripes run along world x
        planes.append(_Plane((0.0, 0.0, 1.0), 0.0, scene.ground, n_prims, (1, 2, 0)))
    if scene.wall is not None:  # x = -wall_distance; stripes run along world y (vertical bands)
        planes.append(_Plane((1.0, 0.0, 0.0), -float(scene.wall_distance), scene.wall, n_prims + 1, (2, 0, 1),
                             float(scene.wall_height)))

    # Visibility: the nearest hit of every pixel and the id of its surface (-1: nothing).
    depth = np.full((height, width), _INF, np.float32)
    ident = np.full((height, width), -1, np.int8 if n_prims < 120 else np.int32)
    for plane in planes:
        normal_cam = world_from_camera.T @ plane.normal
        bounded = math.isfinite(plane.top)  # the wall: rays over its top see the sky
        _cast_plane(depth, ident, plane.surface_id, xs, ys, normal_cam,
                    plane.offset - float(np.dot(plane.normal, camera_position)),
                    world_from_camera[2] if bounded else None,
                    (float(camera_position[2]), plane.top) if bounded else None)
    rays, unit_rays = _camera_rays(height, width, fov)
    for k, prim in enumerate(prims):
        if prim.window is not None:
            _cast_primitive(depth, ident, k, rays, prim)

    # Group the pixels by surface: one stable (radix) sort, then a contiguous slice per surface.
    flat_id = ident.ravel()
    order = np.argsort(flat_id, kind="stable")
    bounds = np.cumsum(np.bincount(flat_id + 1, minlength=n_prims + 3)).tolist()
    n_sky = bounds[0]
    bounds = [b - n_sky for b in bounds]  # surface k occupies hit[bounds[k]:bounds[k + 1]]
    hit = order[n_sky:]
    t_hit = depth.ravel()[hit]
    view = np.take(unit_rays, hit, axis=1)  # unit view rays [3, N] (take: ~4x faster than [:, hit])
    distance = t_hit / view[2]  # along the ray: the ray (x, y, 1) has length 1 / unit_z
    points = view * distance  # camera-frame hit points [3, N]

    normals, local, cos_view = _surface_normals(points, view, prims, bounds, planes, world_from_camera,
                                                camera_position)
    # Metres covered by one pixel on the surface.
    footprint = distance / (focal * np.maximum(cos_view, _MIN_COSINE))
    albedo, specular = _surface_albedo(prims, local, points, footprint, bounds, planes, world_from_camera,
                                       camera_position)
    if scene.flat_shading:
        shaded = albedo
    else:
        receivers = slice(bounds[n_prims], bounds[n_prims + 2])  # the plane pixels
        shaded = _shade(normals, view, cos_view, albedo, specular, light, world_from_camera, points, receivers,
                        prims)

    # Scatter back to images.
    n_pixels = height * width
    if n_sky:
        rgb = textures.background_image(scene.background, height, width).reshape(n_pixels, 3).copy()
    else:
        rgb = np.empty((n_pixels, 3), np.float32)
    # Scatter [3, N] columns into [H*W, 3] rows through flat indices (faster than rgb[hit] = .T).
    flat_index = hit * 3 + np.arange(3)[:, None]
    rgb.reshape(-1)[flat_index] = shaded
    normal_image = np.zeros((n_pixels, 3), np.float32)
    normal_image.reshape(-1)[flat_index] = normals
    classes = np.array([SKY_CLASS] + [scene.objects[p.obj].class_id for p in prims] + [GROUND_CLASS, WALL_CLASS],
                       np.int32)
    instances = np.array([0] + [scene.objects[p.obj].instance_id for p in prims] + [0, 0], np.int32)
    lookup = ident.astype(np.intp) + 1
    instance_map = instances[lookup]
    return RenderResult(
        rgb=rgb.reshape(height, width, 3),
        depth=np.where(ident >= 0, depth, np.float32(0.0)),
        normals=normal_image.reshape(height, width, 3),
        segmentation=classes[lookup],
        instance_map=instance_map,
        mask=(instance_map > 0).view(np.uint8),
    )


def _surface_normals(points, view, prims, bounds, planes, world_from_camera, camera_position):
    """Unit camera-frame normals [3, N] facing the camera, each primitive's normalised-frame hit
    points (kept for its texture), and the cosine between normal and reversed view ray [N]."""
    normals = np.empty_like(points)
    local: dict[int, np.ndarray] = {}
    for k, prim in enumerate(prims):
        lo, hi = bounds[k], bounds[k + 1]
        if lo < hi:
            p = prim.to_normalised @ points[:, lo:hi] + prim.offset
            local[k] = p
            normals[:, lo:hi] = prim.normal_matrix @ _NORMAL[prim.kind](p, prim)
    cos_view = np.empty(points.shape[1], np.float32)
    solids = slice(0, bounds[len(prims)])
    if solids.stop:
        n = normals[:, solids]
        inv_norm = 1.0 / np.sqrt((n * n).sum(axis=0))
        cos = (n * view[:, solids]).sum(axis=0) * inv_norm
        n *= np.copysign(inv_norm, -cos)  # unit length, facing the camera
        cos_view[solids] = np.abs(cos)
    for plane in planes:
        lo, hi = bounds[plane.surface_id], bounds[plane.surface_id + 1]
        if lo < hi:
            # One normal per plane, turned towards the side the camera is on.
            side = float(np.dot(plane.normal, camera_position)) >= plane.offset
            normal = (world_from_camera.T @ plane.normal * (1.0 if side else -1.0)).astype(np.float32)
            normals[:, lo:hi] = normal[:, None]
            cos_view[lo:hi] = -(normal @ view[:, lo:hi])
    return normals, local, cos_view


def _surface_albedo(prims, local, points, footprint, bounds, planes, world_from_camera, camera_position):
    """Albedo [3, N] and highlight weight [N] of every visible point."""
    n = points.shape[1]
    albedo = np.empty((3, n), np.float32)
    specular = np.empty(n, np.float32)
    for k, p in local.items():
        lo, hi = bounds[k], bounds[k + 1]
        material = prims[k].material
        if material.texture == "solid":  # fast path: no points needed
            albedo[:, lo:hi] = np.asarray(material.color, np.float32)[:, None]
        else:
            albedo[:, lo:hi] = textures.surface_albedo(material, p * prims[k].scale, footprint[lo:hi])
        specular[lo:hi] = material.specular
    for plane in planes:
        lo, hi = bounds[plane.surface_id], bounds[plane.surface_id + 1]
        if lo < hi and plane.material.texture == "solid":
            albedo[:, lo:hi] = np.asarray(plane.material.color, np.float32)[:, None]
            specular[lo:hi] = plane.material.specular
        elif lo < hi:
            axes = list(plane.texture_axes)
            world = (world_from_camera[axes].astype(np.float32) @ points[:, lo:hi]
                     + camera_position[axes].astype(np.float32)[:, None])
            # The coordinate across the plane (second by construction of texture_axes) is the
            # plane's offset; set it exactly, or rounding noise around 0 would flip checker cells.
            world[1] = plane.offset
            albedo[:, lo:hi] = textures.surface_albedo(plane.material, world, footprint[lo:hi])
            specular[lo:hi] = plane.material.specular
    return albedo, specular


def _shade(normals, view, cos_view, albedo, specular, light: Light, world_from_camera, points, receivers, prims):
    """Lambert + ambient + Blinn-Phong, with object shadows on the `receivers` (plane pixels).

    With unit light l, unit view ray v and a normal n facing the viewer (n.v = -cos_view), the
    half vector is h = (l - v) / |l - v|, so n.h = (n.l + cos_view) / sqrt(2 - 2 l.v): no
    per-pixel vector arithmetic is needed beyond n.l and l.v.
    """
    direction = np.asarray(light.direction, np.float64)
    norm = float(np.linalg.norm(direction))
    if norm == 0.0:
        raise ValueError("light.direction must be non-zero")
    light_cam = world_from_camera.T @ (direction / norm)
    light32 = light_cam.astype(np.float32)
    cos_light = light32 @ normals
    cos_half = (cos_light + cos_view) / np.sqrt(np.maximum(2.0 - 2.0 * (light32 @ view), 1e-12))
    lit = cos_light > 0.0
    if receivers.stop > receivers.start and prims:
        lit[receivers] &= ~_shadowed(points[:, receivers], light_cam, prims)
    intensity = float(light.intensity)
    diffuse = float(light.ambient) + intensity * np.where(lit, cos_light, 0.0)
    highlight = np.where(lit, np.maximum(cos_half, 0.0), 0.0)
    for _ in range(int(math.log2(SHININESS))):  # x ** 32 by repeated squaring (SHININESS = 2^k)
        highlight *= highlight
    highlight *= specular * intensity
    color = np.asarray(light.color, np.float32)[:, None]
    return np.clip((albedo * diffuse + highlight) * color, 0.0, 1.0)
