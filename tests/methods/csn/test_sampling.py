"""garden.nn.metric_learning.sample_condition_triplets: per-notion triplets in equal proportions."""

from __future__ import annotations

import numpy as np
import pytest

from garden.errors import ConfigError
from garden.nn.metric_learning import sample_condition_triplets


def _labels(seed=0, n=200):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 5, n), rng.integers(0, 8, n), rng.integers(0, 3, n)]


def test_rows_respect_each_notion_and_are_interleaved():
    labels = _labels()
    rows = sample_condition_triplets(labels, 100, seed=1)
    assert rows.shape == (300, 4) and rows.dtype == np.int64
    np.testing.assert_array_equal(rows[:, 3], np.tile([0, 1, 2], 100))  # equal proportions, interleaved
    for anchor, close, far, condition in rows:
        column = labels[condition]
        assert anchor != close
        assert column[anchor] == column[close] and column[anchor] != column[far]


def test_seeded_and_different_per_seed():
    labels = _labels()
    np.testing.assert_array_equal(sample_condition_triplets(labels, 50, seed=4),
                                  sample_condition_triplets(labels, 50, seed=4))
    assert not np.array_equal(sample_condition_triplets(labels, 50, seed=4),
                              sample_condition_triplets(labels, 50, seed=5))


def test_unknown_labels_are_left_out():
    shape = np.array([0, 0, 1, 1, -1, -1, 2, 2])
    rows = sample_condition_triplets([shape], 200, seed=0)
    assert not np.isin(rows[:, :3], [4, 5]).any()


def test_errors():
    with pytest.raises(ConfigError, match="same length"):
        sample_condition_triplets([np.zeros(4), np.zeros(5)], 3, seed=0)
    with pytest.raises(ConfigError, match="at least one condition"):
        sample_condition_triplets([], 3, seed=0)
    with pytest.raises(ConfigError, match="at least 2 distinct values"):
        sample_condition_triplets([np.zeros(6, int)], 3, seed=0)
