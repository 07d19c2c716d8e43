"""The lesion study's figures (Veit thesis, Figs. 4.3 to 4.7) from the results of `study`.

Each function takes `runs`: a list of (label, result) pairs, so one figure can overlay a ResNet
and the plain VGG, or several seeds; returns the matplotlib Figure (Agg backend, no display).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["single_deletion_figure", "deletions_figure", "swaps_figure", "paths_figure",
           "remaining_paths_figure", "save"]


def _pyplot():
    """pyplot on the Agg backend, imported on first use: importing this module (the registry
    imports every module of garden.methods) must not switch a user's matplotlib backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _axes(title, xlabel, ylabel, ncols=1, width=6.0):
    plt = _pyplot()
    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, 4.0), squeeze=False)
    for ax in axes[0]:
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return fig, axes[0]


def single_deletion_figure(runs: Sequence[tuple[str, dict]], chance: float | None = None):
    """Fig. 4.3: test error with each block deleted (x: block position), the baseline dashed;
    downsampling blocks marked with a ring."""
    fig, (ax,) = _axes("Deleting individual blocks (Fig. 4.3)", "deleted block", "test error")
    for (label, result), color in zip(runs, _pyplot().rcParams["axes.prop_cycle"].by_key()["color"] * 4):
        rows = result["blocks"]
        x = [r["index"] + 1 for r in rows]
        ax.plot(x, [r["error"] for r in rows], "o-", ms=3, color=color, label=label)
        down = [r for r in rows if r["downsampling"]]
        ax.plot([r["index"] + 1 for r in down], [r["error"] for r in down], "o", ms=9, mfc="none",
                color=color)
        ax.axhline(result["baseline_error"], ls="--", lw=1, color=color)
    if chance is not None:
        ax.axhline(chance, ls=":", color="grey", label="chance")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("dashed: no block deleted; rings: downsampling blocks", fontsize=8)
    return fig


def deletions_figure(runs: Sequence[tuple[str, dict]], chance: float | None = None):
    """Fig. 4.5a: mean (and std) error over random draws against the number k of deleted blocks."""
    fig, (ax,) = _axes("Deleting k random blocks (Fig. 4.5a)", "number of deleted blocks k", "test error")
    for label, result in runs:
        rows = result["rows"]
        k = np.array([r["k"] for r in rows])
        mean = np.array([r["mean_error"] for r in rows])
        std = np.array([r["std_error"] for r in rows])
        ax.plot(k, mean, "o-", ms=3, label=label)
        ax.fill_between(k, mean - std, mean + std, alpha=0.2)
    if chance is not None:
        ax.axhline(chance, ls=":", color="grey", label="chance")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    return fig


def swaps_figure(runs: Sequence[tuple[str, dict]], chance: float | None = None):
    """Fig. 4.5b: error of every reordered network against the Kendall tau of its block order."""
    fig, (ax,) = _axes("Reordering blocks (Fig. 4.5b)", "Kendall tau of the block order", "test error")
    for label, result in runs:
        rows = result["rows"]
        tau = np.array([r["kendall_tau"] for r in rows])
        error = np.array([r["error"] for r in rows])
        ax.plot(tau, error, "o", ms=3, alpha=0.6, label=label)
    if chance is not None:
        ax.axhline(chance, ls=":", color="grey", label="chance")
    ax.invert_xaxis()  # the thesis plots tau falling to the right
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    return fig


def paths_figure(runs: Sequence[tuple[str, dict]], statistics: dict):
    """Fig. 4.6: (a) path-length distribution, (b) gradient magnitude per path length (log),
    (c) total gradient magnitude per path length with the effective range shaded."""
    fig, axes = _axes("Paths (Fig. 4.6)", "path length", "", ncols=3, width=4.5)
    n = statistics["n"]
    axes[0].bar(np.arange(n + 1), statistics["path_length_pmf"], color="tab:blue")
    axes[0].set_title("(a) distribution of path length", fontsize=9)
    axes[0].set_ylabel("share of paths")
    for label, result in runs:
        k = np.array(result["lengths"])
        axes[1].semilogy(k, result["mean_gradient_norm"], "o-", ms=3, label=label)
        axes[2].plot(k, result["total_gradient_share"], "o-", ms=3, label=label)
        lo, hi = result["effective_lengths"]
        axes[2].axvspan(lo, hi, alpha=0.1)
    axes[1].set_title("(b) gradient magnitude at input per path", fontsize=9)
    axes[1].set_ylabel("gradient norm")
    axes[2].set_title("(c) total gradient by path length", fontsize=9)
    axes[2].set_ylabel("share of total gradient")
    for ax in axes[1:]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def remaining_paths_figure(statistics: dict):
    """Fig. 4.7: fraction of paths of each length left after deleting d modules (Eq. 4.8)."""
    n = statistics["n"]
    fig, (ax,) = _axes(f"Remaining paths after deleting d of {n} modules (Fig. 4.7, Eq. 4.8)",
                       "path length", "fraction of paths remaining")
    for d, fraction in statistics["remaining_fraction"].items():
        ax.plot(np.arange(n + 1), fraction, label=f"d = {d}")
    ax.legend(fontsize=8)
    return fig


def save(fig, path) -> str:
    """Write `fig` as a PNG and close it."""
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return str(path)
