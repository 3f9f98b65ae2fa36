"""The fast engine: many (input, fault) trials per forward, the fault-free prefix computed once.

Same outcomes as :mod:`faultsift.engine.reference` for the same fault list (up to rounding in
trials whose output difference sits on the threshold), at a fraction of the cost:

- **Batched trials**: one forward evaluates up to ``max_rows`` trials, each batch row carrying
  its own fault. Activation faults are applied to their own rows by one vectorised operation
  per site. Weight and bias faults of ``nn.Linear`` and ``nn.Conv2d`` are exact per-row
  corrections of the layer output (``y += dW * x`` on the touched output features, in
  float64); other parameter faults are patched in place and run with every input of the fault.
- **Golden-prefix reuse**: one traced forward records the module call tree. For inputs of a
  chunk, one golden forward caches the outputs of the module calls that finish before a fault
  site; a trial forward replays them (the module's ``forward`` returns the cached rows) and
  computes only the rest of the network.
- **Early masking**: at module calls that carry the whole state after the fault (the faulty
  call, its ancestors, later children of an ``nn.Sequential`` ancestor) the rows are compared
  bit-exactly with golden; rows equal to golden are recorded ``masked`` and the forward is
  restarted from that call for the other rows only.

Trials of several parts (several faults at once) and batches whose forward raises are handed
to the reference engine (fault by fault), so a crash caused by one fault never marks other
faults DUE. Models whose control flow depends on the batch size are not supported.

Example::

    engine = FastEngine(model, device="cpu")
    rows = engine.run(inputs, input_ids, faults)                # same columns as ReferenceEngine.run
    for frame in engine.iter_run(inputs, input_ids, fault_iterator, chunk_faults=1000):
        ...                                                     # bounded memory for long fault streams
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from faultsift.engine.outcome import DEFAULT_THRESHOLD, MASKED, classify
from faultsift.engine.reference import ReferenceEngine, _as_tuple, _patch_parameter, trials_frame
from faultsift.errors import ConfigError
from faultsift.faults.bits import DTYPE_NAMES, INT_VIEW, dtype_from_name, rebuild, storage
from faultsift.faults.models import Fault, FaultModel, apply_fault
from faultsift.faults.sites import Site, discover_sites, from_rows, is_packed, read_param, to_rows


@dataclass
class _Call:
    """One module call of the traced forward; ``start``/``end`` are event positions."""

    module: str
    call: int
    start: int
    end: int = -1
    parent: int | None = None
    children: list[int] = field(default_factory=list)
    shape: tuple[int, ...] = ()
    layout: Site | None = None

    @property
    def replayable(self) -> bool:
        return self.layout is not None


class _CallTree:
    """The module call tree of one forward, with the batch layout of every replayable output.

    A call is replayable when its output is one plain tensor (not a tuple, not quantized, not
    an in-place alias of its input) whose batch layout was found.
    """

    def __init__(self, model: nn.Module, example: torch.Tensor):
        self.model = model
        self.calls: list[_Call] = []
        self.by_key: dict[tuple[str, int], int] = {}
        layouts = {(s.module, s.call): s for s in discover_sites(model, example, ["*"], kinds=("output",))}
        self._trace(example[:2], layouts)
        self.sequential = {name for name, m in model.named_modules() if isinstance(m, nn.Sequential)}
        self.first_call = {}
        for i, c in enumerate(self.calls):
            self.first_call.setdefault(c.module, i)
        owners = defaultdict(set)
        for name, m in model.named_modules():
            for p in itertools.chain(m.parameters(recurse=False), m.buffers(recurse=False)):
                owners[id(p)].add(name)
        self.shared = {k for k, v in owners.items() if len(v) > 1}
        self.check_yield: dict[int, list[int]] = defaultdict(lambda: [0, 0])  # rows checked, rows masked
        self.n_calls = defaultdict(int)
        for c in self.calls:
            self.n_calls[c.module] += 1

    @torch.inference_mode()
    def _trace(self, example: torch.Tensor, layouts: dict) -> None:
        events = itertools.count()
        stack: list[int] = []
        counts: dict[str, int] = defaultdict(int)

        def pre(name):
            def hook(mod, args):
                idx = len(self.calls)
                call = _Call(name, counts[name], next(events), parent=stack[-1] if stack else None)
                counts[name] += 1
                if stack:
                    self.calls[stack[-1]].children.append(idx)
                self.calls.append(call)
                self.by_key[(name, call.call)] = idx
                stack.append(idx)
            return hook

        def post(name):
            def hook(mod, args, out):
                idx = stack.pop()
                call = self.calls[idx]
                call.end = next(events)
                aliased = isinstance(out, torch.Tensor) and any(
                    isinstance(a, torch.Tensor) and a.untyped_storage().data_ptr() == out.untyped_storage().data_ptr()
                    for a in args)
                if (name and isinstance(out, torch.Tensor) and not out.is_quantized and out.dtype in DTYPE_NAMES
                        and not aliased and (name, call.call) in layouts):
                    call.layout, call.shape = layouts[(name, call.call)], tuple(out.shape)
            return hook

        handles = []
        try:
            for name, module in self.model.named_modules():
                handles.append(module.register_forward_pre_hook(pre(name)))
                handles.append(module.register_forward_hook(post(name)))
            self.model(example)
        finally:
            for h in handles:
                h.remove()

    def called_ancestor(self, module: str) -> int | None:
        """First call of ``module``, or of its nearest ancestor that runs (a parameter used by its parent)."""
        name = module
        while True:
            if name in self.first_call:
                return self.first_call[name]
            if not name:
                return None
            name = name.rpartition(".")[0]

    def replay_nodes(self, t: float) -> list[int]:
        """The outermost replayable calls that end before event ``t``."""
        out: list[int] = []

        def visit(children):
            for i in children:
                c = self.calls[i]
                if c.end < t:
                    if c.replayable:
                        out.append(i)
                    else:
                        visit(c.children)
                elif c.start < t:
                    visit(c.children)

        root = [i for i, c in enumerate(self.calls) if c.parent is None]
        visit(root)
        return out

    def checkpoints(self, node: int) -> list[int]:
        """Calls after ``node`` whose output carries every effect of a fault inside ``node``."""
        out = [node]
        while (parent := self.calls[node].parent) is not None:
            par = self.calls[parent]
            if par.module in self.sequential:
                out += par.children[par.children.index(node) + 1:]
            out.append(parent)
            node = parent
        return [i for i in out if self.calls[i].replayable and self.calls[i].module]

    def descendants(self, node: int) -> list[int]:
        out, todo = [], list(self.calls[node].children)
        while todo:
            i = todo.pop()
            out.append(i)
            todo += self.calls[i].children
        return out


class _Restart(Exception):
    """Raised from a checkpoint: resume from call ``node`` with ``faulty`` rows for the ``alive`` rows."""

    def __init__(self, node: int, alive: torch.Tensor, faulty: torch.Tensor):
        super().__init__()
        self.node, self.alive, self.faulty = node, alive, faulty


class _AllMasked(Exception):
    pass


def _elements(faults: Sequence[Fault]) -> tuple[np.ndarray, np.ndarray, Fault]:
    """(row of each element, element index, one fault holding every element's operation) for same-op faults."""
    rows = np.repeat(np.arange(len(faults)), [len(f.indices) for f in faults])
    idx = np.concatenate([f.indices for f in faults])
    merged = replace(faults[0], indices=np.arange(len(idx)),
                     masks=np.concatenate([f.masks for f in faults]), values=np.concatenate([f.values for f in faults]))
    return rows, idx, merged


def _param_values(model: nn.Module, fault: Fault) -> tuple[torch.Tensor, torch.Tensor]:
    """Stored values (integers for quantized weights) at a parameter fault's elements, before and under it."""
    module = model.get_submodule(fault.site.module)
    idx = torch.from_numpy(fault.indices)

    def read() -> torch.Tensor:
        value = storage(read_param(module, fault.site.kind))
        return value.detach().reshape(-1)[idx.to(value.device)].cpu().clone()

    before = read()
    restore = _patch_parameter(model, fault)
    try:
        after = read()
    finally:
        restore()
    return before.view(INT_VIEW[before.dtype]), after.view(INT_VIEW[after.dtype])


def _changed_rows(rows_e: np.ndarray, old: torch.Tensor, new: torch.Tensor, n: int) -> torch.Tensor:
    """Positions of the ``n`` rows where some element (of row ``rows_e[e]``) is not bit-identical after the fault."""
    view = INT_VIEW[old.dtype]
    changed = torch.zeros(n, dtype=torch.bool)
    changed[torch.from_numpy(rows_e)[(old.view(view) != new.view(view)).cpu()]] = True
    return torch.nonzero(changed).flatten()


def _op_key(fault: Fault) -> tuple:
    return fault.op, fault.restrict, fault.low, fault.high


class FastEngine(ReferenceEngine):
    """Batched, prefix-caching, early-masking trial evaluation (same interface as the reference).

    ``max_rows``: trials per forward. ``early_masking``: restart without rows that are golden again.
    ``cache_bytes``: bound on the cached golden activations (inputs are taken in groups that fit).
    """

    def __init__(self, model: nn.Module, fault_model: FaultModel | None = None, threshold: float = DEFAULT_THRESHOLD,
                 device: str = "cpu", max_rows: int = 2048, early_masking: bool = True, cache_bytes: int = 2**30):
        super().__init__(model, fault_model, threshold, device)
        if max_rows < 1:
            raise ConfigError(f"Expected `max_rows` >= 1, got {max_rows}.")
        self.max_rows, self.early_masking, self.cache_bytes = max_rows, early_masking, cache_bytes
        self._trees: dict[tuple, _CallTree] = {}
        self._tree: _CallTree | None = None
        self.stats = defaultdict(int)

    # ----- set-up -------------------------------------------------------------------------
    def tree(self, inputs: torch.Tensor) -> _CallTree:
        """The call tree for inputs of this shape and dtype (traced once, on the first two inputs)."""
        key = (tuple(inputs.shape[1:]), inputs.dtype)
        if key not in self._trees:
            example = inputs[:2].to(self.device)
            if len(example) < 2:  # a second, different input for the batch-layout discovery
                gen = torch.Generator().manual_seed(0)
                noise = torch.randn(example.shape, generator=gen).to(example)
                example = torch.cat([example, example + noise]) if example.is_floating_point() else example.repeat(2, 1)
            self._trees[key] = _CallTree(self.model, example)
        self._tree = self._trees[key]
        return self._tree

    def _correctable(self, site: Site) -> bool:
        """A Linear/Conv2d weight or bias fault that a per-row output correction reproduces exactly."""
        module = self.model.get_submodule(site.module)
        if site.kind not in ("weight", "bias") or is_packed(module, site.kind) or getattr(module, site.kind, None) is None:
            return False
        node = self._tree.first_call.get(site.module)
        if node is None or self._tree.calls[node].layout is None or id(getattr(module, site.kind)) in self._tree.shared:
            return False
        layout = self._tree.calls[node].layout
        if isinstance(module, nn.Linear):
            return type(module).forward is nn.Linear.forward
        return (isinstance(module, nn.Conv2d) and type(module).forward is nn.Conv2d.forward
                and module.padding_mode == "zeros" and not isinstance(module.padding, str)
                and layout.batch_dim == 0 and layout.fold == 1)

    def _time(self, fault: Fault) -> tuple[float, int | None, bool]:
        """(event time of the fault, call node it acts inside, whether effects end at that call)."""
        tree = self._tree
        site = fault.site
        if site.is_activation:
            node = tree.by_key.get((site.module, site.call))
            if node is None:
                return 0.0, None, False
            c = tree.calls[node]
            return (c.end + 0.5 if site.kind == "output" else c.start), node, True
        node = tree.called_ancestor(site.module)
        if node is None:
            return 0.0, None, False
        single = tree.n_calls[tree.calls[node].module] == 1 and tree.calls[node].module == site.module
        return tree.calls[node].start, node, single

    @torch.inference_mode()
    def _golden_cache(self, inputs: torch.Tensor, nodes: set[int]) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Golden logits and the per-input rows of the outputs of call ``nodes``."""
        tree = self._tree
        wanted: dict[str, dict[int, int]] = defaultdict(dict)
        for i in nodes:
            wanted[tree.calls[i].module][tree.calls[i].call] = i
        cache: dict[int, torch.Tensor] = {}
        counts: dict[str, int] = defaultdict(int)
        handles = []

        def hook(name):
            def record(mod, args, out):
                call = counts[name]
                counts[name] += 1
                if call in wanted[name]:
                    node = wanted[name][call]
                    cache[node] = to_rows(out, tree.calls[node].layout, len(inputs))
            return record

        try:
            for name in wanted:
                handles.append(self.model.get_submodule(name).register_forward_hook(hook(name)))
            golden = self.model(inputs).float()
        finally:
            for h in handles:
                h.remove()
        return golden, cache

    # ----- evaluation ---------------------------------------------------------------------
    def evaluate(self, inputs, golden, fault):
        """Outcome arrays of one fault (or one fault of several parts) on every input of the batch."""
        return self.evaluate_rows(inputs, golden, np.arange(len(inputs)), [fault] * len(inputs))

    def evaluate_assigned(self, inputs, golden, assigned):
        """Outcome arrays when input ``b`` carries ``assigned[b]`` (its own faults; may be empty)."""
        if len(assigned) != len(inputs):
            raise ConfigError(f"Expected one fault assignment per input ({len(inputs)}), got {len(assigned)}.")
        return self.evaluate_rows(inputs, golden, np.arange(len(inputs)), list(assigned))

    def iter_run(self, inputs: torch.Tensor, input_ids: np.ndarray, faults: Iterable[Fault | Sequence[Fault]],
                 chunk_faults: int | None = None, on_fault: Callable[[int], None] | None = None) -> Iterator[pd.DataFrame]:
        """Trial rows of every (input, fault) pair, one frame per chunk of ``chunk_faults`` faults.

        Faults are consumed lazily, so a generator of any length runs in bounded memory.
        """
        n = len(inputs)
        chunk = chunk_faults or max(1, 16 * self.max_rows // max(n, 1))
        ids = np.asarray(input_ids, np.int64)
        groups = self._input_groups(inputs)
        stream = iter(faults)
        while batch := list(itertools.islice(stream, chunk)):
            out: dict[str, np.ndarray] = {}
            for group in groups:
                part = self.evaluate_rows(inputs[torch.from_numpy(group)], None,
                                          np.tile(np.arange(len(group)), len(batch)),
                                          [f for f in batch for _ in group])
                where = (np.arange(len(batch))[:, None] * n + group[None, :]).ravel()
                for k, v in part.items():
                    out.setdefault(k, np.empty(len(batch) * n, dtype=v.dtype))[where] = v
            out["fault_id"] = np.repeat([_as_tuple(f)[0].fault_id for f in batch], n).astype(np.int64)
            out["input_id"] = np.tile(ids, len(batch))
            if on_fault is not None:
                on_fault(len(batch))
            yield trials_frame([out])

    def _input_groups(self, inputs: torch.Tensor) -> list[np.ndarray]:
        """Input positions in groups whose cached golden activations fit in ``cache_bytes``."""
        tree = self.tree(inputs.to(self.device))
        per_input = sum(c.layout.numel * dtype_from_name(c.layout.dtype).itemsize for c in tree.calls if c.replayable)
        size = int(max(1, min(len(inputs), self.cache_bytes // max(per_input, 1))))
        return [np.arange(s, min(s + size, len(inputs))) for s in range(0, len(inputs), size)]

    def run(self, inputs, input_ids, faults, on_fault=None) -> pd.DataFrame:
        """Trial rows (``TRIAL_COLUMNS``) for every (input, fault) pair, in the order of the reference engine."""
        frames = list(self.iter_run(inputs, input_ids, faults, on_fault=on_fault))
        return pd.concat(frames, ignore_index=True) if frames else trials_frame([])

    @torch.inference_mode()
    def evaluate_rows(self, inputs: torch.Tensor, golden: torch.Tensor | None, row_inputs: np.ndarray,
                      row_faults: Sequence[Fault | Sequence[Fault]]) -> dict[str, np.ndarray]:
        """Outcome arrays of trial ``r``: input ``row_inputs[r]`` (a position in ``inputs``) with ``row_faults[r]``."""
        inputs = inputs.to(self.device)
        tree = self.tree(inputs)
        n = len(row_inputs)
        rows_of: dict[int, list[int]] = defaultdict(list)
        first: dict[int, Fault | Sequence[Fault]] = {}
        for r, f in enumerate(row_faults):
            rows_of[id(f)].append(r)
            first.setdefault(id(f), f)
        groups: dict[tuple, list[int]] = defaultdict(list)
        fallback: dict[tuple, list[int]] = defaultdict(list)
        faults: list[Fault | None] = [None] * n  # the single fault of each row (None: several parts)
        for key_id, rows in rows_of.items():
            parts = _as_tuple(first[key_id])
            if len(parts) != 1:
                fallback[(key_id,)] += rows
                continue
            f = parts[0]
            for r in rows:
                faults[r] = f
            if f.site.is_activation:
                groups[("act", f.site.module, f.site.kind, f.site.call, _op_key(f))] += rows
            elif self._correctable(f.site):
                groups[("corr", f.site.module, f.site.kind, _op_key(f))] += rows
            else:
                groups[("patch", key_id)] += rows
        nodes: set[int] = set()
        plans = {}
        for key, rows in groups.items():
            t, point, single = self._time(faults[rows[0]])
            checks = tree.checkpoints(point) if (point is not None and single and self.early_masking) else []
            plans[key] = (tree.replay_nodes(t), checks, point)
            nodes.update(plans[key][0], checks)
            if key[0] == "act" and key[2] == "output" and point is not None and tree.calls[point].replayable:
                nodes.add(point)
            for node in checks:  # a restart from a checkpoint replays everything before it
                nodes.update(tree.replay_nodes(tree.calls[node].end + 0.5))
        gold, cache = self._golden_cache(inputs, nodes)
        golden = gold.cpu() if golden is None else golden
        out = {"outcome": np.zeros(n, np.int8), "golden_top1": np.zeros(n, np.int16),
               "faulty_top1": np.zeros(n, np.int16), "max_abs_diff": np.zeros(n, np.float32),
               "due_kind": np.full(n, "", dtype=object)}

        def store(rows: np.ndarray, result: dict[str, np.ndarray]):
            for k, v in result.items():
                out[k][rows] = v

        for key, rows in groups.items():
            step = len(rows) if key[0] == "patch" else self.max_rows
            for start in range(0, len(rows), step):
                batch = np.asarray(rows[start:start + step])
                try:
                    result = self._run_batch(key[0], inputs, golden, cache, row_inputs[batch],
                                             [faults[r] for r in batch], *plans[key])
                except ConfigError:
                    raise
                except Exception:  # one fault may crash the forward: evaluate these faults one by one
                    for r in batch:
                        fallback[(id(row_faults[r]),)].append(int(r))
                    continue
                store(batch, result)
        for rows in fallback.values():
            self.stats["reference_rows"] += len(rows)
            sel = torch.as_tensor(row_inputs[rows])
            store(np.asarray(rows), self._forward(inputs[sel], golden[sel], _as_tuple(row_faults[rows[0]])))
        return out

    def _run_batch(self, kind: str, inputs, golden, cache, row_inputs: np.ndarray, faults: list[Fault],
                   replays: list[int], checks: list[int], point: int | None) -> dict[str, np.ndarray]:
        """Outcome arrays of one batch of same-site trials, restarting without rows found masked."""
        tree = self._tree
        n = len(faults)
        src = torch.as_tensor(row_inputs, dtype=torch.long)
        top1 = golden[src].argmax(1).numpy().astype(np.int16)
        result = {"outcome": np.full(n, MASKED, np.int8), "golden_top1": top1, "faulty_top1": top1.copy(),
                  "max_abs_diff": np.zeros(n, np.float32), "due_kind": np.full(n, "", dtype=object)}
        resume, todo = None, [c for c in checks if self._worth_checking(c)]
        if kind == "act" and faults[0].site.kind == "output" and point is not None and tree.calls[point].replayable:
            # the faulty call's output is golden rows with the fault applied: resume from it directly
            rows_e, idx_e, merged = _elements(faults)
            values = cache[point][src.to(self.device)]
            rows_t, idx_t = torch.from_numpy(rows_e).to(self.device), torch.from_numpy(idx_e).to(self.device)
            old = values[rows_t, idx_t]
            new = apply_fault(old.unsqueeze(0).clone(), merged)[0]
            values[rows_t, idx_t] = new
            alive = _changed_rows(rows_e, old, new, n)
            resume = (point, values[alive.to(self.device)])
            replays = tree.replay_nodes(tree.calls[point].end + 0.5)
            todo = [c for c in todo if c != point]
        else:
            alive = self._prescreen(kind, faults)
        self.stats["prescreen_masked"] += n - len(alive)
        while len(alive):
            self.stats["forwards"] += 1
            self.stats["rows"] += len(alive)
            try:
                logits = self._forward_rows(kind, inputs, cache, src, alive, faults, replays, todo, resume)
            except _AllMasked:
                self.stats["early_masked"] += len(alive)
                break
            except _Restart as restart:
                self.stats["early_masked"] += len(alive) - len(restart.alive)
                alive = alive[restart.alive]
                resume = (restart.node, restart.faulty)
                replays = tree.replay_nodes(tree.calls[restart.node].end + 0.5)
                todo = todo[todo.index(restart.node) + 1:]
                continue
            part = classify(golden[src[alive]], logits.float().cpu(), self.threshold)
            for k, v in part.items():
                result[k][alive.numpy()] = v
            break
        return result

    def _worth_checking(self, node: int) -> bool:
        """Checkpoints that have masked under 1% of many rows are skipped (outcomes do not depend on it)."""
        seen, masked = self._tree.check_yield[node]
        return seen < 4 * self.max_rows or 100 * masked >= seen

    def _prescreen(self, kind: str, faults: list[Fault]) -> torch.Tensor:
        """Rows whose parameter fault changes some value (one leaving every touched value bit-identical is masked)."""
        if kind == "patch":
            before, after = _param_values(self.model, faults[0])
            return torch.arange(len(faults)) if bool((before != after).any()) else torch.arange(0)
        if kind != "corr":
            return torch.arange(len(faults))
        param = getattr(self.model.get_submodule(faults[0].site.module), faults[0].site.kind).detach().reshape(-1)
        rows_e, idx_e, merged = _elements(faults)
        old = param[torch.from_numpy(idx_e).to(self.device)]
        return _changed_rows(rows_e, old, apply_fault(old.unsqueeze(0).clone(), merged)[0], len(faults))

    def _forward_rows(self, kind, inputs, cache, src, alive, faults, replays, checks, resume):
        """One forward of rows ``alive``: replayed prefix, faults (unless resuming), checkpoint hooks."""
        tree = self._tree
        rows = src[alive].to(self.device)
        b = len(alive)
        counts: dict[str, int] = defaultdict(int)
        current: dict[str, int] = {}
        with ExitStack() as stack:
            modules = {tree.calls[i].module for i in replays} | {tree.calls[i].module for i in checks}
            if resume is None:
                modules.add(faults[0].site.module)
            for name in modules:
                module = self.model.get_submodule(name)

                def count(mod, args, name=name):
                    current[name] = counts[name]
                    counts[name] += 1

                stack.callback(module.register_forward_pre_hook(count).remove)
            self._install_replays(stack, replays, rows, cache, counts, current, resume, b)
            if resume is None:
                self._install_faults(stack, kind, faults, alive, current, b)
            self._install_checkpoints(stack, checks, rows, cache, current, b)
            return self.model(inputs[rows])

    def _install_replays(self, stack, replays, rows, cache, counts, current, resume, b):
        tree = self._tree
        per_module: dict[str, dict[int, int]] = defaultdict(dict)
        for i in replays:
            per_module[tree.calls[i].module][tree.calls[i].call] = i
        if resume is not None:
            per_module[tree.calls[resume[0]].module][tree.calls[resume[0]].call] = resume[0]
        for name, calls in per_module.items():
            module = self.model.get_submodule(name)
            original = module.forward
            skipped = {i: [tree.calls[d].module for d in tree.descendants(i)] for i in calls.values()}

            def forward(*args, _name=name, _calls=calls, _orig=original, _skipped=skipped, **kwargs):
                node = _calls.get(current.get(_name, -1))
                if node is None:
                    return _orig(*args, **kwargs)
                for m in _skipped[node]:
                    counts[m] += 1
                values = resume[1] if resume is not None and node == resume[0] else cache[node][rows]
                c = tree.calls[node]
                shape = list(c.shape)
                shape[c.layout.batch_dim] = b * c.layout.fold
                return from_rows(values, c.layout, torch.empty(shape, device="meta"))

            own = module.__dict__.get("forward")  # a forward set on the instance is put back as it was
            module.forward = forward
            stack.callback(lambda m=module, own=own: m.__dict__.pop("forward") if own is None
                           else m.__dict__.__setitem__("forward", own))

    def _install_checkpoints(self, stack, checks, rows, cache, current, b):
        tree = self._tree
        if not checks:
            return
        last = checks[-1]
        per_module: dict[str, dict[int, int]] = defaultdict(dict)
        for i in checks:
            per_module[tree.calls[i].module][tree.calls[i].call] = i
        for name, calls in per_module.items():
            def check(mod, args, out, _name=name, _calls=calls):
                node = _calls.get(current.get(_name, -1))
                if node is None:
                    return None
                layout = tree.calls[node].layout
                faulty = to_rows(storage(out), layout, b)
                view = INT_VIEW[faulty.dtype]
                same = (faulty.view(view) == cache[node][rows].view(view)).all(dim=1)
                n_same = int(same.sum())
                tree.check_yield[node][0] += b
                tree.check_yield[node][1] += n_same
                if n_same == b:
                    raise _AllMasked()
                if n_same and node != last and 8 * n_same >= b:
                    keep = torch.nonzero(~same).flatten()
                    raise _Restart(node, keep.cpu(), faulty[keep])
                return None

            stack.callback(self.model.get_submodule(name).register_forward_hook(check).remove)

    def _install_faults(self, stack, kind, faults, alive, current, b):
        live = [faults[i] for i in alive.tolist()]
        fault0 = live[0]
        module = self.model.get_submodule(fault0.site.module)
        if kind == "patch":
            stack.callback(_patch_parameter(self.model, fault0))
            return
        rows_e, idx_e, merged = _elements(live)
        rows_t = torch.from_numpy(rows_e).to(self.device)
        idx_t = torch.from_numpy(idx_e).to(self.device)
        if kind == "act":
            site = fault0.site

            def corrupt(value):
                ints = storage(value)
                flat = to_rows(ints, site, b)
                x = flat[rows_t, idx_t].unsqueeze(0)
                flat[rows_t, idx_t] = apply_fault(x, merged)[0]
                new = from_rows(flat, site, ints)
                return rebuild(new, value) if value.is_quantized else new

            if site.kind == "output":
                def hook(mod, args, out):
                    if current.get(site.module) != site.call:
                        return None
                    if isinstance(out, torch.Tensor):
                        return corrupt(out)
                    return type(out)((corrupt(out[0]), *out[1:]))

                stack.callback(module.register_forward_hook(hook).remove)
            else:
                def pre_hook(mod, args):
                    if current.get(site.module) != site.call or not args:
                        return None
                    return (corrupt(args[0]), *args[1:])

                stack.callback(module.register_forward_pre_hook(pre_hook).remove)
            return
        # kind == "corr": the touched output features of each row recomputed with its faulty weights
        weight = module.weight.detach()
        bias = module.bias.detach() if module.bias is not None else None
        param = weight if fault0.site.kind == "weight" else bias
        new = apply_fault(param.reshape(-1)[idx_t].unsqueeze(0).clone(), merged)[0]
        out_features = weight.shape[0]
        per_out = param.numel() // out_features
        uniq, inverse = torch.unique(rows_t * out_features + idx_t // per_out, return_inverse=True)
        u_rows, u_out = uniq // out_features, uniq % out_features
        w_rows = weight[u_out].clone()
        b_rows = bias[u_out].clone() if bias is not None else None
        if fault0.site.kind == "weight":
            w_rows.reshape(len(uniq), -1)[inverse, idx_t % per_out] = new
        else:
            b_rows[inverse] = new
        layout = self._tree.calls[self._tree.first_call[fault0.site.module]].layout

        def hook(mod, args, out):
            x = args[0]
            if isinstance(mod, nn.Conv2d):
                xs = x[u_rows]
                cin_g = w_rows.shape[1]
                if mod.groups > 1:
                    first = (u_out // (mod.out_channels // mod.groups)) * cin_g
                    xs = xs[torch.arange(len(uniq), device=x.device)[:, None], first[:, None] + torch.arange(cin_g, device=x.device)]
                y_new = torch.nn.functional.conv2d(xs.reshape(1, -1, *xs.shape[2:]), w_rows, b_rows, mod.stride,
                                                   mod.padding, mod.dilation, groups=len(uniq))[0]
                y = out.clone()
                y[u_rows, u_out] = y_new
                return y
            xr = to_rows(x, layout, b).view(b, -1, mod.in_features)
            yr = to_rows(out, layout, b).view(b, -1, mod.out_features)
            y_new = torch.bmm(xr[u_rows], w_rows.unsqueeze(2)).squeeze(2)
            yr[u_rows, :, u_out] = y_new if b_rows is None else y_new + b_rows[:, None]
            return from_rows(yr.reshape(b, -1), layout, out)

        stack.callback(module.register_forward_hook(hook).remove)


def compare_outcomes(reference: pd.DataFrame, fast: pd.DataFrame, threshold: float = DEFAULT_THRESHOLD) -> dict:
    """Trials where two engines agree, and disagreements that sit on the threshold.

    A masked/tolerable disagreement is on the threshold when either engine's max absolute
    difference lies within a factor 2 of ``threshold`` (rounding decides the side). Returns
    counts ``trials``, ``equal``, ``on_threshold`` and ``other`` (disagreements of any other kind).
    """
    keys = ["fault_id", "input_id"]
    both = reference.merge(fast, on=keys, suffixes=("_ref", "_fast"), validate="one_to_one")
    differ = both["outcome_ref"].astype(str) != both["outcome_fast"].astype(str)
    pair = both[["outcome_ref", "outcome_fast"]].astype(str)
    soft = pair.isin(["masked", "sdc_tolerable"]).all(axis=1)
    near = pd.concat([both["max_abs_diff_ref"], both["max_abs_diff_fast"]], axis=1).apply(
        lambda col: (col > threshold / 2) & (col < threshold * 2)).any(axis=1)
    on_threshold = differ & soft & near
    return {"trials": len(both), "equal": int((~differ).sum()), "on_threshold": int(on_threshold.sum()),
            "other": int((differ & ~on_threshold).sum())}
