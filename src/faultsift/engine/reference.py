"""The reference engine: obviously correct fault application (the oracle).

Activation faults are hooks (forward hooks for outputs, pre-hooks for inputs) that corrupt the
site's call, row by row of the per-input view (folded batches unfolded, see
:func:`faultsift.faults.sites.to_rows`). Parameter and buffer faults patch the tensor in place
and restore the saved elements bit-exactly; quantized weights are rebuilt from corrupted
stored integers and the original packed weight is put back. Everything is undone on exit,
also when the forward raises.

A trial can carry several faults (weights and activations mixed), and each input of a batch
can carry its own faults: inputs that share their parameter faults run together, activation
faults land on their own rows only.

Example::

    engine = ReferenceEngine(model)
    rows = engine.run(inputs, input_ids, faults)                # every fault on every input
    rows = engine.run_assigned(inputs, input_ids, per_input)    # input i with per_input[i]
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from faultsift.engine.outcome import DEFAULT_THRESHOLD, OUTCOMES, classify, due_for_exception
from faultsift.errors import ConfigError
from faultsift.faults.bits import rebuild, storage
from faultsift.faults.models import Fault, FaultModel, apply_fault
from faultsift.faults.sites import first_tensor, from_rows, is_packed, read_param, to_rows

TRIAL_COLUMNS = ("fault_id", "input_id", "outcome", "golden_top1", "faulty_top1", "max_abs_diff", "due_kind")


def _as_tuple(faults: Fault | Sequence[Fault]) -> tuple[Fault, ...]:
    return (faults,) if isinstance(faults, Fault) else tuple(faults)


def _patch_parameter(model: nn.Module, fault: Fault) -> Callable[[], None]:
    """Apply a parameter/buffer fault in place; returns the function that undoes it exactly."""
    module = model.get_submodule(fault.site.module)
    kind = fault.site.kind
    original = read_param(module, kind)
    if is_packed(module, kind):
        weight, bias = module.weight(), module.bias()
        ints = storage(original).reshape(1, -1).clone()
        apply_fault(ints, fault)
        new = ints.reshape(original.shape)
        new = rebuild(new, original) if original.is_quantized else new.to(original.dtype)
        module.set_weight_bias(new, bias) if kind == "weight" else module.set_weight_bias(weight, new)
        return lambda: module.set_weight_bias(weight, bias)
    if not original.is_contiguous():
        raise ConfigError(f"Expected a contiguous tensor at {fault.site.name} to patch it in place.")
    flat = original.data.view(-1)
    idx = torch.from_numpy(fault.indices).to(flat.device)
    saved = flat[idx].clone()
    flat[idx] = apply_fault(saved.unsqueeze(0).clone(), replace(fault, indices=np.arange(len(idx))))[0]

    def restore():
        flat[idx] = saved

    return restore


def _activation_corrupter(todo: list[tuple[Fault, Sequence[int] | None]], batch_size: int):
    """A function corrupting one module's output (or input) at each call that carries faults."""
    calls = itertools.count()

    def corrupt(value):
        call = next(calls)
        here = [(f, r) for f, r in todo if f.site.call == call]
        if not here or not isinstance(value, torch.Tensor):
            return None
        ints = storage(value)
        flat = to_rows(ints, here[0][0].site, batch_size)
        for fault, rows in here:
            if rows is None:
                apply_fault(flat, fault)
            else:
                sel = torch.as_tensor(rows, dtype=torch.long, device=flat.device)
                flat[sel] = apply_fault(flat[sel], fault)
        new = from_rows(flat, here[0][0].site, ints)
        return rebuild(new, value) if value.is_quantized else new

    return corrupt


@contextmanager
def inject(model: nn.Module, faults: Fault | Sequence[Fault], batch_size: int,
           rows: Sequence[Sequence[int] | None] | None = None) -> Iterator[None]:
    """Apply ``faults`` to ``model`` for the duration of the block, then undo them exactly.

    ``rows[i]``: the batch rows activation fault i applies to (None: every row). Parameter
    faults apply to the whole batch.
    """
    faults = _as_tuple(faults)
    rows = list(rows) if rows is not None else [None] * len(faults)
    grouped: dict[tuple[str, str], list] = defaultdict(list)
    with ExitStack() as stack:
        for fault, fault_rows in zip(faults, rows):
            if fault.site.is_activation:
                grouped[(fault.site.module, fault.site.kind)].append((fault, fault_rows))
            else:
                if fault_rows is not None and len(set(fault_rows)) != batch_size:
                    raise ConfigError(f"Expected parameter fault {fault.fault_id} on every row of the batch; "
                                      f"give inputs with their own parameter faults to `evaluate_assigned`.")
                stack.callback(_patch_parameter(model, fault))
        for (module_name, kind), todo in grouped.items():
            module = model.get_submodule(module_name)
            corrupt = _activation_corrupter(todo, batch_size)
            if kind == "output":
                def hook(mod, args, out, c=corrupt):
                    new = c(first_tensor(out))
                    return new if new is None or isinstance(out, torch.Tensor) else type(out)((new, *out[1:]))

                handle = module.register_forward_hook(hook)
            else:
                def pre_hook(mod, args, c=corrupt):
                    new = c(args[0]) if args else None
                    return None if new is None else (new, *args[1:])

                handle = module.register_forward_pre_hook(pre_hook)
            stack.callback(handle.remove)
        yield


