"""The reference engine: one fault at a time, obviously correct (the oracle).

An output fault is a forward hook on the site's module that corrupts the output at the
site's call; a parameter fault patches the parameter in place and restores the saved
elements bit-exactly. Both are undone on exit, also when the forward raises.

Example::

    engine = ReferenceEngine(model, fault_model)
    rows = engine.run(inputs, input_ids, faults)     # one row per (input, fault)
"""

from __future__ import annotations

import itertools
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

import numpy as np
import pandas as pd
import torch
from torch import nn

from faultsift.engine.outcome import DEFAULT_THRESHOLD, OUTCOMES, classify, due_for_exception
from faultsift.faults.models import Fault, FaultModel

TRIAL_COLUMNS = ("fault_id", "input_id", "outcome", "golden_top1", "faulty_top1", "max_abs_diff", "due_kind")


@contextmanager
def injected(model: nn.Module, fault: Fault, fault_model: FaultModel, batch_size: int) -> Iterator[None]:
    """Apply ``fault`` to ``model`` for the duration of the block, then undo it exactly."""
    site = fault.site
    module = model.get_submodule(site.module)
    if site.kind == "output":
        calls = itertools.count()

        def hook(mod, args, out):
            if next(calls) != site.call:
                return None
            flat = out.reshape(batch_size, -1).clone()
            return fault_model.corrupt(flat, fault).reshape(out.shape)

        handle = module.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()
        return
    param = getattr(module, site.kind)
    with torch.no_grad():
        flat = param.data.view(-1)
        idx = torch.from_numpy(fault.indices).to(flat.device)
        saved = flat[idx].clone()
        try:
            flat[idx] = fault_model.corrupt(flat.unsqueeze(0).clone(), fault)[0, idx]
            yield
        finally:
            flat[idx] = saved


class ReferenceEngine:
    """Evaluate faults one at a time on a batch of inputs (every input sees the same fault)."""

    def __init__(self, model: nn.Module, fault_model: FaultModel, threshold: float = DEFAULT_THRESHOLD,
                 device: str = "cpu"):
        self.model = model.eval().to(device)
        self.fault_model, self.threshold, self.device = fault_model, threshold, device

    @torch.inference_mode()
    def golden(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(inputs.to(self.device)).float().cpu()

    @torch.inference_mode()
    def evaluate(self, inputs: torch.Tensor, golden: torch.Tensor, fault: Fault) -> dict[str, np.ndarray]:
        """Outcome arrays of one fault on every input of the batch."""
        try:
            with injected(self.model, fault, self.fault_model, len(inputs)):
                faulty = self.model(inputs.to(self.device)).float().cpu()
        except Exception as exc:  # a fault that crashes the forward is a DUE, not a campaign failure
            return due_for_exception(golden, exc)
        return classify(golden, faulty, self.threshold)

    def run(self, inputs: torch.Tensor, input_ids: np.ndarray, faults: Iterable[Fault],
            on_fault: Callable[[int], None] | None = None) -> pd.DataFrame:
        """Trial rows (``TRIAL_COLUMNS``) for every (input, fault) pair."""
        golden = self.golden(inputs)
        parts = []
        for fault in faults:
            out = self.evaluate(inputs, golden, fault)
            out["fault_id"] = np.full(len(inputs), fault.fault_id, np.int64)
            out["input_id"] = np.asarray(input_ids, np.int64)
            parts.append(out)
            if on_fault is not None:
                on_fault(1)
        return trials_frame(parts)


def trials_frame(parts: list[dict[str, np.ndarray]]) -> pd.DataFrame:
    """Concatenate outcome arrays into a trial table with a categorical ``outcome``."""
    if not parts:
        return pd.DataFrame({c: [] for c in TRIAL_COLUMNS})
    cols = {c: np.concatenate([p[c] for p in parts]) for c in TRIAL_COLUMNS}
    cols["outcome"] = pd.Categorical.from_codes(cols["outcome"], categories=list(OUTCOMES))
    cols["due_kind"] = cols["due_kind"].astype(str)
    return pd.DataFrame(cols, columns=list(TRIAL_COLUMNS))
