"""The toyworld ray caster (render.py), its textures (textures.py) and geometry helpers.

Most checks compare against closed-form values: depths and normals of primitives seen along an
axis, the ray/plane depth of the ground, hand-computed boxes. Images are small (odd sizes put a
pixel centre exactly on the optical axis) so the whole file runs in a few seconds.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from garden.data.toyworld import geometry, textures
from garden.data.toyworld.geometry import boxes_from_instance_map
from garden.data.toyworld.render import RenderResult, render
from garden.data.toyworld.scene import (GROUND_CLASS, SKY_CLASS, WALL_CLASS, Background, Camera, Light, Material,
                                        Primitive, Scene, SceneObject)

RED = Material((0.8, 0.1, 0.1), specular=0.0)
SIZE = 33  # odd: the centre pixel's ray is the optical axis
CENTRE = SIZE // 2


def _scene(*primitives: Primitive, **kwargs) -> Scene:
    return Scene(objects=(SceneObject(primitives, class_id=3, instance_id=1),), **kwargs)


def _along_x(distance: float, height: float = 0.0) -> Camera:
    """Camera on the +x axis looking at the origin: camera frame x = world y, y = -world z."""
    return Camera(position=(distance, 0.0, height), look_at=(0.0, 0.0, height), fov_deg=40.0)


def _from_above(distance: float) -> Camera:
    """Camera on the +z axis looking straight down (up falls back to world y)."""
    return Camera(position=(0.0, 0.0, distance), look_at=(0.0, 0.0, 0.0), fov_deg=40.0)


def _camera_points(result: RenderResult, camera: Camera) -> np.ndarray:
    """Camera-frame hit points [H, W, 3] recovered from the depth map."""
    h, w = result.depth.shape
    xs, ys = geometry.pixel_grid(h, w, camera.fov_deg)
    return np.stack([xs[None, :] * result.depth, ys[:, None] * result.depth, result.depth], axis=-1)


def _check_invariants(result: RenderResult, height: int = SIZE, width: int = SIZE) -> None:
    """Shapes, dtypes and the relations between the label maps that every render must obey."""
    assert result.rgb.shape == (height, width, 3) and result.rgb.dtype == np.float32
    assert result.depth.shape == (height, width) and result.depth.dtype == np.float32
    assert result.normals.shape == (height, width, 3) and result.normals.dtype == np.float32
    assert result.segmentation.dtype == np.int32 and result.instance_map.dtype == np.int32
    assert result.mask.dtype == np.uint8
    assert np.all((result.rgb >= 0.0) & (result.rgb <= 1.0))
    hit = result.depth > 0
    assert np.array_equal(hit, result.segmentation != SKY_CLASS)
    assert np.all(result.depth[~hit] == 0) and np.all(result.normals[~hit] == 0)
    norms = np.linalg.norm(result.normals[hit], axis=-1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)
    assert np.array_equal(result.mask, (result.instance_map > 0).astype(np.uint8))


# ------------------------------------------------------------------------------------------
# Analytic depths and normals.


def test_sphere_on_axis_depth_and_normals():
    d, r = 3.0, 0.5
    camera = _along_x(d)
    result = render(_scene(Primitive("ellipsoid", (0, 0, 0), (r, r, r), RED)), camera, Light(), SIZE, SIZE)
    _check_invariants(result)
    assert result.depth[CENTRE, CENTRE] == pytest.approx(d - r, abs=1e-5)
    np.testing.assert_allclose(result.normals[CENTRE, CENTRE], [0.0, 0.0, -1.0], atol=1e-6)
    # Every hit pixel lies on the sphere and its normal is (p - c) / r.
    hit = result.mask.astype(bool)
    points = _camera_points(result, camera)[hit]
    centre = np.array([0.0, 0.0, d])
    np.testing.assert_allclose(np.linalg.norm(points - centre, axis=1), r, atol=2e-5)
    np.testing.assert_allclose(result.normals[hit], (points - centre) / r, atol=1e-4)
    # The silhouette is where the pixel ray passes within r of the centre.
    xs, ys = geometry.pixel_grid(SIZE, SIZE, camera.fov_deg)
    ray = np.stack(np.broadcast_arrays(xs[None, :], ys[:, None], 1.0), axis=-1)
    miss_distance = np.linalg.norm(np.cross(ray, centre), axis=-1) / np.linalg.norm(ray, axis=-1)
    clear = np.abs(miss_distance - r) > 1e-3
    assert np.array_equal(hit[clear], (miss_distance < r)[clear])


def test_box_head_on_face_depth_and_normal():
    d, hx = 4.0, 0.3
    camera = _along_x(d)
    box = Primitive("box", (0, 0, 0), (hx, 0.5, 0.4), RED)
    result = render(_scene(box), camera, Light(), SIZE, SIZE)
    _check_invariants(result)
    hit = result.mask.astype(bool)
    # Head-on, only the +x face is visible: constant z-depth d - hx and normal -z (camera).
    np.testing.assert_allclose(result.depth[hit], d - hx, atol=1e-5)
    np.testing.assert_allclose(result.normals[hit], np.broadcast_to([0.0, 0.0, -1.0], (hit.sum(), 3)), atol=1e-6)
    # The face spans |y| <= 0.5 and |z| <= 0.4: half-widths in pixels at depth d - hx.
    f = geometry.focal_length_px(SIZE, camera.fov_deg)
    cols = np.flatnonzero(hit[CENTRE])
    rows = np.flatnonzero(hit[:, CENTRE])
    assert (cols.max() - cols.min() + 1) == pytest.approx(2 * 0.5 / (d - hx) * f, abs=1.01)
    assert (rows.max() - rows.min() + 1) == pytest.approx(2 * 0.4 / (d - hx) * f, abs=1.01)


@pytest.mark.parametrize(
    "primitive, camera, depth, normal",
    [
        # Ellipsoid: the semi-axis along the view.
        (Primitive("ellipsoid", (0, 0, 0), (0.4, 0.7, 0.2), RED), _along_x(3.0), 2.6, (0, 0, -1)),
        # Cylinder (axis z): the side from +x, the cap from above.
        (Primitive("cylinder", (0, 0, 0), (0.3, 0.5, 0.6), RED), _along_x(3.0), 2.7, (0, 0, -1)),
        (Primitive("cylinder", (0, 0, 0), (0.3, 0.5, 0.6), RED), _from_above(3.0), 2.4, (0, 0, -1)),
        # Cone (base at z = 0, apex at z = h): the base from below, the side half-way up.
        (Primitive("cone", (0, 0, 0), (0.4, 0.4, 0.8), RED),
         Camera(position=(0.0, 0.0, -3.0), look_at=(0.0, 0.0, 0.0), fov_deg=40.0), 3.0, (0, 0, -1)),
        (Primitive("cone", (0, 0, 0), (0.4, 0.4, 0.8), RED), _along_x(3.0, height=0.4), 3.0 - 0.2,
         tuple(np.array([0.0, -0.4, -0.8]) / math.hypot(0.4, 0.8))),
        # Capsule: the side from +x, the hemispherical cap from above.
        (Primitive("capsule", (0, 0, 0), (0.2, 0.2, 0.5), RED), _along_x(3.0), 2.8, (0, 0, -1)),
        (Primitive("capsule", (0, 0, 0), (0.2, 0.2, 0.5), RED), _from_above(3.0), 2.3, (0, 0, -1)),
        # Box from above: the top face.
        (Primitive("box", (0, 0, 0), (0.3, 0.2, 0.25), RED), _from_above(2.0), 1.75, (0, 0, -1)),
    ],
    ids=["ellipsoid", "cylinder-side", "cylinder-cap", "cone-base", "cone-side", "capsule-side",
         "capsule-cap", "box-top"],
)
def test_each_kind_centre_depth_normal_and_maps(primitive, camera, depth, normal):
    result = render(_scene(primitive), camera, Light(), SIZE, SIZE)
    _check_invariants(result)
    assert result.mask.sum() > 20
    assert result.depth[CENTRE, CENTRE] == pytest.approx(depth, abs=1e-4)
    np.testing.assert_allclose(result.normals[CENTRE, CENTRE], normal, atol=1e-4)
    hit = result.mask.astype(bool)
    assert np.all(result.depth[hit] > 0) and np.all(result.depth[~hit] == 0)
    # Visible normals face the camera: n . ray < 0.
    xs, ys = geometry.pixel_grid(SIZE, SIZE, camera.fov_deg)
    ray = np.stack(np.broadcast_arrays(xs[None, :], ys[:, None], 1.0), axis=-1)
    assert np.all((result.normals * ray).sum(axis=-1)[hit] < 1e-6)


def test_yaw_and_rotation_match_swapped_extents():
    """A 90 degree yaw, or a local rotation of 90 degrees about z, swaps a box's x and y sizes."""
    camera = Camera(position=(3.0, 1.2, 1.5), look_at=(0.0, 0.0, 0.2), fov_deg=45.0)
    reference = render(_scene(Primitive("box", (0, 0, 0.2), (0.2, 0.5, 0.3), RED)), camera, Light(), SIZE, SIZE)
    swapped = Primitive("box", (0, 0, 0.2), (0.5, 0.2, 0.3), RED)
    yawed = Scene(objects=(SceneObject((swapped,), class_id=3, instance_id=1, yaw=math.pi / 2),))
    quarter_turn = geometry.as_rotation_tuple(geometry.rotation_z(math.pi / 2))
    rotated = _scene(dataclasses.replace(swapped, rotation=quarter_turn))
    for scene in (yawed, rotated):
        result = render(scene, camera, Light(), SIZE, SIZE)
        assert np.array_equal(result.mask, reference.mask)
        np.testing.assert_allclose(result.depth, reference.depth, atol=1e-4)
        np.testing.assert_allclose(result.normals, reference.normals, atol=1e-4)


