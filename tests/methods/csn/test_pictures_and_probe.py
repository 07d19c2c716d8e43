"""The subspace pictures (PCA, PNG, TensorBoard projector) and the off-task probe."""

from __future__ import annotations

import os

import numpy as np

from garden.methods.csn.models import ConditionalSimilarityNetwork
from garden.methods.csn.probe import probe_accuracy, trunk_features
from garden.methods.csn.visualize import pca_2d, plot_subspaces, write_projector


def test_pca_keeps_distances_of_planar_data():
    rng = np.random.default_rng(0)
    plane = rng.standard_normal((50, 2)) * [3.0, 1.0]
    basis, _ = np.linalg.qr(rng.standard_normal((6, 2)))
    coords = pca_2d(plane @ basis.T + 5.0)
    d_in = np.linalg.norm(plane[:, None] - plane[None], axis=-1)
    d_out = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    np.testing.assert_allclose(d_out, d_in, atol=1e-8)
    assert pca_2d(np.arange(5.0)[:, None]).shape == (5, 2)  # a one-dimensional subspace


def test_plot_and_projector(tmp_path):
    rng = np.random.default_rng(0)
    labels = {"shape": rng.integers(0, 3, 20), "color": rng.integers(0, 2, 20)}
    masked = [rng.standard_normal((20, 8)) for _ in range(2)]
    png = tmp_path / "pics" / "subspaces.png"
    plot_subspaces(masked, labels, ["shape", "color"], {"shape": ["a", "b", "c"]}, str(png))
    assert png.read_bytes()[:4] == b"\x89PNG"
    images = rng.integers(0, 256, (20, 8, 8, 3)).astype(np.uint8)
    log_dir = tmp_path / "projector"
    write_projector(str(log_dir), rng.standard_normal((20, 8)), masked, ["shape", "color"], labels, images)
    config = (log_dir / "projector_config.pbtxt").read_text()
    assert "embedding/.ATTRIBUTES/VARIABLE_VALUE" in config and "masked_color/.ATTRIBUTES/VARIABLE_VALUE" in config
    rows = (log_dir / "metadata.tsv").read_text().splitlines()
    assert rows[0] == "shape\tcolor" and len(rows) == 21
    assert os.path.exists(log_dir / "sprite.png")


def test_probe_learns_separable_features_and_not_noise():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    informative = np.eye(3)[y] * 3 + rng.standard_normal((400, 3)) * 0.3
    assert probe_accuracy(informative[:300], y[:300], informative[300:], y[300:], epochs=20) > 0.95
    noise = rng.standard_normal((400, 3))
    assert probe_accuracy(noise[:300], y[:300], noise[300:], y[300:], epochs=20) < 0.6


def test_trunk_features_are_the_trunk_output():
    model = ConditionalSimilarityNetwork("conv", {"stages": [[4], [8]], "pooling": "avg", "hidden_units": []}, 8, 2)
    images = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3)).astype(np.uint8)
    features = trunk_features(model, images, batch_size=2)
    expected = model.net.trunk((images.astype(np.float32) - 127.5) / 127.5)
    np.testing.assert_allclose(features, np.asarray(expected), rtol=1e-5, atol=1e-6)
