"""The shared metrics on hand-computed cases (spec seeds_000_001.md B.4 definitions)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from garden.metrics import (DepthErrors, ExpectedAgeError, NormalAngleErrors, SegmentationMetrics,
                            StreamingHistogram, angle_degrees, expected_age, valid_normals)
from tests import invariants as inv


def _result(metric):
    return {k: float(v) for k, v in metric.result().items()}


# -- segmentation -------------------------------------------------------------------------------


def test_segmentation_by_hand():
    # Valid pixels (label, prediction): (0, 0), (1, 1), (1, 0); one pixel ignored (255).
    # Confusion [[1, 0], [1, 1]]: IoU_0 = 1 / (1 + 1 + 0), IoU_1 = 1 / (1 + 0 + 1); PAcc = 2 / 3.
    labels = np.array([[[0, 1], [1, 255]]])
    predictions = np.array([[[0, 1], [0, 1]]])
    metric = SegmentationMetrics(num_classes=2, prefix="seg_")
    metric.update_state(labels, predictions)
    result = _result(metric)
    assert result["seg_miou"] == pytest.approx(0.5)
    assert result["seg_pixel_accuracy"] == pytest.approx(2 / 3)
    np.testing.assert_array_equal(metric.confusion.numpy(), [[1, 0], [1, 1]])


def test_segmentation_absent_classes_labels_out_of_range_and_logits():
    labels = np.array([[[0, 1], [1, 7]]])  # 7 >= num_classes: left out like the ignore label
    logits = np.zeros((1, 2, 2, 3), np.float32)
    for (i, j), c in {(0, 0): 0, (0, 1): 1, (1, 0): 0, (1, 1): 2}.items():
        logits[0, i, j, c] = 5.0
    metric = SegmentationMetrics(num_classes=3)
    metric.update_state(labels, logits)  # arg-maxed: predictions [[0, 1], [0, 2]]
    # Class 2 is in neither the valid labels nor the valid predictions: not averaged (as TF).
    assert _result(metric) == pytest.approx({"miou": 0.5, "pixel_accuracy": 2 / 3})


def test_segmentation_streams_over_batches():
    rng = np.random.default_rng(0)
    labels, predictions = rng.integers(0, 4, (6, 5, 5)), rng.integers(0, 4, (6, 5, 5))
    labels[0, 0, :] = 255
    whole, parts = SegmentationMetrics(4), SegmentationMetrics(4)
    whole.update_state(labels, predictions)
    for i in range(0, 6, 2):
        parts.update_state(labels[i:i + 2], predictions[i:i + 2])
    assert _result(parts) == pytest.approx(_result(whole))
    # Against a direct numpy computation of the definition.
    valid = labels != 255
    cm = np.zeros((4, 4))
    np.add.at(cm, (labels[valid], predictions[valid]), 1)
    iou = np.diag(cm) / (cm.sum(0) + cm.sum(1) - np.diag(cm))
    assert _result(whole)["miou"] == pytest.approx(iou.mean())
    metric = SegmentationMetrics(4)
    metric.reset_state()
    assert float(tf.reduce_sum(metric.confusion)) == 0.0
    inv.check_config_round_trip(metric)


# -- normals ------------------------------------------------------------------------------------


def _rotated(degrees):
    r = math.radians(degrees)
    return [math.sin(r), 0.0, math.cos(r)]


def test_normal_angles_by_hand():
    # Five valid pixels at 0, 10, 20, 45 and 90 degrees from (0, 0, 1), plus two invalid ones:
    # a zero label (nothing hit) and (1, 1, 1) (a decoded all-255 "no label" PNG pixel).
    angles = [0, 10, 20, 45, 90]
    predictions = np.array([[_rotated(a) for a in angles] + [[0, 0, 1], [0, 0, 1]]], np.float32)
    predictions[0, 1] *= 3.0  # the length of a prediction does not matter
    labels = np.array([[[0, 0, 1]] * 5 + [[0, 0, 0], [1, 1, 1]]], np.float32)
    np.testing.assert_allclose(angle_degrees(predictions, labels).numpy()[0, :5], angles, atol=1e-3)
    np.testing.assert_array_equal(valid_normals(labels).numpy()[0], [True] * 5 + [False, False])
    metric = NormalAngleErrors(prefix="n_")
    metric.update_state(labels, predictions)
    result = _result(metric)
    assert result["n_mean_angle"] == pytest.approx(33.0, abs=1e-3)
    assert result["n_median_angle"] == pytest.approx(20.0, abs=0.01)  # exact to one 0.01-degree bin
    assert result["n_within_11_25"] == pytest.approx(40.0)
    assert result["n_within_22_5"] == pytest.approx(60.0)
    assert result["n_within_30"] == pytest.approx(60.0)
    inv.check_config_round_trip(metric)


def test_streaming_histogram_quantiles():
    values = np.arange(1.0, 102.0)  # 1..101: median 51, mean 51
    hist = StreamingHistogram(max_value=200.0, num_bins=20000)
    hist.update_state(values[:50])
    hist.update_state(values[50:])
    assert float(hist.result()) == pytest.approx(51.0, abs=0.01)
    assert float(hist.mean()) == pytest.approx(51.0)
    assert float(hist.rms()) == pytest.approx(np.sqrt(np.mean(values ** 2)), rel=1e-6)
    assert float(hist.quantile(0.9)) == pytest.approx(np.quantile(values, 0.9), abs=0.02)
    hist.update_state([500.0], sample_weight=[0.0])  # weight 0: ignored
    assert float(hist.total) == 101.0


# -- depth --------------------------------------------------------------------------------------


def test_depth_errors_by_hand():
    labels = np.array([[1.0, 2.0, 0.0, 4.0]])       # 0: no depth label
    predictions = np.array([[1.5, 2.0, 7.0, 2.0]])
    metric = DepthErrors(prefix="d_")
    metric.update_state(labels, predictions)
    result = _result(metric)
    assert result["d_abs_rel"] == pytest.approx((0.5 / 1 + 0 + 2 / 4) / 3)
    assert result["d_rmse"] == pytest.approx(math.sqrt((0.25 + 0 + 4) / 3))


# -- age ----------------------------------------------------------------------------------------


def test_expected_age_and_errors_by_hand():
    logits = np.zeros((3, 100), np.float32)         # uniform: expected age 49.5
    logits[1, 30] = 50.0                             # one-hot at 30
    logits[2, [20, 40]] = 50.0                       # half 20, half 40: 30
    np.testing.assert_allclose(expected_age(logits).numpy(), [49.5, 30.0, 30.0], atol=1e-4)
    metric = ExpectedAgeError()
    metric.update_state(np.array([49, 30, 33]), logits)  # errors 0.5, 0, 3
    result = _result(metric)
    assert result["age_mae"] == pytest.approx(3.5 / 3, abs=1e-4)
    assert result["age_median_ae"] == pytest.approx(0.5, abs=0.01)
    metric.update_state(np.array([-1]), logits[:1])  # a missing label changes nothing
    assert _result(metric) == pytest.approx(result)
