"""Post effects on rendered float RGB images [H, W, 3] in [0, 1].

Every effect returns a new float32 array in [0, 1] of the input's shape (except `to_uint8`).
Randomness only ever comes from the `np.random.Generator` passed in, so a render pipeline is
reproducible from its seed.
"""

from __future__ import annotations

import functools
import io
import math

import numpy as np
from PIL import Image

# Gaussian sigma (pixels at a 64-pixel image side) of the defocus levels: level 0 is in focus.
FOCUS_SIGMAS = (0.0, 0.8, 1.6)
_REFERENCE_SIDE = 64.0


def _as_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected an RGB image [H, W, 3], got shape {rgb.shape}")
    return rgb


@functools.lru_cache(maxsize=64)
def _blur_matrix(size: int, sigma: float) -> np.ndarray:
    """[size, size] row-stochastic matrix of a 1D Gaussian blur with mirrored borders.

    Folding the mirrored taps back onto the image makes every row sum to 1, so the blur keeps
    the image's range and brightness at the borders.
    """
    radius = max(1, int(math.ceil(3.0 * sigma)))
    offsets = np.arange(-radius, radius + 1)
    taps = np.exp(-0.5 * (offsets / sigma) ** 2)
    taps /= taps.sum()
    matrix = np.zeros((size, size), np.float64)
    rows = np.arange(size)[:, None]
    cols = rows + offsets[None, :]
    period = 2 * size
    cols = np.mod(cols, period)  # symmetric ("reflect" including the edge pixel) border
    cols = np.where(cols >= size, period - 1 - cols, cols)
    np.add.at(matrix, (np.broadcast_to(rows, cols.shape), cols), np.broadcast_to(taps, cols.shape))
    matrix = matrix.astype(np.float32)
    matrix.flags.writeable = False
    return matrix


def defocus_blur(rgb: np.ndarray, level: int) -> np.ndarray:
    """Out-of-focus blur: a separable Gaussian whose width grows with `level` (0, 1, 2).

    Sigma scales with the image side (FOCUS_SIGMAS are for 64 pixels) so that a focus level
    looks the same at every resolution. Level 0 returns an unchanged copy.
    """
    rgb = _as_rgb(rgb)
    level = int(level)
    if not 0 <= level < len(FOCUS_SIGMAS):
        raise ValueError(f"blur level must be in 0..{len(FOCUS_SIGMAS) - 1}, got {level}")
    if level == 0:
        return rgb.copy()
    height, width, _ = rgb.shape
    sigma = FOCUS_SIGMAS[level] * min(height, width) / _REFERENCE_SIDE
    rows = _blur_matrix(height, round(sigma, 6))
    cols = _blur_matrix(width, round(sigma, 6))
    out = (rows @ rgb.reshape(height, width * 3)).reshape(height, width, 3)
    # Columns: one [W, W] @ [W, H * 3] product on the transposed image.
    out = (cols @ out.transpose(1, 0, 2).reshape(width, height * 3)).reshape(width, height, 3)
    return np.ascontiguousarray(np.clip(out.transpose(1, 0, 2), 0.0, 1.0))


def sensor_noise(rgb: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Additive white Gaussian noise of standard deviation `std`, clipped to [0, 1].

    std 0 returns an unchanged copy (and draws nothing).
    """
    rgb = _as_rgb(rgb)
    if std < 0:
        raise ValueError(f"noise std must be >= 0, got {std}")
    if std == 0:
        return rgb.copy()
    noise = rng.standard_normal(rgb.shape, dtype=np.float32)
    return np.clip(rgb + np.float32(std) * noise, 0.0, 1.0)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Quantise to uint8: clip to [0, 1], scale by 255, round half up (floor(x + 0.5)).

    The float -> uint8 cast truncates, which is the floor for these non-negative values.
    """
    rgb = np.asarray(rgb, dtype=np.float32)
    return (np.clip(rgb, 0.0, 1.0) * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    """JPEG compression artefacts: encode and decode through PIL in memory at `quality` (1-95).

    Deterministic for a given PIL/libjpeg build.
    """
    rgb = _as_rgb(rgb)
    quality = int(quality)
    if not 1 <= quality <= 100:
        raise ValueError(f"jpeg quality must be in 1..100, got {quality}")
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(rgb)).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer, formats=["JPEG"]) as decoded:
        out = np.asarray(decoded.convert("RGB"), dtype=np.float32)
    return out * np.float32(1.0 / 255.0)


# RGB <-> YIQ (NTSC) matrices; hue is a rotation of the (I, Q) chroma plane.
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                        [0.595716, -0.274453, -0.321263],
                        [0.211456, -0.522591, 0.311135]], np.float64)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


def color_jitter(rgb: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Random brightness, contrast, saturation and hue shift, each within +-`strength`.

    Brightness scales the image by 1 + b; contrast scales about the mean luminance by 1 + c;
    saturation scales the chroma by 1 + s; hue rotates the YIQ chroma plane by h * pi/2. All
    four draws are made even for strength 0 (which returns an unchanged copy), so the generator
    advances the same way whatever the strength. The composite is one 3x3 colour matrix plus an
    offset, applied in a single pass.
    """
    rgb = _as_rgb(rgb)
    if strength < 0:
        raise ValueError(f"jitter strength must be >= 0, got {strength}")
    b, c, s, h = rng.uniform(-1.0, 1.0, size=4) * float(strength)
    if strength == 0:
        return rgb.copy()
    angle = h * math.pi / 2.0
    chroma = np.array([[1.0, 0.0, 0.0],
                       [0.0, math.cos(angle), -math.sin(angle)],
                       [0.0, math.sin(angle), math.cos(angle)]]) * np.array([1.0, 1.0 + s, 1.0 + s])[:, None]
    matrix = _YIQ_TO_RGB @ chroma @ _RGB_TO_YIQ  # colour (saturation, hue) transform in RGB
    mean_luma = float((rgb.reshape(-1, 3) @ _RGB_TO_YIQ[0].astype(np.float32)).mean())
    gain = (1.0 + b) * (1.0 + c)
    offset = (1.0 + b) * (-c) * mean_luma  # contrast about the mean luminance, then brightness
    out = rgb.reshape(-1, 3) @ (gain * matrix.T).astype(np.float32) + np.float32(offset)
    return np.clip(out, 0.0, 1.0).reshape(rgb.shape)