def test_camera_inside_a_solid_sees_its_inner_surface():
    camera = Camera(position=(0.0, 0.0, 0.0), look_at=(1.0, 0.0, 0.0), fov_deg=40.0)
    result = render(_scene(Primitive("ellipsoid", (0, 0, 0), (2.0, 2.0, 2.0), RED)), camera, Light(), SIZE, SIZE)
    _check_invariants(result)
    assert result.mask.all()
    assert result.depth[CENTRE, CENTRE] == pytest.approx(2.0, abs=1e-5)
    np.testing.assert_allclose(result.normals[CENTRE, CENTRE], [0.0, 0.0, -1.0], atol=1e-6)  # turned inwards
    points = _camera_points(result, camera)
    np.testing.assert_allclose(np.linalg.norm(points, axis=-1), 2.0, atol=1e-4)


def test_primitives_behind_the_camera_are_not_seen():
    camera = _along_x(3.0)
    behind = _scene(Primitive("box", (5.0, 0, 0), (0.5, 0.5, 0.5), RED),
                    Primitive("capsule", (4.0, 0, 0), (0.3, 0.3, 0.0), RED))  # a zero half-length: a ball
    result = render(behind, camera, Light(), SIZE, SIZE)
    assert not result.mask.any() and not result.depth.any()
    # Straddling the camera plane: only the part in front shows (full-image window).
    around = render(_scene(Primitive("box", (3.0, 0, 0), (0.2, 2.0, 2.0), RED)), camera, Light(), SIZE, SIZE)
    assert around.mask.all()
    np.testing.assert_allclose(around.depth, 0.2, atol=1e-5)


