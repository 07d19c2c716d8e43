"""Largest absolute differences between the Keras outputs and an exported artifact's."""

from __future__ import annotations

import numpy as np


def compare(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> dict:
    """Per-output max |reference - candidate| for float outputs, mismatch counts for integer ones.

    Integer outputs such as `class_id` are arg-maxes: a float difference far below the
    tolerance can still flip a near-tie, so they are reported but do not decide pass/fail.
    """
    missing = sorted(set(reference) - set(candidate))
    if missing:
        raise KeyError(f"exported model lacks outputs {missing}; it has {sorted(candidate)}")
    result = {"max_abs_diff": {}, "integer_mismatches": {}}
    for name, ref in reference.items():
        ref, cand = np.asarray(ref), np.asarray(candidate[name])
        if ref.shape != cand.shape:
            raise ValueError(f"output {name!r}: shape {cand.shape} differs from Keras' {ref.shape}")
        if np.issubdtype(ref.dtype, np.floating):
            diff = np.abs(ref.astype(np.float64) - cand.astype(np.float64))
            result["max_abs_diff"][name] = float(diff.max()) if diff.size else 0.0
        else:
            result["integer_mismatches"][name] = int(np.sum(ref != cand))
    result["max_abs_diff_overall"] = max(result["max_abs_diff"].values(), default=0.0)
    return result
