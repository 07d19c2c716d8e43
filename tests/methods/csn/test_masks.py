"""Condition masks: learned masks are ReLU(beta) with the thesis' initialisation, fixed masks are
disjoint blocks covering the embedding, `none` is the standard triplet net's all-ones mask."""

from __future__ import annotations

import numpy as np
import pytest

from garden.errors import ConfigError
from garden.methods.csn.masks import ConditionMasks, disjoint_masks
from tests import invariants as inv


def test_learned_masks_are_relu_of_beta_initialised_n_0_9_0_7():
    masks = ConditionMasks(num_conditions=50, dim=400, kind="learned", seed=3)
    beta = masks.beta.numpy()
    # Sec. 3.3 "normal distribution with 0.9 mean and 0.7 variance"; std 0.7 as the authors' code.
    assert abs(beta.mean() - 0.9) < 0.02 and abs(beta.std() - 0.7) < 0.02
    matrix = np.asarray(masks.matrix())
    np.testing.assert_allclose(matrix, np.maximum(beta, 0.0))
    assert matrix.min() >= 0.0 and (beta < 0).any()  # some entries start switched off
    picked = np.asarray(masks(np.array([2, 0, 2])))
    np.testing.assert_allclose(picked, matrix[[2, 0, 2]])
    assert masks.trainable_weights == [masks.beta]
    np.testing.assert_allclose(float(masks.l1()), np.abs(matrix).sum(), rtol=1e-5)


@pytest.mark.parametrize("num_conditions,dim", [(4, 64), (2, 64), (3, 64), (5, 7)])
def test_fixed_masks_are_disjoint_blocks_covering_the_embedding(num_conditions, dim):
    table = disjoint_masks(num_conditions, dim)
    assert set(np.unique(table)) <= {0.0, 1.0}
    np.testing.assert_array_equal(table.sum(axis=0), np.ones(dim))  # every dimension, exactly once
    sizes = table.sum(axis=1)
    assert sizes.max() - sizes.min() <= 1  # 1/n_c-th each (Sec. 3.4.2)
    masks = ConditionMasks(num_conditions, dim, kind="fixed")
    assert not masks.trainable_weights
    np.testing.assert_array_equal(np.asarray(masks(np.arange(num_conditions))), table)
    assert float(masks.l1()) == 0.0


def test_zappos_fixed_masks_give_16_dimensions_per_notion():
    table = disjoint_masks(4, 64)
    np.testing.assert_array_equal(table.sum(axis=1), [16, 16, 16, 16])
    np.testing.assert_array_equal(table[1, 16:32], np.ones(16))


def test_none_masks_are_all_ones():
    masks = ConditionMasks(3, 8, kind="none")
    np.testing.assert_array_equal(np.asarray(masks(np.array([0, 2]))), np.ones((2, 8)))


@pytest.mark.parametrize("kwargs,match", [
    ({"num_conditions": 2, "dim": 8, "kind": "learnt"}, "unknown mask kind 'learnt'; valid: learned, fixed, none"),
    ({"num_conditions": 0, "dim": 8}, "num_conditions must be >= 1"),
    ({"num_conditions": 9, "dim": 8, "kind": "fixed"}, "fixed masks need"),
])
def test_bad_masks_fail_with_one_line(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ConditionMasks(**kwargs)


def test_masks_config_round_trip():
    inv.check_config_round_trip(ConditionMasks(4, 16, kind="learned", seed=1))
    inv.check_config_round_trip(ConditionMasks(4, 16, kind="fixed"))