def test_object_position_and_primitive_center_translate():
    camera = _along_x(4.0)
    a = render(_scene(Primitive("ellipsoid", (0, 0.3, 0.1), (0.3, 0.3, 0.3), RED)), camera, Light(), SIZE, SIZE)
    moved = Scene(objects=(SceneObject((Primitive("ellipsoid", (0, 0, 0), (0.3, 0.3, 0.3), RED),), 3, 1,
                                       position=(0.0, 0.3, 0.1)),))
    b = render(moved, camera, Light(), SIZE, SIZE)
    assert np.array_equal(a.mask, b.mask)
    np.testing.assert_allclose(a.depth, b.depth, atol=1e-5)


def test_ground_plane_depth_is_the_ray_plane_value():
    h, fov = 1.5, 50.0
    camera = Camera(position=(0.0, 0.0, h), look_at=(1.0, 0.0, h), fov_deg=fov)  # horizontal view
    result = render(Scene(objects=(), ground=Material((0.5, 0.5, 0.5))), camera, Light(), SIZE, SIZE + 4)
    _check_invariants(result, SIZE, SIZE + 4)
    f = (SIZE + 4) / 2.0 / math.tan(math.radians(fov) / 2.0)
    y = (np.arange(SIZE) + 0.5 - SIZE / 2.0) / f  # camera y (down) of each row
    below = y > 0
    # The ray (x, y, 1) drops by y per unit of z-depth: it meets z = 0 at z-depth h / y.
    expected = np.where(below, h / np.where(below, y, 1.0), 0.0)[:, None]
    np.testing.assert_allclose(result.depth, np.broadcast_to(expected, result.depth.shape), rtol=1e-5)
    assert np.all(result.segmentation[below] == GROUND_CLASS) and np.all(result.segmentation[~below] == SKY_CLASS)
    np.testing.assert_allclose(result.normals[below], np.broadcast_to([0.0, -1.0, 0.0], (below.sum(), SIZE + 4, 3)),
                               atol=1e-6)
    assert not result.mask.any() and not result.instance_map.any()


