"""The two render styles: backgrounds, surfaces, lights and post effects.

clean: plain backgrounds, solid surfaces, no sensor effects (the "synthetic" domain).
photo: textured, cluttered backgrounds and surfaces, tinted light, specular highlights,
colour shift, blur, sensor noise and JPEG (seed_003.md 9.2, test domains R1/R2: a different
rendering style, colour jitter, blur, noise, JPEG-like quantisation, a different background
distribution; off-centre and truncated objects are the samplers' job).
All randomness comes from the generator passed in.
"""

from __future__ import annotations

import colorsys
import dataclasses

import numpy as np

from garden.data.toyworld import effects
from garden.data.toyworld.scene import Background, Light, Material, Primitive

Vec = tuple[float, float, float]


def random_color(rng: np.random.Generator, saturation=(0.2, 0.8), value=(0.3, 0.95)) -> Vec:
    rgb = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(*saturation), rng.uniform(*value))
    return tuple(float(c) for c in rgb)


def background(style: str, rng: np.random.Generator) -> Background:
    """A backdrop: one plain colour (clean) or a procedural noise/clutter picture (photo)."""
    if style == "clean":
        return Background(kind="plain", colors=(random_color(rng, (0.05, 0.5), (0.4, 0.95)),))
    kind = ("noise", "clutter", "gradient")[int(rng.integers(3))]
    colors = tuple(random_color(rng, (0.1, 0.9), (0.15, 1.0)) for _ in range(4))
    return Background(kind=kind, colors=colors, seed=int(rng.integers(2**31)))


def surface(style: str, rng: np.random.Generator, base: Vec, scale: tuple[float, float]) -> Material:
    """Ground or wall: a solid colour near `base` (clean) or a random pattern on it (photo)."""
    jitter = rng.uniform(-0.08, 0.08, size=3)
    color = tuple(float(np.clip(c + j, 0.0, 1.0)) for c, j in zip(base, jitter))
    if style == "clean":
        return Material(color=color, specular=0.0)
    texture = ("stripes", "checker", "noise")[int(rng.integers(3))]
    return Material(color=color, texture=texture, texture_color=random_color(rng),
                    texture_scale=float(rng.uniform(*scale)), specular=float(rng.uniform(0.0, 0.2)))


def photo_light(rng: np.random.Generator) -> Light:
    """A random sun with a warm or cool tint (the photo style's colour shift starts here)."""
    az, el = rng.uniform(0, 2 * np.pi), np.deg2rad(rng.uniform(25.0, 80.0))
    direction = (float(np.cos(el) * np.cos(az)), float(np.cos(el) * np.sin(az)), float(np.sin(el)))
    tint = 1.0 + rng.uniform(-0.12, 0.12) * np.array([1.0, 0.0, -1.0])
    return Light(direction=direction, intensity=float(rng.uniform(0.6, 1.0)),
                 ambient=float(rng.uniform(0.2, 0.4)), color=tuple(float(c) for c in tint))


def with_specular(primitives: tuple[Primitive, ...], specular: float) -> tuple[Primitive, ...]:
    """The toy with every material's highlight weight set (0 gives pure Lambertian toys)."""
    return tuple(dataclasses.replace(p, material=dataclasses.replace(p.material, specular=float(specular)))
                 for p in primitives)


def finish(rgb: np.ndarray, style: str, rng: np.random.Generator, blur_level: int | None = None) -> np.ndarray:
    """Post effects and quantisation: float [H, W, 3] in [0, 1] -> uint8.

    `blur_level` is a labelled focus level (objects variant), applied in both styles. When it
    is None the photo style picks a mild random blur itself; clean never blurs.
    """
    if style == "photo":
        # Strength <= 0.2 keeps hue shifts under ~18 degrees, so named colours stay recognisable.
        rgb = effects.color_jitter(rgb, float(rng.uniform(0.05, 0.2)), rng)
        level = blur_level if blur_level is not None else int(rng.integers(2))
        rgb = effects.defocus_blur(rgb, level)
        rgb = effects.sensor_noise(rgb, float(rng.uniform(0.01, 0.04)), rng)
        rgb = effects.jpeg(rgb, int(rng.integers(30, 80)))
    elif blur_level:
        rgb = effects.defocus_blur(rgb, blur_level)
    return effects.to_uint8(rgb)
