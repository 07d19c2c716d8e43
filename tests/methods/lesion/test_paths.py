"""Closed forms of the unraveled view (spec seed_004 M4, "Unit tests") and Kendall tau."""

import math

import numpy as np
import pytest

from garden.methods.lesion import paths


def test_path_length_distribution_is_binomial():
    pmf = paths.path_length_distribution(54)
    assert pmf.shape == (55,) and pmf.sum() == pytest.approx(1.0)
    assert pmf[27] == pytest.approx(math.comb(54, 27) / 2**54)
    # Spec M4 sec. 5: paths of 5..17 modules are 0.4537% of all; 19..35 hold 98.0%.
    assert pmf[5:18].sum() == pytest.approx(0.004537, abs=5e-7)
    assert pmf[19:36].sum() == pytest.approx(0.980, abs=5e-4)


def test_remaining_path_fraction_eq_4_8():
    # n = 54, d = 1, x = 27: C(53, 27) / C(54, 27) = 27 / 54.
    assert paths.remaining_path_fraction(54, 1, [27])[0] == pytest.approx(0.5)
    fraction = paths.remaining_path_fraction(54, 10)
    assert fraction[0] == 1.0 and fraction[45] == 0.0 and np.all(np.diff(fraction) <= 0)
    with pytest.raises(ValueError, match="deleted"):
        paths.remaining_path_fraction(5, 6)


def test_kendall_tau():
    assert paths.kendall_tau(list(range(10))) == 1.0
    assert paths.kendall_tau(list(range(10))[::-1]) == -1.0
    # One adjacent swap among n breaks exactly 1 of n (n - 1) / 2 pairs.
    order = list(range(6))
    order[2], order[3] = order[3], order[2]
    assert paths.kendall_tau(order) == pytest.approx(1 - 2 / 15)


def test_kendall_tau_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(5):
        order = rng.permutation(20)
        assert paths.kendall_tau(order) == pytest.approx(stats.kendalltau(np.arange(20), order)[0])


def test_total_gradient_and_effective_window():
    n = 10
    lengths = list(range(n + 1))
    # Gradients falling by 5x per module: the total peaks well below n / 2.
    magnitudes = [5.0**-k for k in lengths]
    share = paths.total_gradient_by_length(n, lengths, magnitudes)
    assert share.sum() == pytest.approx(1.0) and int(np.argmax(share)) == 1
    lo, hi = paths.effective_window(lengths, share, 0.9)
    assert share[lo:hi + 1].sum() >= 0.9 and lo == 0 and hi <= 4
    # Equal gradients: the total is the binomial itself, centred on n / 2.
    share = paths.total_gradient_by_length(n, lengths, [1.0] * (n + 1))
    np.testing.assert_allclose(share, paths.path_length_distribution(n))
    lo, hi = paths.effective_window(lengths, share, 0.9)
    assert (lo, hi) in [(2, 7), (3, 8)]  # P = 0.935 each; 3..7 holds only 0.891
