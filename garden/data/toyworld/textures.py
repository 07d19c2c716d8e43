"""Procedural textures and backgrounds of toyworld: deterministic functions of their inputs.

Surface textures are evaluated at hit points given in metres in the surface's own frame (a
primitive's local frame; fixed frames for the ground and the wall, see render.py) so that a
pattern sticks to its object when the object or the camera moves. Points and colours are
component-major ([3, N]: one contiguous row per coordinate), the layout the renderer computes in
because per-component numpy arithmetic on it is several times faster than on [N, 3].

Backgrounds are a backdrop in screen space (like a photo composited behind the scene): they
depend on the image coordinates only, normalised by the image height, so a 64x64 and a 128x128
render of one scene show the same picture. No global random state is used anywhere: noise comes
from an integer hash of lattice coordinates and a seed; clutter from a `np.random.Generator`
seeded by `Background.seed`.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from garden.data.toyworld.scene import Background, Material

# Odd 32-bit multipliers that combine lattice coordinates before mixing: the four 32-bit
# primes of xxHash (Yann Collet, xxhash.h, PRIME32_1..PRIME32_4).
_P1, _P2, _P3, _P4 = (np.uint32(v) for v in (0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F))
_U24 = np.float32(1.0 / (1 << 24))


def _mix32(h: np.ndarray) -> np.ndarray:
    """Avalanche a uint32 array: Chris Wellons' "lowbias32" (github.com/skeeto/hash-prospector)."""
    h = h ^ (h >> np.uint32(16))
    h *= np.uint32(0x7FEB352D)
    h ^= h >> np.uint32(15)
    h *= np.uint32(0x846CA68B)
    h ^= h >> np.uint32(16)
    return h


def _seed_word(seed: int) -> np.uint32:
    """Any Python int seed folded to one uint32 (negative or huge seeds are fine)."""
    return np.uint32((int(seed) * 0x27D4EB2F + 0x165667B1) & 0xFFFFFFFF)


def _to_unit(h: np.ndarray) -> np.ndarray:
    """The top 24 bits of a uint32 hash as a float32 in [0, 1) (exact in float32)."""
    return (h >> np.uint32(8)).astype(np.float32) * _U24


def _lattice_word(i: np.ndarray) -> np.ndarray:
    """Integer lattice coordinates (any int or float array) as uint32, wrapping negatives."""
    return np.asarray(i).astype(np.int64).astype(np.uint32)


def hash_uniform(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray | int, seed: int) -> np.ndarray:
    """Uniform float32 in [0, 1) from integer lattice coordinates (broadcast) and a seed."""
    with np.errstate(over="ignore"):  # uint32 products wrap by design (0-d inputs would warn)
        h = (_lattice_word(ix) * _P1) ^ (_lattice_word(iy) * _P2) ^ (_lattice_word(iz) * _P3) ^ _seed_word(seed)
        return _to_unit(_mix32(h))


def _smoothstep(f: np.ndarray) -> np.ndarray:
    """Hermite fade 3f^2 - 2f^3 (Perlin 1985): value noise without visible lattice creases."""
    return f * f * (3.0 - 2.0 * f)


def value_noise_3d(points: np.ndarray, seed: int) -> np.ndarray:
    """Value noise in [0, 1] at points [3, N] (lattice spacing 1): trilinear with smoothstep.

    The 8 corner hashes of every point are built by broadcasting [2, 1, 1, N] ^ [1, 2, 1, N] ^
    [1, 1, 2, N]; the +1 neighbour of a coordinate hashes as i * P + P (mod 2^32), one add.
    """
    points = np.asarray(points, dtype=np.float32)
    base = np.floor(points)
    w = _smoothstep(points - base)
    words = base.astype(np.int32).view(np.uint32)
    hx = words[0] * _P1
    hy = words[1] * _P2
    hz = words[2] * _P3
    corners = (np.stack([hx, hx + _P1])[:, None, None]
               ^ np.stack([hy, hy + _P2])[None, :, None]
               ^ (np.stack([hz, hz + _P3]) ^ _seed_word(seed))[None, None, :])  # seed after the +P
    c = _to_unit(_mix32(corners))  # [x, y, z, N]
    c = c[:, :, 0] + (c[:, :, 1] - c[:, :, 0]) * w[2]
    c = c[:, 0] + (c[:, 1] - c[:, 0]) * w[1]
    return c[0] + (c[1] - c[0]) * w[0]


