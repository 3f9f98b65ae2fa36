"""Outcome of a trial: compare faulty logits with golden logits of the same input.

- ``masked``: every output value within ``threshold`` (absolute) of golden,
- ``sdc_tolerable``: some value beyond the threshold, top-1 unchanged,
- ``sdc_critical``: top-1 differs from the golden top-1 (not from the label),
- ``due``: non-finite output or an exception (``due_kind`` says which).

Example::

    out = classify(golden, faulty, threshold=1e-5)
    out["outcome"]   # array of OUTCOMES indices, one per input
"""

from __future__ import annotations

import numpy as np
import torch

OUTCOMES = ("masked", "sdc_tolerable", "sdc_critical", "due")
MASKED, TOLERABLE, CRITICAL, DUE = range(4)
DEFAULT_THRESHOLD = 1e-5


def classify(golden: torch.Tensor, faulty: torch.Tensor, threshold: float = DEFAULT_THRESHOLD) -> dict[str, np.ndarray]:
    """Per-input outcome codes, top-1s and max absolute difference for logits [B, C]."""
    faulty = faulty.float()
    finite = torch.isfinite(faulty).all(dim=1)
    diff = (faulty - golden).abs()
    max_diff = torch.where(finite, diff.max(dim=1).values, torch.full_like(diff[:, 0], float("inf")))
    golden_top1 = golden.argmax(dim=1)
    faulty_top1 = faulty.nan_to_num(nan=-float("inf")).argmax(dim=1)
    outcome = torch.full_like(golden_top1, MASKED)
    outcome[max_diff > threshold] = TOLERABLE
    outcome[(faulty_top1 != golden_top1) & finite] = CRITICAL
    outcome[~finite] = DUE
    return {
        "outcome": outcome.numpy().astype(np.int8),
        "golden_top1": golden_top1.numpy().astype(np.int16),
        "faulty_top1": faulty_top1.numpy().astype(np.int16),
        "max_abs_diff": max_diff.numpy().astype(np.float32),
        "due_kind": np.where(finite.numpy(), "", "nonfinite"),
    }


def due_for_exception(golden: torch.Tensor, exc: BaseException) -> dict[str, np.ndarray]:
    """Outcome arrays for a batch whose faulty forward raised ``exc``."""
    n = len(golden)
    return {
        "outcome": np.full(n, DUE, np.int8),
        "golden_top1": golden.argmax(dim=1).numpy().astype(np.int16),
        "faulty_top1": np.full(n, -1, np.int16),
        "max_abs_diff": np.full(n, np.inf, np.float32),
        "due_kind": np.full(n, f"exception:{type(exc).__name__}", dtype=object),
    }
