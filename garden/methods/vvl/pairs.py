"""Neighbouring- and distant-pose partners from the same object instance (seed 000, A.3).

"For each training image, sample two more images of the same object instance": one with a
similar pose ("immediate neighbors in terms of rotation label") and one with a dissimilar
pose ("the distance between rotation and camera angle must be greater than three neighbors
away"). The paper's metric on the (rotation, camera) grid is undefined (A.8 item 8); here:

    d = circular |delta azimuth bin| (the turntable wraps) + |delta elevation bin|

positive: d <= `near` (default 1), another image; negative: d > `far` (default 3). Sampling
is static (drawn once per seed, no mining), as in the paper. Toyworld draws viewpoints at
random, so an instance may lack a candidate: then the positive is its nearest other image and
the negative its farthest (an instance with a single image pairs with itself). Each example is
the anchor of exactly one triplet, so an epoch of triplets is an epoch of images.
"""

from __future__ import annotations

import numpy as np

from garden.errors import ConfigError


def pose_distance(az_a, el_a, az_b, el_b, azimuth_bins: int):
    """Grid distance between pose bins: circular in azimuth, linear in elevation."""
    daz = np.abs(np.asarray(az_a) - np.asarray(az_b)) % azimuth_bins
    daz = np.minimum(daz, azimuth_bins - daz)
    return daz + np.abs(np.asarray(el_a) - np.asarray(el_b))


def sample_pose_triplets(instance, azimuth, elevation, *, azimuth_bins: int, seed: int, near: int = 1,
                         far: int = 3) -> np.ndarray:
    """`(n, 3)` indices (anchor, positive, negative) with anchor = 0..n-1, fixed by `seed`."""
    instance, azimuth, elevation = (np.asarray(a, np.int64).reshape(-1) for a in (instance, azimuth, elevation))
    n = instance.size
    if not (azimuth.size == elevation.size == n):
        raise ConfigError(f"pose triplets: instance, azimuth and elevation have different lengths "
                          f"({n}, {azimuth.size}, {elevation.size})")
    if azimuth_bins < 1 or near < 0 or far < near:
        raise ConfigError(f"pose triplets: need azimuth_bins >= 1 and 0 <= near <= far, got "
                          f"{azimuth_bins}, {near}, {far}")
    rng = np.random.default_rng(seed)
    out = np.empty((n, 3), np.int64)
    out[:, 0] = np.arange(n)
    # One vectorised pass per instance (a few dozen images each), over the m x m distances.
    for members in _groups(instance):
        d = pose_distance(azimuth[members, None], elevation[members, None], azimuth[None, members],
                          elevation[None, members], azimuth_bins)
        other = ~np.eye(members.size, dtype=bool) if members.size > 1 else np.ones((1, 1), bool)
        noise = rng.random(d.shape)  # uniform choice among candidates: argmax of random scores
        out[members, 1] = members[_pick(noise, other & (d <= near), -d + np.where(other, 0, -1e9))]
        out[members, 2] = members[_pick(noise, other & (d > far), d + np.where(other, 0, -1e9))]
    return out


def _groups(instance: np.ndarray):
    order = np.argsort(instance, kind="stable")
    bounds = np.flatnonzero(np.diff(instance[order])) + 1
    return np.split(order, bounds)


def _pick(noise: np.ndarray, candidates: np.ndarray, fallback_score: np.ndarray) -> np.ndarray:
    """Per row: a uniform candidate, else the best `fallback_score` (ties broken at random)."""
    choice = np.argmax(np.where(candidates, noise, -1.0), axis=1)
    fallback = np.argmax(fallback_score + noise * 1e-3, axis=1)
    return np.where(candidates.any(axis=1), choice, fallback)