@contextmanager
def injected(model: nn.Module, fault: Fault, fault_model: FaultModel | None, batch_size: int) -> Iterator[None]:
    """One fault on every row of the batch (``fault_model`` is not needed: a fault describes itself)."""
    with inject(model, fault, batch_size):
        yield


def parameter_effect(model: nn.Module, fault: Fault) -> tuple[np.ndarray, np.ndarray]:
    """Values at a parameter fault's elements before and under the fault, as the model computes
    with them (dequantized for quantized weights: the effect of flipping the stored integer)."""

    def read() -> np.ndarray:
        value = read_param(model.get_submodule(fault.site.module), fault.site.kind)
        value = value.dequantize() if value.is_quantized else value
        return value.detach().reshape(-1)[torch.from_numpy(fault.indices)].double().cpu().numpy()

    before = read()
    with inject(model, fault, 1):
        after = read()
    return before, after


class ReferenceEngine:
    """Evaluate faults on batches of inputs, one forward per fault (or per group of inputs)."""

    def __init__(self, model: nn.Module, fault_model: FaultModel | None = None, threshold: float = DEFAULT_THRESHOLD,
                 device: str = "cpu"):
        self.model = model.eval().to(device)
        self.fault_model, self.threshold, self.device = fault_model, threshold, device

    @torch.inference_mode()
    def golden(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(inputs.to(self.device)).float().cpu()

    @torch.inference_mode()
    def _forward(self, inputs: torch.Tensor, golden: torch.Tensor, faults: tuple[Fault, ...], rows=None):
        try:
            with inject(self.model, faults, len(inputs), rows):
                faulty = self.model(inputs.to(self.device)).float().cpu()
        except ConfigError:
            raise
        except Exception as exc:  # a fault that crashes the forward is a DUE, not a campaign failure
            return due_for_exception(golden, exc)
        return classify(golden, faulty, self.threshold)

    def evaluate(self, inputs: torch.Tensor, golden: torch.Tensor, fault: Fault | Sequence[Fault]) -> dict[str, np.ndarray]:
        """Outcome arrays of one fault (or one fault of several parts) on every input of the batch."""
        return self._forward(inputs, golden, _as_tuple(fault))

    def evaluate_assigned(self, inputs: torch.Tensor, golden: torch.Tensor,
                          assigned: Sequence[Fault | Sequence[Fault]]) -> dict[str, np.ndarray]:
        """Outcome arrays when input ``b`` carries ``assigned[b]`` (its own faults; may be empty)."""
        if len(assigned) != len(inputs):
            raise ConfigError(f"Expected one fault assignment per input ({len(inputs)}), got {len(assigned)}.")
        per_row = [_as_tuple(a) for a in assigned]
        groups: dict[tuple, list[int]] = defaultdict(list)
        for b, faults in enumerate(per_row):
            key = tuple((f.fault_id, f.part, f.site.name) for f in faults if not f.site.is_activation)
            groups[key].append(b)
        parts: dict[int, dict] = {}
        for key, members in groups.items():
            params = tuple(f for f in per_row[members[0]] if not f.site.is_activation)
            activations, rows = [], []
            for local, b in enumerate(members):
                for f in per_row[b]:
                    if f.site.is_activation:
                        activations.append(f)
                        rows.append([local])
            sel = torch.as_tensor(members)
            out = self._forward(inputs[sel], golden[sel], params + tuple(activations),
                                [None] * len(params) + rows)
            for local, b in enumerate(members):
                parts[b] = {k: v[local] for k, v in out.items()}
        return {k: np.array([parts[b][k] for b in range(len(inputs))], dtype=object if k == "due_kind" else None)
                for k in parts[0]}

    def run(self, inputs: torch.Tensor, input_ids: np.ndarray, faults: Iterable[Fault | Sequence[Fault]],
            on_fault: Callable[[int], None] | None = None) -> pd.DataFrame:
        """Trial rows (``TRIAL_COLUMNS``) for every (input, fault) pair; a fault may have several parts."""
        golden = self.golden(inputs)
        parts = []
        for fault in faults:
            out = self.evaluate(inputs, golden, fault)
            out["fault_id"] = np.full(len(inputs), _as_tuple(fault)[0].fault_id, np.int64)
            out["input_id"] = np.asarray(input_ids, np.int64)
            parts.append(out)
            if on_fault is not None:
                on_fault(1)
        return trials_frame(parts)

    def run_assigned(self, inputs: torch.Tensor, input_ids: np.ndarray,
                     assigned: Sequence[Fault | Sequence[Fault]]) -> pd.DataFrame:
        """One trial row per input, input ``b`` carrying ``assigned[b]`` (``fault_id`` of its first part)."""
        out = self.evaluate_assigned(inputs, self.golden(inputs), assigned)
        out["fault_id"] = np.array([_as_tuple(a)[0].fault_id if _as_tuple(a) else -1 for a in assigned], np.int64)
        out["input_id"] = np.asarray(input_ids, np.int64)
        return trials_frame([out])


def trials_frame(parts: list[dict[str, np.ndarray]]) -> pd.DataFrame:
    """Concatenate outcome arrays into a trial table with a categorical ``outcome``."""
    if not parts:
        return pd.DataFrame({c: [] for c in TRIAL_COLUMNS})
    cols = {c: np.concatenate([p[c] for p in parts]) for c in TRIAL_COLUMNS}
    cols["outcome"] = pd.Categorical.from_codes(cols["outcome"], categories=list(OUTCOMES))
    cols["due_kind"] = cols["due_kind"].astype(str)
    return pd.DataFrame(cols, columns=list(TRIAL_COLUMNS))