def test_wall_plane_depth_class_and_normal():
    camera = _along_x(3.0, height=2.0)  # sees the wall from z = 0.18 to 3.82
    scene = Scene(objects=(), wall=Material((0.6, 0.6, 0.7)), wall_distance=2.0, wall_height=4.0)
    result = render(scene, camera, Light(), SIZE, SIZE)
    _check_invariants(result)
    assert np.all(result.segmentation == WALL_CLASS)
    np.testing.assert_allclose(result.depth, 5.0, rtol=1e-6)  # the wall faces the camera head-on
    np.testing.assert_allclose(result.normals.reshape(-1, 3), np.broadcast_to([0, 0, -1], (SIZE * SIZE, 3)), atol=1e-6)


def test_wall_has_a_top_and_rays_above_it_see_the_sky():
    camera = _along_x(3.0, height=1.0)  # looks head-on at the wall x = -2, 5 m away
    scene = Scene(objects=(SceneObject((Primitive("ellipsoid", (0, 0, 0.5), (0.3, 0.3, 0.8), RED),),
                                       class_id=3, instance_id=1, position=(-1.6, 0.0, 0.0)),),
                  wall=Material((0.6, 0.6, 0.7)), wall_distance=2.0, wall_height=0.5)
    result = render(scene, camera, Light(direction=(1.0, 0.3, 0.3)), SIZE, SIZE)
    _check_invariants(result)
    _, ys = geometry.pixel_grid(SIZE, SIZE, camera.fov_deg)
    z_at_wall = 1.0 - 5.0 * ys.astype(np.float64)  # camera y is world -z; depth 5 on the wall
    edge = 0  # a pixel column clear of the ellipsoid
    above, on = z_at_wall > 0.52, (z_at_wall > 0.02) & (z_at_wall < 0.48)
    assert above.any() and on.any()
    assert np.all(result.segmentation[above, edge] == SKY_CLASS) and np.all(result.depth[above, edge] == 0)
    assert np.all(result.segmentation[on, edge] == WALL_CLASS)
    # Analytic depth of the wall below its top: camera-frame z of the plane x = -2 is 5.
    np.testing.assert_allclose(result.depth[on, edge], 5.0, rtol=1e-6)
    below = z_at_wall < -0.02  # no ground: below z = 0 there is no wall either
    assert np.all(result.segmentation[below, edge] == SKY_CLASS)
    # The light comes from +x (and a little +y), so the ellipsoid (up to z = 1.3) casts its
    # shadow onto the wall beside it; it darkens wall pixels only, never the sky over the top.
    wall = result.segmentation == WALL_CLASS
    shadowed = wall & (result.rgb.sum(axis=-1) < result.rgb[wall].sum(axis=-1).max() - 0.3)
    assert shadowed.any() and not shadowed[:, edge].any()
    sky = result.segmentation == SKY_CLASS
    assert np.allclose(result.rgb[sky], result.rgb[0, 0])


# ------------------------------------------------------------------------------------------
# Label maps, occlusion, determinism.


