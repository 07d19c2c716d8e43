"""Closed forms of the unraveled view (Veit thesis, ch. 4, Secs. 4.2 and 4.4) and Kendall tau.

Exact integer arithmetic (math.comb) where the thesis states exact quantities.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "effective_window",
    "kendall_tau",
    "path_length_distribution",
    "remaining_path_fraction",
    "total_gradient_by_length",
]


def path_length_distribution(n: int) -> np.ndarray:
    """P(path length = k), k = 0..n: Binomial(n, 1/2), since each of the 2**n paths picks a
    subset of the n residual modules (Sec. 4.4.1, Fig. 4.6a)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return np.array([math.comb(n, k) for k in range(n + 1)], np.float64) / float(2**n)


def remaining_path_fraction(n: int, deleted: int, lengths: Sequence[int] | None = None) -> np.ndarray:
    """Eq. 4.8: the fraction of paths of length x still valid after deleting d of n modules,
    C(n - d, x) / C(n, x) (Fig. 4.7); 0 where x > n - d. Default lengths: 0..n."""
    if not 0 <= deleted <= n:
        raise ValueError(f"deleted must be in 0..{n}, got {deleted}")
    lengths = range(n + 1) if lengths is None else lengths
    return np.array([math.comb(n - deleted, x) / math.comb(n, x) for x in lengths], np.float64)


def kendall_tau(order: Sequence[int]) -> float:
    """Kendall's rank correlation between 0..n-1 and `order` (a permutation, no ties):
    (concordant - discordant pairs) / (n (n - 1) / 2); 1 for the identity (Sec. 4.3.2)."""
    order = np.asarray(order)
    n = order.size
    if n < 2:
        return 1.0
    i, j = np.triu_indices(n, k=1)
    signs = np.sign(order[j] - order[i])  # position j > i: concordant iff order[j] > order[i]
    return float(signs.sum() / (n * (n - 1) / 2))


def total_gradient_by_length(n: int, lengths: Sequence[int], magnitudes: Sequence[float]) -> np.ndarray:
    """Sec. 4.4.2, Fig. 4.6c: (number of paths of length k) x (mean gradient magnitude of a
    path of length k), for the measured `lengths`; normalised to sum to 1 over them."""
    counts = np.array([math.comb(n, int(k)) for k in lengths], np.float64)
    total = counts * np.asarray(magnitudes, np.float64)
    return total / total.sum()


def effective_window(lengths: Sequence[int], share: Sequence[float], mass: float = 0.9) -> tuple[int, int]:
    """The shortest range [lo, hi] of path lengths whose share of the total gradient is at
    least `mass` ("effective paths", Sec. 4.4.2: 5-17 modules for n = 54 by eye from Fig. 4.6c;
    the thesis gives no threshold, we use 90%)."""
    lengths = np.asarray(lengths)
    share = np.asarray(share, np.float64)
    order = np.argsort(lengths)
    lengths, share = lengths[order], share[order]
    best = (int(lengths[0]), int(lengths[-1]))
    cumulative = np.concatenate([[0.0], np.cumsum(share)])
    for a in range(len(lengths)):
        # first b with cumulative[b + 1] - cumulative[a] >= mass
        b = int(np.searchsorted(cumulative, cumulative[a] + mass - 1e-12, side="left")) - 1
        if b < len(lengths) and b >= a and lengths[b] - lengths[a] < best[1] - best[0]:
            best = (int(lengths[a]), int(lengths[b]))
    return best