def _lerp_weights(n: int, denominator: int, freq: float) -> np.ndarray:
    """Dense [n, m] smoothstep-interpolation weights of the pixel centres (k + 0.5) / denominator
    * freq onto the integer lattice 0..m-1."""
    coords = (np.arange(n, dtype=np.float64) + 0.5) / denominator * freq
    base = np.floor(coords)
    frac = _smoothstep(coords - base)
    idx = base.astype(np.int64)
    weights = np.zeros((n, int(idx[-1]) + 2), np.float32)
    rows = np.arange(n)
    weights[rows, idx] = 1.0 - frac
    weights[rows, idx + 1] = frac
    return weights


@functools.lru_cache(maxsize=32)
def _octave_weights(height: int, width: int, cells: float, octaves: int) -> tuple[np.ndarray, ...]:
    """Interpolation weights of all octaves side by side, and the block-diagonal amplitudes.

    Returns (wy [H, NY], wx [W, NX], amplitude [NY, NX], lattice_y [NY], lattice_x [NX],
    octave_x [NX]): octave k owns a diagonal block of the stacked lattice, weighted by
    2^-k / sum(2^-j), with zeros elsewhere; lattice_* are each row's / column's coordinate within
    its own octave's lattice, so the hashed values do not depend on the image size. Cached: it
    depends on the image geometry only, not on the seed.
    """
    wys, wxs = [], []
    for octave in range(octaves):
        freq = cells * (2.0 ** octave)
        wys.append(_lerp_weights(height, height, freq))
        wxs.append(_lerp_weights(width, height, freq))
    norm = sum(0.5 ** k for k in range(octaves))
    amplitude = np.zeros((sum(w.shape[1] for w in wys), sum(w.shape[1] for w in wxs)), np.float32)
    y = x = 0
    for octave, (wy, wx) in enumerate(zip(wys, wxs)):
        amplitude[y:y + wy.shape[1], x:x + wx.shape[1]] = 0.5 ** octave / norm
        y, x = y + wy.shape[1], x + wx.shape[1]
    arrays = (np.concatenate(wys, axis=1), np.concatenate(wxs, axis=1), amplitude,
              np.concatenate([np.arange(w.shape[1]) for w in wys]),
              np.concatenate([np.arange(w.shape[1]) for w in wxs]),
              np.concatenate([np.full(w.shape[1], k) for k, w in enumerate(wxs)]))
    for a in arrays:
        a.flags.writeable = False
    return arrays


def fractal_noise_image(height: int, width: int, cells: float, octaves: int, seed: int) -> np.ndarray:
    """Multi-octave 2D value noise [H, W] in [0, 1]: `cells` lattice cells per image height.

    Value noise sampled on a regular pixel grid is separable: one octave is Wy @ G @ Wx^T with
    G the hashed lattice values and Wy, Wx the per-row and per-column smoothstep weights.
    Octaves double the frequency and halve the amplitude (a 1/f spectrum); stacking their
    weights side by side and their lattices on a block diagonal makes the whole sum two matrix
    products and one hash of the stacked lattice.
    """
    wy, wx, amplitude, lattice_y, lattice_x, octave_x = _octave_weights(int(height), int(width), float(cells),
                                                                        int(octaves))
    lattice = hash_uniform(lattice_x[None, :], lattice_y[:, None], octave_x[None, :], seed)
    return wy @ (lattice * amplitude) @ wx.T


def _stretch(n: np.ndarray, gain: float) -> np.ndarray:
    """Contrast stretch around 0.5, clipped to [0, 1]: summed octaves bunch up near the middle."""
    return np.clip((n - 0.5) * gain + 0.5, 0.0, 1.0)