def _two_toys(**kwargs) -> Scene:
    near = SceneObject((Primitive("ellipsoid", (0, 0, 0.3), (0.3, 0.3, 0.3), RED),), class_id=4, instance_id=7,
                       position=(0.8, 0.0, 0.0))
    far = SceneObject((Primitive("box", (0, 0, 0.4), (0.3, 0.6, 0.4), Material((0.1, 0.8, 0.2))),
                       Primitive("cylinder", (0, 0, 1.0), (0.1, 0.1, 0.2), Material((0.2, 0.2, 0.9)))),
                      class_id=5, instance_id=2, position=(-0.5, 0.3, 0.0), yaw=0.4)
    return Scene(objects=(near, far), **kwargs)


def test_label_maps_are_consistent():
    scene = _two_toys(ground=Material((0.5, 0.4, 0.3), texture="checker", texture_scale=0.4),
                      wall=Material((0.7, 0.7, 0.7)), wall_distance=2.0)
    camera = Camera.orbit(20.0, 25.0, 4.0, look_at=(0.0, 0.0, 0.3))
    result = render(scene, camera, Light(), 40, 48)
    _check_invariants(result, 40, 48)
    classes = {7: 4, 2: 5}
    assert set(np.unique(result.instance_map)) == {0, 2, 7}
    for instance, cls in classes.items():
        assert np.all(result.segmentation[result.instance_map == instance] == cls)
    stuff = result.segmentation[result.instance_map == 0]
    assert set(np.unique(stuff)) <= {SKY_CLASS, WALL_CLASS, GROUND_CLASS}
    assert {WALL_CLASS, GROUND_CLASS} <= set(np.unique(stuff))
    boxes, labels, ids = boxes_from_instance_map(result.instance_map, result.segmentation)
    assert ids.tolist() == [2, 7] and labels.tolist() == [5, 4]


def test_nearer_object_wins_whatever_the_order():
    camera = _along_x(5.0)
    near = SceneObject((Primitive("ellipsoid", (0, 0, 0), (0.3, 0.3, 0.3), RED),), class_id=3, instance_id=1,
                       position=(1.0, 0.0, 0.0))
    far = SceneObject((Primitive("box", (0, 0, 0), (0.5, 0.5, 0.5), Material((0.1, 0.9, 0.1))),), class_id=4,
                      instance_id=2)
    results = [render(Scene(objects=objects), camera, Light(), SIZE, SIZE) for objects in ((near, far), (far, near))]
    for result in results:
        assert result.instance_map[CENTRE, CENTRE] == 1 and result.segmentation[CENTRE, CENTRE] == 3
        assert result.depth[CENTRE, CENTRE] == pytest.approx(5.0 - 1.0 - 0.3, abs=1e-5)
        assert (result.instance_map == 2).any()  # the box shows around the sphere
    for name in ("rgb", "depth", "normals", "segmentation", "instance_map", "mask"):
        assert np.array_equal(getattr(results[0], name), getattr(results[1], name))


def test_render_is_deterministic():
    scene = _two_toys(ground=Material((0.5, 0.4, 0.3), texture="noise", texture_scale=0.3),
                      background=Background("clutter", ((0.3, 0.5, 0.7), (0.9, 0.6, 0.2)), seed=5))
    camera = Camera.orbit(70.0, 15.0, 4.0, look_at=(0.0, 0.0, 0.3))
    a = render(scene, camera, Light(), 32, 32)
    b = render(scene, camera, Light(), 32, 32)
    for name in ("rgb", "depth", "normals", "segmentation", "instance_map", "mask"):
        assert getattr(a, name).tobytes() == getattr(b, name).tobytes(), name


# ------------------------------------------------------------------------------------------
# Shading and textures.


def test_flat_shading_gives_the_albedo():
    colour = (0.2, 0.6, 0.9)
    scene = _scene(Primitive("box", (0, 0, 0), (0.3, 0.3, 0.3), Material(colour, specular=0.8)),
                   background=Background("plain", ((0.1, 0.2, 0.3),)),
                   ground=Material((0.4, 0.4, 0.4)), flat_shading=True)
    camera = Camera.orbit(30.0, 10.0, 3.0)
    result = render(scene, camera, Light(), SIZE, SIZE)
    _check_invariants(result)
    obj = result.mask.astype(bool)
    np.testing.assert_allclose(result.rgb[obj], np.broadcast_to(colour, (obj.sum(), 3)), atol=1e-6)
    ground = result.segmentation == GROUND_CLASS
    np.testing.assert_allclose(result.rgb[ground], 0.4, atol=1e-6)
    sky = result.segmentation == SKY_CLASS
    assert sky.any()
    np.testing.assert_allclose(result.rgb[sky], np.broadcast_to((0.1, 0.2, 0.3), (sky.sum(), 3)), atol=1e-6)


