"""Post effects of toyworld (garden/data/toyworld/effects.py): shape, dtype, range, identities,
determinism through the explicit generator."""

from __future__ import annotations

import numpy as np
import pytest

from garden.data.toyworld import effects


def _image(seed: int = 0, height: int = 24, width: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, (height, width, 3)).astype(np.float32)


def _check(out: np.ndarray, like: np.ndarray) -> None:
    assert out.shape == like.shape and out.dtype == np.float32
    assert np.all((out >= 0.0) & (out <= 1.0))


def test_defocus_blur_levels():
    rgb = _image()
    same = effects.defocus_blur(rgb, 0)
    assert np.array_equal(same, rgb) and same is not rgb
    previous = rgb.std()
    for level in (1, 2):
        out = effects.defocus_blur(rgb, level)
        _check(out, rgb)
        assert out.flags["C_CONTIGUOUS"]
        assert out.std() < previous  # stronger levels smooth more
        previous = out.std()
        # Rows of the blur matrices sum to one: flat images and the mean stay put.
        flat = np.full_like(rgb, 0.3)
        np.testing.assert_allclose(effects.defocus_blur(flat, level), flat, atol=1e-6)
        assert out.mean() == pytest.approx(rgb.mean(), abs=2e-3)
    with pytest.raises(ValueError):
        effects.defocus_blur(rgb, 3)


def test_defocus_blur_is_symmetric_around_an_impulse():
    rgb = np.zeros((21, 21, 3), np.float32)
    rgb[10, 10] = 1.0
    out = effects.defocus_blur(rgb, 2)[..., 0]
    np.testing.assert_allclose(out, out.T, atol=1e-7)
    np.testing.assert_allclose(out, out[::-1, ::-1], atol=1e-7)
    assert out.argmax() == 10 * 21 + 10 and out.sum() == pytest.approx(1.0, abs=1e-5)


def test_sensor_noise():
    rgb = _image()
    assert np.array_equal(effects.sensor_noise(rgb, 0.0, np.random.default_rng(0)), rgb)
    a = effects.sensor_noise(rgb, 0.05, np.random.default_rng(3))
    b = effects.sensor_noise(rgb, 0.05, np.random.default_rng(3))
    _check(a, rgb)
    assert np.array_equal(a, b)
    middle = (rgb > 0.2) & (rgb < 0.8)  # away from the clipped ends
    assert (a - rgb)[middle].std() == pytest.approx(0.05, rel=0.15)
    with pytest.raises(ValueError):
        effects.sensor_noise(rgb, -0.1, np.random.default_rng(0))


def test_jpeg_round_trip():
    y, x = np.mgrid[0:32, 0:32] / 31.0
    smooth = np.stack([x, y, 0.5 * (x + y)], axis=-1).astype(np.float32)
    out = effects.jpeg(smooth, 90)
    _check(out, smooth)
    assert np.abs(out - smooth).mean() < 0.02
    assert np.array_equal(out, effects.jpeg(smooth, 90))
    low = effects.jpeg(_image(), 10)
    assert np.abs(low - _image()).mean() > np.abs(effects.jpeg(_image(), 95) - _image()).mean()


def test_color_jitter():
    rgb = _image()
    same = effects.color_jitter(rgb, 0.0, np.random.default_rng(0))
    assert np.array_equal(same, rgb)
    a = effects.color_jitter(rgb, 0.3, np.random.default_rng(7))
    _check(a, rgb)
    assert np.array_equal(a, effects.color_jitter(rgb, 0.3, np.random.default_rng(7)))
    assert not np.array_equal(a, effects.color_jitter(rgb, 0.3, np.random.default_rng(8)))
    # Saturation and hue act on chroma only: grey stays grey.
    grey = np.full((4, 4, 3), 0.4, np.float32)
    jittered = effects.color_jitter(grey, 0.5, np.random.default_rng(1))
    np.testing.assert_allclose(jittered[..., 0], jittered[..., 1], atol=1e-5)
    np.testing.assert_allclose(jittered[..., 1], jittered[..., 2], atol=1e-5)


def test_to_uint8_rounds_half_up_and_clips():
    levels = (np.arange(256, dtype=np.float32) / np.float32(255.0)).reshape(16, 16, 1).repeat(3, axis=2)
    assert np.array_equal(effects.to_uint8(levels)[..., 0].ravel(), np.arange(256))
    out = effects.to_uint8(np.array([[[-0.2, 0.5, 1.3]]], np.float32))
    assert out.dtype == np.uint8 and out.tolist() == [[[0, 128, 255]]]  # 127.5 rounds up


def test_effects_reject_non_rgb():
    with pytest.raises(ValueError):
        effects.defocus_blur(np.zeros((8, 8), np.float32), 1)