def surface_albedo(material: Material, points: np.ndarray,
                   footprint: np.ndarray | None = None) -> np.ndarray:
    """Albedo [3, N] float32 in [0, 1] of `material` at surface points [3, N] (metres).

    Patterns mix `material.color` (weight 0) and `material.texture_color` (weight 1) with period
    `texture_scale`: stripes vary along the third coordinate (rings along a primitive's axis),
    checker is a 3D checkerboard of half-period cells, noise is 2-octave value noise with one
    lattice cell per period (it depends on nothing but the point, so a material looks the same
    wherever it is used). `footprint` (metres covered by one pixel at each point) fades the
    pattern towards its mean where it is finer than a pixel, a cheap guard against the moire of
    a checkered ground near the horizon.
    """
    color = np.asarray(material.color, np.float32)[:, None]
    n = points.shape[1]
    if material.texture == "solid" or n == 0:
        return np.broadcast_to(color, (3, n))
    other = np.asarray(material.texture_color, np.float32)[:, None]
    scale = float(material.texture_scale)
    if scale <= 0.0:
        raise ValueError(f"texture_scale must be positive, got {scale}")
    # Cell parities through int32 bit tests: float `%` is several times slower.
    if material.texture == "stripes":
        w = (np.floor(points[2] * (2.0 / scale)).astype(np.int32) & 1).astype(np.float32)
    elif material.texture == "checker":
        q = np.floor(points * (2.0 / scale)).astype(np.int32)
        w = ((q[0] + q[1] + q[2]) & 1).astype(np.float32)
    elif material.texture == "noise":
        q = points * (1.0 / scale)
        w = _stretch((value_noise_3d(q, 0) + 0.5 * value_noise_3d(q * 2.0 + 17.0, 1)) * (1.0 / 1.5), 2.5)
    else:
        raise ValueError(f"unknown texture {material.texture!r}; expected solid, stripes, checker or noise")
    if footprint is not None:
        # Full contrast while a pixel covers under half a cell, none beyond 1.5 cells.
        contrast = np.clip(1.5 - footprint * (2.0 / scale), 0.0, 1.0)
        w = 0.5 + (w - 0.5) * contrast
    return color + (other - color) * w.astype(np.float32, copy=False)


def _palette(colors: tuple[tuple[float, float, float], ...], minimum: int) -> np.ndarray:
    """At least `minimum` colour stops [K, 3] from the background colours.

    A single colour becomes a dark-to-light ramp around it so that every background kind shows
    structure even when given one colour.
    """
    stops = np.asarray(colors, np.float32).reshape(-1, 3)
    if stops.shape[0] == 0:
        raise ValueError("Background.colors must hold at least one colour")
    if stops.shape[0] == 1 and minimum > 1:
        c = stops[0]
        ramp = [c * 0.55, c, c + (1.0 - c) * 0.5] if minimum > 2 else [c, c + (1.0 - c) * 0.5]
        stops = np.stack(ramp)
    return np.clip(stops, 0.0, 1.0)