def test_lambert_shading_of_a_sphere():
    """Head-on light from the camera: the centre gets ambient + intensity, the limb less."""
    light = Light(direction=(1.0, 0.0, 0.0), intensity=0.6, ambient=0.2)
    colour = (0.5, 0.5, 0.5)
    result = render(_scene(Primitive("ellipsoid", (0, 0, 0), (0.5, 0.5, 0.5), Material(colour, specular=0.0))),
                    _along_x(3.0), light, SIZE, SIZE)
    np.testing.assert_allclose(result.rgb[CENTRE, CENTRE], 0.5 * (0.2 + 0.6), atol=1e-5)
    obj = result.mask.astype(bool)
    cos = -result.normals[..., 2]  # light along the view: n . l = -n_z
    np.testing.assert_allclose(result.rgb[obj][:, 0], 0.5 * (0.2 + 0.6 * cos[obj]), atol=1e-5)


def test_specular_highlight_adds_light():
    light = Light(direction=(1.0, 0.0, 0.0))
    dull = render(_scene(Primitive("ellipsoid", (0, 0, 0), (0.5, 0.5, 0.5), Material((0.3, 0.3, 0.3), specular=0.0))),
                  _along_x(3.0), light, SIZE, SIZE)
    shiny = render(_scene(Primitive("ellipsoid", (0, 0, 0), (0.5, 0.5, 0.5), Material((0.3, 0.3, 0.3), specular=0.5))),
                   _along_x(3.0), light, SIZE, SIZE)
    assert shiny.rgb[CENTRE, CENTRE, 0] > dull.rgb[CENTRE, CENTRE, 0] + 0.3
    assert np.all(shiny.rgb >= dull.rgb - 1e-7)


def test_objects_cast_shadows_on_the_ground():
    light = Light(direction=(0.0, 0.0, 1.0), intensity=0.8, ambient=0.2)  # sun straight overhead
    grey = Material((0.5, 0.5, 0.5), specular=0.0)
    scene = _scene(Primitive("ellipsoid", (0, 0, 0.8), (0.3, 0.3, 0.3), RED), ground=grey)
    camera = Camera.orbit(0.0, 35.0, 3.0, look_at=(0.0, 0.0, 0.3))
    result = render(scene, camera, light, 48, 48)
    ground = result.segmentation == GROUND_CLASS
    points = _camera_points(result, camera)
    world = points @ geometry.camera_basis(camera).T + np.asarray(camera.position)
    under = ground & (np.hypot(world[..., 0], world[..., 1]) < 0.25)
    away = ground & (np.hypot(world[..., 0], world[..., 1]) > 0.35)
    assert under.sum() > 5 and away.sum() > 100
    np.testing.assert_allclose(result.rgb[under], 0.5 * 0.2, atol=1e-5)  # ambient only
    np.testing.assert_allclose(result.rgb[away], 0.5 * (0.2 + 0.8), atol=1e-5)


def test_local_rotation_maps_local_points_as_documented():
    """`Primitive.rotation` holds the rows of R, local -> object: the local +z end of a capsule
    tilted by rotation_y(a) leans towards +x (where R @ (0, 0, L) puts it), as toys.py builds."""
    tilt = geometry.as_rotation_tuple(geometry.rotation_y(0.6))
    capsule = Primitive("capsule", (0, 0, 0), (0.05, 0.05, 0.5), RED, rotation=tilt)
    camera = Camera(position=(0.0, 5.0, 0.0), look_at=(0.0, 0.0, 0.0), fov_deg=40.0)  # image right = world -x
    result = render(_scene(capsule), camera, Light(), SIZE, SIZE)
    rows = np.flatnonzero(result.mask.any(axis=1))
    top, bottom = np.flatnonzero(result.mask[rows[0]]).mean(), np.flatnonzero(result.mask[rows[-1]]).mean()
    assert top < CENTRE < bottom  # the upper end is on the +x (image left) side


@pytest.mark.parametrize("texture", ["stripes", "checker", "noise"])
def test_textures_differ_from_solid_and_stay_in_range(texture):
    camera = _along_x(2.5)
    base = dict(color=(0.8, 0.2, 0.2), texture_color=(0.1, 0.3, 0.9), texture_scale=0.15, specular=0.0)
    shape = Primitive("ellipsoid", (0, 0, 0), (0.5, 0.5, 0.5), Material(**base))
    solid = render(_scene(shape, flat_shading=True), camera, Light(), SIZE, SIZE)
    textured = dataclasses.replace(shape, material=Material(texture=texture, **base))
    patterned = render(_scene(textured, flat_shading=True), camera, Light(), SIZE, SIZE)
    _check_invariants(patterned)
    obj = patterned.mask.astype(bool)
    differs = np.abs(patterned.rgb - solid.rgb).max(axis=-1)[obj] > 0.05
    assert differs.mean() > 0.2
    # A texture mixes its two colours: every pixel lies on the segment between them.
    colours = patterned.rgb[obj]
    w = (colours[:, 2] - 0.2) / (0.9 - 0.2)
    np.testing.assert_allclose(colours, np.outer(1 - w, base["color"]) + np.outer(w, base["texture_color"]), atol=1e-5)
    assert np.all((w > -1e-6) & (w < 1 + 1e-6))


def test_surface_albedo_patterns():
    points = np.array([[0.01, 0.06, 0.11, 0.16], [0.0, 0.0, 0.0, 0.0], [0.01, 0.06, 0.11, 0.16]], np.float32)
    material = Material((1.0, 0.0, 0.0), texture="stripes", texture_color=(0.0, 0.0, 1.0), texture_scale=0.1)
    stripes = textures.surface_albedo(material, points)
    np.testing.assert_allclose(stripes[0], [1, 0, 1, 0])  # half a period (5 cm) per stripe along z
    checker = textures.surface_albedo(dataclasses.replace(material, texture="checker"), points)
    np.testing.assert_allclose(checker[0], [1, 1, 1, 1])  # x and z cells flip together
    cloud = np.random.default_rng(0).uniform(-1, 1, (3, 500)).astype(np.float32)
    noise = textures.surface_albedo(dataclasses.replace(material, texture="noise"), cloud)
    assert noise.shape == (3, 500) and np.all((noise >= 0) & (noise <= 1)) and noise[0].std() > 0.1


def test_value_noise_is_deterministic_continuous_and_bounded():
    rng = np.random.default_rng(1)
    p = rng.uniform(-20, 20, (3, 2000)).astype(np.float32)
    a = textures.value_noise_3d(p, seed=3)
    assert np.array_equal(a, textures.value_noise_3d(p, seed=3))
    assert not np.array_equal(a, textures.value_noise_3d(p, seed=4))
    assert a.min() >= 0.0 and a.max() <= 1.0 and 0.3 < a.mean() < 0.7
    # Lattice points take the hashed lattice value; nearby points are close (continuity).
    np.testing.assert_allclose(textures.value_noise_3d(p + 1e-4, seed=3), a, atol=1e-2)
    corners = np.array([[2.0], [-3.0], [5.0]], np.float32)
    assert textures.value_noise_3d(corners, 3)[0] == pytest.approx(float(textures.hash_uniform(2, -3, 5, 3)), abs=1e-6)


@pytest.mark.parametrize("kind", ["plain", "gradient", "noise", "clutter"])
def test_backgrounds_are_deterministic_images(kind):
    colors = ((0.2, 0.4, 0.8), (0.9, 0.8, 0.5), (0.3, 0.6, 0.3))
    a = textures.background_image(Background(kind, colors, seed=11), 40, 56)
    assert a.shape == (40, 56, 3) and a.dtype == np.float32
    assert np.all((a >= 0) & (a <= 1))
    textures._background_cached.cache_clear()
    assert np.array_equal(a, textures.background_image(Background(kind, colors, seed=11), 40, 56))
    if kind == "plain":
        np.testing.assert_allclose(a, np.broadcast_to(colors[0], a.shape))
    elif kind == "gradient":
        np.testing.assert_allclose(a[0, 0], colors[0], atol=0.05)  # top to bottom
        np.testing.assert_allclose(a[-1, 0], colors[-1], atol=0.05)
        assert np.array_equal(a[:, :1].repeat(56, axis=1), a)
    else:
        assert a.std(axis=(0, 1)).max() > 0.05
        assert not np.array_equal(a, textures.background_image(Background(kind, colors, seed=12), 40, 56))