def _palette_lookup(stops: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Piecewise-linear colour ramp through `stops` [K, 3] at t in [0, 1] ([H, W]) -> [H, W, 3].

    Written as hat-function weights [K, N] and one small matrix product, which beats gathering
    stop colours per pixel.
    """
    k = stops.shape[0]
    if k == 1:
        return np.broadcast_to(stops[0], t.shape + (3,)).astype(np.float32)
    x = np.clip(t.reshape(1, -1), 0.0, 1.0) * np.float32(k - 1)
    hats = np.maximum(1.0 - np.abs(x - np.arange(k, dtype=np.float32)[:, None]), 0.0)
    return (hats.T @ stops).reshape(t.shape + (3,))


def _pixel_range(lo: float, hi: float, scale: int, limit: int) -> slice:
    """Pixels whose centres (k + 0.5) / scale fall in [lo, hi], clipped to [0, limit)."""
    start = max(0, math.ceil(lo * scale - 0.5))
    stop = min(limit, math.floor(hi * scale - 0.5) + 1)
    return slice(start, max(start, stop))


def _clutter(background: Background, height: int, width: int) -> np.ndarray:
    """A busy photo-like backdrop: a tilted gradient, 1/f grain, then rectangles and discs.

    All random draws come from `default_rng(seed)` and do not depend on the image size, so the
    same seed gives the same picture at any resolution.
    """
    rng = np.random.default_rng(background.seed)
    stops = _palette(background.colors, 3)
    aspect = width / height
    v = ((np.arange(height, dtype=np.float32) + 0.5) / height)[:, None]
    u = ((np.arange(width, dtype=np.float32) + 0.5) / height)[None, :]
    angle = rng.uniform(0.0, 2.0 * math.pi)
    ramp = (u * math.cos(angle) + v * math.sin(angle)) / (abs(math.cos(angle)) * aspect + abs(math.sin(angle)))
    image = _palette_lookup(stops, ramp - ramp.min())
    grain = fractal_noise_image(height, width, 3.0, 3, background.seed)
    image *= (0.75 + 0.5 * grain)[..., None]
    for _ in range(int(rng.integers(14, 22))):
        kind = int(rng.integers(0, 3))  # 0 rectangle, 1 disc, 2 rectangle with a gradient
        cu, cv = rng.uniform(0.0, aspect), rng.uniform(0.0, 1.0)
        hu, hv = rng.uniform(0.03, 0.22, size=2)
        base = stops[int(rng.integers(0, stops.shape[0]))]
        color = base + (rng.uniform(0.0, 1.0, 3).astype(np.float32) - base) * np.float32(rng.uniform(0.3, 0.8))
        color2 = color * np.float32(rng.uniform(0.4, 0.9))
        rows = _pixel_range(cv - hv, cv + hv, height, height)
        cols = _pixel_range(cu - hu, cu + hu, height, width)
        window = image[rows, cols]
        if window.size == 0:
            continue
        if kind == 0:
            window[...] = color
        elif kind == 1:
            inside = (u[:, cols] - cu) ** 2 + (v[rows] - cv) ** 2 <= hu * hu
            np.copyto(window, color, where=inside[..., None])
        else:
            t = np.clip((u[:, cols] - (cu - hu)) / (2.0 * hu), 0.0, 1.0)
            window[...] = color + (color2 - color) * t[..., None]  # broadcast down the rows
    return np.clip(image, 0.0, 1.0)


@functools.lru_cache(maxsize=16)
def _background_cached(background: Background, height: int, width: int) -> np.ndarray:
    image = _background(background, height, width).astype(np.float32)
    image.flags.writeable = False
    return image


def background_image(background: Background, height: int, width: int) -> np.ndarray:
    """The backdrop [H, W, 3] float32 in [0, 1] shown where rays hit nothing (read-only).

    plain: colors[0]. gradient: a vertical ramp from colors[0] (top) through the others to
    colors[-1] (bottom; one colour fades to a lighter horizon). noise: 4-octave value noise
    mapped through the colours. clutter: see `_clutter`. A few recent backdrops are cached
    because datasets reuse a fixed set of them.
    """
    try:
        hash(background)
    except TypeError:  # unhashable fields (lists instead of tuples): render without the cache
        return _background(background, int(height), int(width)).astype(np.float32)
    return _background_cached(background, int(height), int(width))


def _background(background: Background, height: int, width: int) -> np.ndarray:
    kind = background.kind
    if kind == "plain":
        return np.broadcast_to(_palette(background.colors, 1)[0], (height, width, 3))
    if kind == "gradient":
        v = (np.arange(height, dtype=np.float32) + 0.5) / height
        column = _palette_lookup(_palette(background.colors, 2), v)
        return np.broadcast_to(column[:, None, :], (height, width, 3))
    if kind == "noise":
        n = _stretch(fractal_noise_image(height, width, 4.0, 4, background.seed), 1.8)
        return _palette_lookup(_palette(background.colors, 3), n)
    if kind == "clutter":
        return _clutter(background, height, width)
    raise ValueError(f"unknown background kind {kind!r}; expected plain, gradient, noise or clutter")