@pytest.mark.parametrize("kind", ["noise", "clutter"])
def test_backgrounds_do_not_depend_on_the_image_size(kind):
    """Backdrops live in coordinates normalised by the image height: a wider image extends the
    picture to the right, a finer one samples the same picture more densely."""
    background = Background(kind, ((0.2, 0.4, 0.8), (0.9, 0.8, 0.5)), seed=4)
    small = textures.background_image(background, 32, 32)
    if kind == "noise":
        np.testing.assert_allclose(textures.background_image(background, 32, 48)[:, :32], small, atol=1e-6)
    fine = textures.background_image(background, 64, 64)
    coarse = fine.reshape(32, 2, 32, 2, 3).mean(axis=(1, 3))
    assert np.abs(coarse - small).mean() < 0.05


def test_background_shows_where_rays_miss():
    background = Background("noise", ((0.2, 0.3, 0.5), (0.8, 0.7, 0.6)), seed=2)
    result = render(_scene(Primitive("ellipsoid", (0, 0, 0), (0.3, 0.3, 0.3), RED), background=background),
                    _along_x(3.0), Light(), SIZE, SIZE)
    sky = result.segmentation == SKY_CLASS
    np.testing.assert_array_equal(result.rgb[sky], textures.background_image(background, SIZE, SIZE)[sky])


def test_invalid_inputs_raise():
    with pytest.raises(ValueError):
        render(_scene(Primitive("torus", (0, 0, 0), (1, 1, 1), RED)), _along_x(3.0), Light(), 8, 8)
    with pytest.raises(ValueError):
        render(_scene(Primitive("box", (0, 0, 0), (0.0, 1, 1), RED)), _along_x(3.0), Light(), 8, 8)
    with pytest.raises(ValueError):
        render(_scene(), _along_x(3.0), Light(), 0, 8)


# ------------------------------------------------------------------------------------------
# Boxes from instance maps.


def test_boxes_from_instance_map_matches_hand_computed_boxes():
    instance_map = np.zeros((4, 5), np.int32)
    segmentation = np.full((4, 5), GROUND_CLASS, np.int32)
    instance_map[1:3, 0:2] = 9  # rows 1-2, cols 0-1
    segmentation[1:3, 0:2] = 6
    instance_map[3, 4] = 2  # a single pixel in the corner
    segmentation[3, 4] = 3
    instance_map[0, 2:5] = 4  # the top row, cols 2-4
    segmentation[0, 2:5] = 5
    boxes, labels, ids = boxes_from_instance_map(instance_map, segmentation)
    assert boxes.dtype == np.float32 and labels.dtype == np.int64 and ids.dtype == np.int64
    assert ids.tolist() == [2, 4, 9]
    assert labels.tolist() == [3, 5, 6]
    np.testing.assert_allclose(boxes, [[3 / 4, 4 / 5, 1.0, 1.0],
                                       [0.0, 2 / 5, 1 / 4, 1.0],
                                       [1 / 4, 0.0, 3 / 4, 2 / 5]])


def test_boxes_from_an_empty_map():
    boxes, labels, ids = boxes_from_instance_map(np.zeros((3, 3), np.int32), np.zeros((3, 3), np.int32))
    assert boxes.shape == (0, 4) and labels.shape == (0,) and ids.shape == (0,)


def test_camera_basis_is_right_handed_and_looks_at_the_target():
    camera = Camera(position=(2.0, -1.0, 1.5), look_at=(0.0, 0.5, 0.2))
    basis = geometry.camera_basis(camera)
    np.testing.assert_allclose(basis.T @ basis, np.eye(3), atol=1e-12)
    assert np.linalg.det(basis) == pytest.approx(1.0)
    forward = np.subtract(camera.look_at, camera.position)
    np.testing.assert_allclose(basis[:, 2], forward / np.linalg.norm(forward))
    assert basis[2, 1] < 0  # image "down" points down in the world
    straight_down = geometry.camera_basis(_from_above(2.0))
    np.testing.assert_allclose(straight_down[:, 2], [0, 0, -1])
