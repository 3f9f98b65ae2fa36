"""The fast engine: many (input, fault) trials per forward, the fault-free prefix computed once.

Same outcomes as :mod:`faultsift.engine.reference` for the same fault list (up to rounding in
trials whose output difference sits on the threshold), at a fraction of the cost:

- **Batched trials**: one forward evaluates up to ``max_rows`` trials (fewer for models with
  large activations, see ``batch_bytes``), each batch row carrying its own fault. Activation
  faults are applied to their own rows by one vectorised operation per site. Weight and bias
  faults of ``nn.Linear`` and ``nn.Conv2d`` (called once) are per-row corrections of the layer
  output: golden plus ``(new - old) * input`` on the touched features.
  Other parameter faults are patched in place and run with every input of the fault.
- **Golden-prefix reuse**: one traced forward records the module call tree. For inputs of a
  chunk, one golden forward caches the outputs of the module calls that finish before a fault
  site; a trial forward replays them (the module's ``forward`` returns the cached rows) and
  computes only the rest of the network. Replayed outputs that nothing after them reads (per
  the ``torch.fx`` graph) are replayed as empty batches, so the ops between them cost nothing.
- **Changed channels only**: where a faulty ``[B, C, ...]`` output feeds only channel-wise ops
  (ReLU, max pooling) and at most one costly ``nn.Conv2d`` (golden output plus the convolution
  of the change), just the changed channels go through them; rows golden again after them are masked
  without a forward, the others resume after the last module call among them.
- **Early masking**: at module calls that carry the whole state after the fault (the faulty
  call, its ancestors, later children of an ``nn.Sequential`` ancestor) the rows are compared
  bit-exactly with golden; rows equal to golden are recorded ``masked`` and the forward is
  restarted from that call for the other rows only.

Corrections and convolved changes equal the reference's full recomputation up to rounding.
Where a sum could overflow in some summation order (``max|x| * sum|w|`` near the float range)
the rows are evaluated as the reference does: weights patched in, activations in full.

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

import ctypes
import itertools
from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
import torch.fx
from torch import nn

from faultsift.engine.outcome import DEFAULT_THRESHOLD, MASKED, classify
from faultsift.engine.reference import ReferenceEngine, _as_tuple, _patch_parameter, trials_frame
from faultsift.errors import ConfigError
from faultsift.faults.bits import DTYPE_NAMES, INT_VIEW, dtype_from_name, rebuild, storage
from faultsift.faults.models import Fault, FaultModel, apply_fault
from faultsift.faults.sites import Site, discover_sites, from_rows, is_packed, read_param, to_rows


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_kept: bool | None = None


def keep_freed_memory() -> bool:
    """Keep freed heap memory in the process for reuse (glibc ``mallopt``; process-wide).

    Batched CPU inference frees and allocates activations of megabytes every batch. glibc's
    defaults hand such blocks back to the OS, so each batch page-faults its memory in again:
    about a third of the built-in CNN's trial time on a 2-core VM. After this call, blocks up
    to 32 MiB come from a heap that is not trimmed. Returns whether it applied (False where the
    C library is not glibc). Example::

        keep_freed_memory()   # FastEngine(model) does this unless keep_memory=False
    """
    global _kept
    if _kept is None:
        try:
            mallopt = ctypes.CDLL(None).mallopt
            _kept = bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
        except (OSError, AttributeError):
            _kept = False
    return _kept


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
    in_shape: tuple[int, ...] = ()  # of the first positional input, when it is a tensor

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
        self.bytes_per_input = sum((c.layout.numel + int(np.prod(c.in_shape)) // 2)  # outputs, and layer inputs
                                   * dtype_from_name(c.layout.dtype).itemsize for c in self.calls if c.replayable)
        self.fx_nodes = _traced_calls(model, self)
        self.planes = _plane_chains(model, self)
        self._live: dict[tuple[int, ...], set[int]] = {}
        self.correctable: dict[tuple[str, str], bool] = {}  # (module, parameter) -> FastEngine._correctable
        self.skip_dead = bool(self.fx_nodes)  # replay dead calls as empty batches

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
                if args and isinstance(args[0], torch.Tensor):
                    call.in_shape = tuple(args[0].shape)
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

    def live(self, replays: Sequence[int]) -> set[int]:
        """The replayed calls whose output the rest of the forward reads (all, where untraced).

        A call is dead when every use of its output leads only into other replayed calls.
        """
        key = tuple(sorted(replays))
        if key not in self._live:
            if not self.fx_nodes:
                self._live[key] = set(key)
            else:
                replayed = {self.fx_nodes[i]: i for i in key if i in self.fx_nodes}
                live = {i for i in key if i not in self.fx_nodes}  # calls the graph traces through
                todo, seen = [n for n in next(iter(self.fx_nodes.values())).graph.nodes if n.op == "output"], set()
                while todo:
                    node = todo.pop()
                    if node in seen:
                        continue
                    seen.add(node)
                    if node in replayed:
                        live.add(replayed[node])
                    else:
                        todo.extend(node.all_input_nodes)
                self._live[key] = live
        return self._live[key]

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


def _plane_op(model: nn.Module, node: torch.fx.Node, arg: torch.fx.Node, ndim: int) -> Callable | None:
    """The op of graph ``node`` if it maps each channel of ``arg`` (an ``ndim``-d ``[B, C, ...]``
    value, its only tensor input) to the same channel of its output, bit for bit as on the whole
    tensor: ReLU, max pooling over the trailing dimensions, identity, dropout in eval mode."""
    others = [a for a in (*node.args[1:], *node.kwargs.values()) if isinstance(a, torch.fx.Node)]
    if not node.args or node.args[0] is not arg or others:
        return None
    if node.op == "call_function" and node.target in (torch.relu, nn.functional.relu):
        return torch.relu
    if node.op == "call_method" and node.target in ("relu", "relu_"):
        return torch.relu
    if node.op != "call_module":
        return None
    module = model.get_submodule(node.target)
    if type(module) in (nn.ReLU, nn.Identity) or (type(module) is nn.Dropout and not module.training):
        return torch.relu if type(module) is nn.ReLU else (lambda x: x)
    pools = {nn.MaxPool1d: 3, nn.MaxPool2d: 4, nn.MaxPool3d: 5}
    if pools.get(type(module)) == ndim and not module.return_indices:
        return _MaxPool(module)
    return None


@dataclass
class _MaxPool:
    """A max-pooling module applied to changed channels."""

    module: nn.Module

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:  # channels-last max pooling is several times faster on CPU, and a max is a max
            return nn.MaxPool2d.forward(self.module, x.contiguous(memory_format=torch.channels_last)).contiguous()
        return type(self.module).forward(self.module, x)


def _traced_calls(model: nn.Module, tree: "_CallTree") -> dict[int, torch.fx.Node]:
    """The ``torch.fx`` graph node of each hooked module call that the graph keeps whole (a leaf
    module). Empty where the model does not trace or its graph disagrees with the hooked calls."""
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # data-dependent control flow and the like
        return {}
    seen: dict[str, int] = defaultdict(int)
    out: dict[int, torch.fx.Node] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            i = tree.by_key.get((node.target, seen[node.target]))
            seen[node.target] += 1
            if i is None:
                return {}
            out[i] = node
    if any(n != tree.n_calls[m] for m, n in seen.items()):
        return {}
    return out


@dataclass
class _ConvStep:
    """A ``nn.Conv2d`` call inside a plane chain: its output is golden plus the convolution of
    the input change (linearity), computed on the changed channels only."""

    module: nn.Conv2d
    node: int  # the call, whose golden output is cached


def _is_delta_conv(module: nn.Module, out_shape: tuple[int, ...]) -> bool:
    """A plain ``nn.Conv2d`` costly enough (2**18 multiply-adds per input or more) that convolving
    only the change beats running it: below that, CPU convolution libraries run it faster whole."""
    if not (type(module) is nn.Conv2d and module.groups == 1 and module.padding_mode == "zeros"
            and not isinstance(module.padding, str)):
        return False
    return module.weight.numel() * int(np.prod(out_shape[2:])) >= 2**18


def _plane_chains(model: nn.Module, tree: "_CallTree") -> dict[int, tuple[list, int, int | None]]:
    """For calls whose ``[B, C, ...]`` output feeds a chain of channel-wise ops (see
    :func:`_plane_op`), with at most one ``nn.Conv2d`` among them (a :class:`_ConvStep`):
    ``(steps, k, node)``, ``node`` the last module call among them (the ``k``-th step) that can
    be resumed from, or ``(steps, 0, None)``."""
    call_of = {node: i for i, node in tree.fx_nodes.items()}

    def planar(i):
        c = tree.calls[i] if i is not None else None
        return c is not None and c.replayable and c.layout.batch_dim == 0 and c.layout.fold == 1 and len(c.shape) >= 3

    chains = {}
    for node, i in call_of.items():
        if not planar(i):
            continue
        steps, k, resume, cur, channels, conv = [], 0, None, node, tree.calls[i].shape[1], False
        while len(cur.users) == 1:
            user = next(iter(cur.users))
            j = call_of.get(user)
            op = _plane_op(model, user, cur, len(tree.calls[i].shape))
            if op is None and not conv and planar(j) and len(user.args) == 1 and not user.kwargs \
                    and _is_delta_conv(model.get_submodule(user.target), tree.calls[j].shape):
                op, conv, channels = _ConvStep(model.get_submodule(user.target), j), True, tree.calls[j].shape[1]
            if op is None:
                break
            steps.append(op)
            if planar(j) and tree.calls[j].shape[1] == channels:
                k, resume = len(steps), j
            cur = user
        for a in range(len(steps) - 1):  # max-pool before ReLU: the same values (ReLU is monotone), on fewer
            if steps[a] is torch.relu and isinstance(steps[a + 1], _MaxPool) and k != a + 1:
                steps[a], steps[a + 1] = steps[a + 1], steps[a]
        if steps:
            chains[i] = (steps, k, resume)
    return chains


class _Restart(Exception):
    """Raised from a checkpoint: resume from call ``node`` with ``faulty`` rows for the ``alive`` rows."""

    def __init__(self, node: int, alive: torch.Tensor, faulty: torch.Tensor):
        super().__init__()
        self.node, self.alive, self.faulty = node, alive, faulty


class _AllMasked(Exception):
    pass


@dataclass
class _RowFaults:
    """The single fault of each trial row ``r``: ``faults[which[r]]`` (rows share fault objects)."""

    faults: Sequence[Fault]
    which: np.ndarray

    def __len__(self) -> int:
        return len(self.which)

    def __getitem__(self, row: int) -> Fault:
        return self.faults[self.which[row]]

    def take(self, rows: np.ndarray) -> "_RowFaults":
        return _RowFaults(self.faults, self.which[rows])

    def by_fault(self, rows: np.ndarray) -> list[tuple[Fault, np.ndarray]]:
        """``rows`` grouped by their fault."""
        rows = np.asarray(rows)
        order = np.argsort(self.which[rows], kind="stable")
        keys, starts = np.unique(self.which[rows][order], return_index=True)
        return [(self.faults[k], part) for k, part in zip(keys, np.split(rows[order], starts[1:]))]


def _elements(faults: _RowFaults) -> tuple[np.ndarray, np.ndarray, Fault]:
    """(row of each element, element index, one fault holding every element's operation) for same-op faults."""
    used, which = np.unique(faults.which, return_inverse=True)
    own = [faults.faults[k] for k in used]
    counts = np.array([len(f.indices) for f in own])
    per_row = counts[which]
    rows = np.repeat(np.arange(len(which)), per_row)
    start = np.cumsum(counts) - counts
    elem = np.repeat(start[which] - (np.cumsum(per_row) - per_row), per_row) + np.arange(len(rows))
    idx = np.concatenate([f.indices for f in own])[elem]
    masks, values = np.concatenate([f.masks for f in own]), np.concatenate([f.values for f in own])
    merged = replace(own[0], indices=np.arange(len(idx)), masks=masks[elem] if len(masks) else masks,
                     values=values[elem] if len(values) else values)
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


def _op_key(fault: Fault) -> tuple:
    return fault.op, fault.restrict, fault.low, fault.high


class FastEngine(ReferenceEngine):
    """Batched, prefix-caching, early-masking trial evaluation (same interface as the reference).

    ``max_rows``: trials per forward, at most; fewer where one row's activations times the rows
    would pass ``batch_bytes``. ``early_masking``: restart without rows that are golden again.
    ``cache_bytes``: bound on the cached golden activations (inputs are taken in groups that fit).
    ``keep_memory``: call :func:`keep_freed_memory` (process-wide) on CPU.
    """

    def __init__(self, model: nn.Module, fault_model: FaultModel | None = None, threshold: float = DEFAULT_THRESHOLD,
                 device: str = "cpu", max_rows: int = 4096, early_masking: bool = True, cache_bytes: int = 2**30,
                 batch_bytes: int = 2**28, keep_memory: bool = True):
        super().__init__(model, fault_model, threshold, device)
        if max_rows < 1:
            raise ConfigError(f"Expected `max_rows` >= 1, got {max_rows}.")
        if keep_memory and not str(device).startswith("cuda"):
            keep_freed_memory()
        self.max_rows, self.early_masking = max_rows, early_masking
        self.cache_bytes, self.batch_bytes = cache_bytes, batch_bytes
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
        """A Linear/Conv2d weight or bias fault that a per-row output correction reproduces (up to rounding)."""
        key = (site.module, site.kind)
        if key not in self._tree.correctable:
            self._tree.correctable[key] = self._check_correctable(site)
        return self._tree.correctable[key]

    def _check_correctable(self, site: Site) -> bool:
        module = self.model.get_submodule(site.module)
        if site.kind not in ("weight", "bias") or is_packed(module, site.kind) or getattr(module, site.kind, None) is None:
            return False
        node = self._tree.first_call.get(site.module)
        if (node is None or self._tree.calls[node].layout is None or self._tree.n_calls[site.module] != 1
                or not self._tree.calls[node].in_shape or id(getattr(module, site.kind)) in self._tree.shared):
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
    def _golden_cache(self, inputs: torch.Tensor, nodes: set[int], in_nodes: set[int] = frozenset()):
        """Golden logits and per-input rows: ``cache[i]`` of the output of call ``i`` in ``nodes``,
        ``cache["in", i]`` of the first input of call ``i`` in ``in_nodes``."""
        tree = self._tree
        wanted: dict[str, dict[int, int]] = defaultdict(dict)
        for i in set(nodes) | set(in_nodes):
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
                    if node in nodes:
                        cache[node] = to_rows(out, tree.calls[node].layout, len(inputs))
                    if node in in_nodes:
                        cache["in", node] = to_rows(args[0], tree.calls[node].layout, len(inputs))
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
        chunk = chunk_faults or max(1, 16 * self._rows(self.tree(inputs.to(self.device))) // max(n, 1))
        ids = np.asarray(input_ids, np.int64)
        groups = self._input_groups(inputs)
        stream = iter(faults)
        while batch := list(itertools.islice(stream, chunk)):
            out: dict[str, np.ndarray] = {}
            for group in groups:
                part = self._evaluate(inputs[torch.from_numpy(group)], None, np.tile(np.arange(len(group)), len(batch)),
                                      batch, np.repeat(np.arange(len(batch)), len(group)))
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
        per_input = self.tree(inputs.to(self.device)).bytes_per_input
        size = int(max(1, min(len(inputs), self.cache_bytes // max(per_input, 1))))
        return [np.arange(s, min(s + size, len(inputs))) for s in range(0, len(inputs), size)]

    def _rows(self, tree: "_CallTree") -> int:
        """Trials per forward: ``max_rows``, fewer where their activations would pass ``batch_bytes``."""
        return int(max(1, min(self.max_rows, self.batch_bytes // max(tree.bytes_per_input, 1))))

    def run(self, inputs, input_ids, faults, on_fault=None) -> pd.DataFrame:
        """Trial rows (``TRIAL_COLUMNS``) for every (input, fault) pair, in the order of the reference engine."""
        frames = list(self.iter_run(inputs, input_ids, faults, on_fault=on_fault))
        return pd.concat(frames, ignore_index=True) if frames else trials_frame([])

    def evaluate_rows(self, inputs: torch.Tensor, golden: torch.Tensor | None, row_inputs: np.ndarray,
                      row_faults: Sequence[Fault | Sequence[Fault]]) -> dict[str, np.ndarray]:
        """Outcome arrays of trial ``r``: input ``row_inputs[r]`` (a position in ``inputs``) with ``row_faults[r]``."""
        ids = np.fromiter((id(f) for f in row_faults), np.int64, len(row_faults))
        _, first, which = np.unique(ids, return_index=True, return_inverse=True)
        return self._evaluate(inputs, golden, np.asarray(row_inputs), [row_faults[i] for i in first], which)

    @torch.inference_mode()
    def _evaluate(self, inputs: torch.Tensor, golden: torch.Tensor | None, row_inputs: np.ndarray,
                  items: Sequence[Fault | Sequence[Fault]], which: np.ndarray) -> dict[str, np.ndarray]:
        """Outcome arrays of trial ``r``: input ``row_inputs[r]`` with fault ``items[which[r]]``."""
        inputs = inputs.to(self.device)
        tree = self.tree(inputs)
        n = len(row_inputs)
        order = np.argsort(which, kind="stable")
        counts = np.bincount(which, minlength=len(items))
        rows_of = np.split(order, np.cumsum(counts)[:-1])
        groups: dict[tuple, list[int]] = defaultdict(list)  # items per kind of trial
        fallback: dict[int, list[np.ndarray]] = defaultdict(list)  # rows per item, for the reference
        single: list[Fault | None] = [None] * len(items)  # the fault of each one-part item
        for j, item in enumerate(items):
            if not counts[j]:
                continue
            parts = _as_tuple(item)
            if len(parts) != 1:
                fallback[j].append(rows_of[j])
                continue
            f = single[j] = parts[0]
            if f.site.is_activation:
                groups[("act", f.site.module, f.site.kind, f.site.call, _op_key(f))].append(j)
            elif self._correctable(f.site):
                groups[("corr", f.site.module, f.site.kind, _op_key(f))].append(j)
            else:
                groups[("patch", j)].append(j)
        nodes: set[int] = set()
        in_nodes: set[int] = set()
        plans = {}
        for key, js in groups.items():
            t, point, alone = self._time(single[js[0]])
            checks = tree.checkpoints(point) if (point is not None and alone and self.early_masking) else []
            plans[key] = (tree.replay_nodes(t), checks, point)
            nodes.update(plans[key][0], checks)
            if key[0] == "act" and key[2] == "output" and point is not None and tree.calls[point].replayable:
                nodes.add(point)
            if key[0] == "corr":
                nodes.add(point)
                in_nodes.add(point)
            resume_node = tree.planes[point][2] if point in tree.planes and key[0] != "patch" else None
            if resume_node is not None:  # channels that pass the ops after the fault resume from their end
                nodes.update(tree.replay_nodes(tree.calls[resume_node].end + 0.5))
                nodes.update(step.node for step in tree.planes[point][0] if isinstance(step, _ConvStep))
            for node in checks:  # a restart from a checkpoint replays everything before it
                nodes.update(tree.replay_nodes(tree.calls[node].end + 0.5))
        gold, cache = self._golden_cache(inputs, nodes, in_nodes)
        golden = gold.cpu() if golden is None else golden
        out = {"outcome": np.zeros(n, np.int8), "golden_top1": np.zeros(n, np.int16),
               "faulty_top1": np.zeros(n, np.int16), "max_abs_diff": np.zeros(n, np.float32),
               "due_kind": np.full(n, "", dtype=object)}

        def store(rows: np.ndarray, result: dict[str, np.ndarray]):
            for k, v in result.items():
                out[k][rows] = v

        for key, js in groups.items():
            rows = np.concatenate([rows_of[j] for j in js])
            step = len(rows) if key[0] == "patch" else self._rows(tree)
            for start in range(0, len(rows), step):
                batch = rows[start:start + step]
                try:
                    result = self._run_batch(key[0], inputs, golden, cache, row_inputs[batch],
                                             _RowFaults(single, which[batch]), *plans[key])
                except ConfigError:
                    raise
                except Exception:  # one fault may crash the forward: evaluate these faults one by one
                    for j in np.unique(which[batch]):
                        fallback[j].append(batch[which[batch] == j])
                    continue
                store(batch, result)
        for j, parts in fallback.items():
            rows = np.concatenate(parts)
            self.stats["reference_rows"] += len(rows)
            sel = torch.as_tensor(row_inputs[rows])
            store(rows, self._forward(inputs[sel], golden[sel], _as_tuple(items[j])))
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
        resume, todo, unsafe = None, [c for c in checks if self._worth_checking(c)], np.arange(0)
        if kind == "corr" or (kind == "act" and faults[0].site.kind == "output" and point is not None
                              and tree.calls[point].replayable):
            # the faulty call's output is golden rows with the fault applied: resume from it directly
            alive, resume, unsafe = self._faulty_output(kind, faults, cache, src, point)
            for fault, fault_rows in faults.by_fault(unsafe):  # order-dependent sums: the reference's route
                self.stats["overflow_rows"] += len(fault_rows)
                sel = src[fault_rows]
                for k, v in self._forward(inputs[sel.to(self.device)], golden[sel], (fault,)).items():
                    result[k][fault_rows] = v
            replays = tree.replay_nodes(tree.calls[resume[0]].end + 0.5)
            todo = [c for c in todo if tree.calls[c].end > tree.calls[resume[0]].end]
        else:
            alive = self._prescreen(kind, faults)
        self.stats["prescreen_masked"] += n - len(alive) - len(unsafe)
        while len(alive):
            self.stats["forwards"] += 1
            self.stats["rows"] += len(alive)
            try:
                try:
                    logits = self._forward_rows(kind, inputs, cache, src, alive, faults, replays, todo, resume)
                except (_AllMasked, _Restart):
                    raise
                except Exception:
                    if not tree.skip_dead:
                        raise
                    tree.skip_dead = False  # the graph missed a use of an output: replay every one in full
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
        return seen < 4 * self._rows(self._tree) or 100 * masked >= seen

    def _prescreen(self, kind: str, faults: list[Fault]) -> torch.Tensor:
        """Rows whose patched parameter fault changes some value (one leaving it bit-identical is masked)."""
        if kind == "patch":
            before, after = _param_values(self.model, faults[0])
            return torch.arange(len(faults)) if bool((before != after).any()) else torch.arange(0)
        return torch.arange(len(faults))

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
        live = (tree.live(replays) if tree.skip_dead else set(replays)) | ({resume[0]} if resume is not None else set())
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
                c = tree.calls[node]
                shape = list(c.shape)
                shape[c.layout.batch_dim] = b * c.layout.fold
                if node not in live:  # read by nothing that runs: an empty batch computes nothing after it
                    shape[c.layout.batch_dim] = 0
                    return torch.empty(shape, dtype=dtype_from_name(c.layout.dtype), device=self.device)
                values = resume[1] if resume is not None and node == resume[0] else cache[node].index_select(0, rows)
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
                same = (faulty.view(view) == cache[node].index_select(0, rows).view(view)).all(dim=1)
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
        live = faults.take(alive.numpy())
        site = live[0].site
        if kind == "patch":
            stack.callback(_patch_parameter(self.model, live[0]))
            return
        rows_e, idx_e, merged = _elements(live)
        rows_t = torch.from_numpy(rows_e).to(self.device)
        idx_t = torch.from_numpy(idx_e).to(self.device)
        module = self.model.get_submodule(site.module)

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

    def _faulty_output(self, kind, faults, cache, src, point):
        """Rows whose fault changes the output of call ``point``, where to resume them, and rows to
        evaluate with the reference instead: ``(alive, (node, values of the alive rows), unsafe)``.

        The output is the cached golden one with the fault applied (an output fault) or with the
        touched features recomputed (a weight fault). Where the output is followed by ops that act
        on each channel alone (ReLU, max pooling), only the changed channels go through them; rows
        whose channels come out golden again are masked, the others resume after the last of them.
        """
        tree = self._tree
        dev = src.to(self.device)
        gold = cache[point]
        unsafe = np.arange(0)
        if kind == "act":  # changes as (row, [element], [old value], [new value])
            rows_e, idx_e, merged = _elements(faults)
            rows, idx = torch.from_numpy(rows_e).to(self.device), torch.from_numpy(idx_e).to(self.device)[:, None]
            old = _cells(gold, dev[rows], idx[:, 0])[:, None]
            new = apply_fault(old.reshape(1, -1).clone(), merged)[0][:, None]
        else:  # changes as (row, [elements of one output feature], [old values], [new values])
            rows, idx, old, new, risky = self._weight_correction(faults, cache, dev, point)
            unsafe = _unique(rows[risky], len(faults))[0].cpu().numpy()
        view = INT_VIEW[new.dtype]
        keep = (old.view(view) != new.view(view)).any(dim=1)
        if kind != "act":
            keep &= ~risky
        if not bool(keep.all()):
            rows, idx, old, new = rows[keep], idx[keep], old[keep], new[keep]
        alive = _unique(rows, len(faults))[0]
        if point in tree.planes and len(alive):
            alive, resume, more = self._through_planes(point, gold, dev, (rows, idx, old, new), cache)
            return alive, resume, np.union1d(unsafe, more)
        return alive.cpu(), (point, _write(gold.index_select(0, dev[alive]), _positions(alive, len(faults))[rows], idx,
                                           new)), unsafe

    def _through_planes(self, point, gold, dev, changes, cache):
        """Changed channels of call ``point``'s output through the channel-wise ops that follow it
        (and one convolution): ``(alive, (node, values of the alive rows), unsafe)``.

        Rows whose channels come out golden again (bit for bit) are masked: compared at the end
        of the chain, or, past a convolution, with the cached golden output of the resume call.
        """
        tree = self._tree
        steps, resume_at, resume_node = tree.planes[point]
        shape = tree.calls[point].shape
        n = len(dev)
        rows, idx, old, new = changes
        size = int(np.prod(shape[2:]))
        planes = (len(rows), 1, *shape[2:])
        whole = idx.shape[1] == size and bool((idx == idx[:, :1] + torch.arange(size, device=idx.device)).all()) \
            and bool((idx[:, 0] % size == 0).all())
        if whole:  # each change is one whole channel
            p_rows, p_ch = rows, idx[:, 0] // size
            faulty, golden = new.view(planes), old.view(planes)
        else:  # single elements: their channels, golden except at the changes
            keys, which = _unique((rows[:, None] * shape[1] + idx // size).reshape(-1), n * shape[1])
            p_rows, p_ch = keys // shape[1], keys % shape[1]
            golden = _cells(gold.view(len(gold), shape[1], size), dev[p_rows], p_ch)
            faulty = golden.clone()
            faulty[which, (idx % size).reshape(-1)] = new.reshape(-1)
            faulty, golden = faulty.view(len(keys), 1, *shape[2:]), golden.view(len(keys), 1, *shape[2:])
        if any(isinstance(step, _ConvStep) for step in steps[:resume_at]):
            return self._through_conv(steps[:resume_at], resume_node, (p_rows, p_ch, faulty, golden), cache, dev)
        at_resume = faulty
        for i, step in enumerate(steps):
            faulty, golden = step(faulty), step(golden)
            if i + 1 == resume_at:
                at_resume = faulty
        view = INT_VIEW[faulty.dtype]
        differs = (faulty.view(view) != golden.view(view)).reshape(len(p_rows), -1).any(dim=1)
        alive = _unique(p_rows[differs], n)[0]
        self.stats["plane_masked"] += len(_unique(p_rows, n)[0]) - len(alive)
        if resume_node is None:
            position = _positions(alive, n)[rows]
            keep = position >= 0  # changes of rows masked by the ops are dropped
            values = _write(gold.index_select(0, dev[alive]), position[keep], idx[keep], new[keep])
            return alive.cpu(), (point, values), np.arange(0)
        r_size = int(np.prod(tree.calls[resume_node].shape[2:]))
        position = _positions(alive, n)[p_rows]
        keep = position >= 0
        cells = p_ch[keep, None] * r_size + torch.arange(r_size, device=p_ch.device)
        values = _write(cache[resume_node].index_select(0, dev[alive]), position[keep], cells,
                        at_resume[keep].reshape(-1, r_size))
        return alive.cpu(), (resume_node, values), np.arange(0)

    def _through_conv(self, steps, resume_node, planes, cache, dev):
        """Changed channels through ops and one convolution, up to the resume call (whole rows
        past the convolution); rows equal to its cached golden output are masked."""
        p_rows, p_ch, faulty, golden = planes
        unsafe = torch.zeros(len(dev), dtype=torch.bool, device=faulty.device)
        for step in steps:
            if isinstance(step, _ConvStep):
                rows, faulty = self._conv_step(step, p_rows, p_ch, faulty, golden, cache, dev, unsafe)
                golden = None
            elif golden is not None:
                faulty, golden = step(faulty), step(golden)
            else:
                faulty = step(faulty)
        faulty = faulty.reshape(len(rows), -1)
        gold = cache[resume_node].index_select(0, dev[rows])
        view = INT_VIEW[faulty.dtype]
        keep = (faulty.view(view) != gold.view(view)).any(dim=1) & ~unsafe[rows]
        n_kept = int(keep.sum())
        self.stats["plane_masked"] += len(rows) - n_kept - int(unsafe.sum())
        if n_kept < len(rows):
            rows, faulty = rows[keep], faulty[keep]
        return rows.cpu(), (resume_node, faulty), torch.nonzero(unsafe).flatten().cpu().numpy()

    def _conv_step(self, step: _ConvStep, p_rows, p_ch, faulty, golden, cache, dev, unsafe):
        """Changed input channels through a convolution: ``(rows, their whole outputs)``, golden plus
        the convolution of the change with the kernel slice of its channel (one dense convolution
        per channel when each has many changes, else one grouped convolution). Rows where some
        summation order could overflow are flagged in ``unsafe``."""
        conv = step.module
        out_shape = self._tree.calls[step.node].shape
        rows, which = _unique(p_rows, len(dev))
        delta = (faulty - golden)[:, 0]  # [planes, H, W]
        weight = conv.weight.detach()
        mass = weight.abs().sum(dim=(2, 3)).amax(dim=0).double()  # per input channel: max over outputs of sum|w|
        bound = torch.zeros(len(rows), dtype=torch.float64, device=delta.device).index_add_(
            0, which, delta.abs().reshape(len(delta), -1).amax(dim=1).double() * mass[p_ch])
        unsafe[rows[~(bound < torch.finfo(weight.dtype).max / 4)]] = True
        total = cache[step.node].index_select(0, dev[rows]).view(len(rows), *out_shape[1:])
        order = torch.argsort(p_ch)
        channels, counts = torch.unique_consecutive(p_ch[order], return_counts=True)
        if len(delta) >= 128 * len(channels):  # many changes per channel: one dense convolution per channel
            for c, part in zip(channels.tolist(), torch.split(order, counts.tolist())):
                total.index_add_(0, which[part], torch.nn.functional.conv2d(
                    delta.index_select(0, part).unsqueeze(1), weight[:, c:c + 1], None, conv.stride, conv.padding,
                    conv.dilation))
        else:  # one grouped convolution, each change with the kernel slice of its channel
            kernels = weight[:, p_ch].transpose(0, 1).reshape(-1, 1, *weight.shape[2:])
            total.index_add_(0, which, torch.nn.functional.conv2d(
                delta.unsqueeze(0), kernels, None, conv.stride, conv.padding, conv.dilation,
                groups=len(delta)).view(len(delta), *out_shape[1:]))
        return rows, total

    def _weight_correction(self, faults: list[Fault], cache, src: torch.Tensor, point: int):
        """Output features a Linear/Conv2d weight or bias fault changes, one per (row, output
        feature): ``(rows, element indices, golden values, faulty values, risky)``, elements in
        the layout of the cached rows of call ``point`` (row ``r`` is input ``src[r]`` with
        ``faults[r]``).

        Each changed weight adds ``(new - old) * x`` to the golden output (a bias ``new - old``),
        the exact correction up to rounding. ``risky`` marks rows whose sum some summation order
        could overflow and another not: two or more terms bounded near the float range (they are
        evaluated as the reference does instead).
        """
        fault0 = faults[0]
        module = self.model.get_submodule(fault0.site.module)
        call = self._tree.calls[point]
        conv = isinstance(module, nn.Conv2d)
        rows_e, idx_e, merged = _elements(faults)
        rows_t = torch.from_numpy(rows_e).to(self.device)
        idx_t = torch.from_numpy(idx_e).to(self.device)
        param = getattr(module, fault0.site.kind).detach()
        old = param.reshape(-1)[idx_t]
        new = apply_fault(old.unsqueeze(0).clone(), merged)[0]
        out_features = param.shape[0]
        per_out = param.numel() // out_features
        out_e = idx_t // per_out
        x_all = cache["in", point]
        gold = cache[point]
        if conv:
            x_all = x_all.view(len(x_all), *call.in_shape[1:])
            plane = call.shape[2:]
        else:
            x_all = x_all.view(len(x_all), -1, module.in_features)
            plane = (gold.shape[1] // out_features,)
        dw = (new - old)[:, None, None] if conv else (new - old)[:, None]
        if fault0.site.kind == "bias":
            contrib = dw.expand(len(idx_t), *plane)
        elif conv:
            kh, kw = module.kernel_size
            rest = idx_t % per_out
            cin_g = module.in_channels // module.groups
            channel = (out_e // (module.out_channels // module.groups)) * cin_g + rest // (kh * kw)
            x = _cells(x_all, src[rows_t], channel)
            x = torch.nn.functional.pad(x, (module.padding[1],) * 2 + (module.padding[0],) * 2)
            steps_y = module.stride[0] * torch.arange(plane[0], device=x.device)
            steps_x = module.stride[1] * torch.arange(plane[1], device=x.device)
            ys = ((rest // kw) % kh * module.dilation[0])[:, None] + steps_y
            xs = (rest % kw * module.dilation[1])[:, None] + steps_x
            contrib = x[torch.arange(len(x), device=x.device)[:, None, None], ys[:, :, None], xs[:, None, :]] * dw
        else:
            contrib = x_all[src[rows_t], :, idx_t % per_out] * dw
        keys, which = _unique(rows_t * out_features + out_e, len(faults) * out_features)
        u_rows, u_out = keys // out_features, keys % out_features
        delta = torch.zeros(len(keys), *plane, dtype=contrib.dtype, device=contrib.device).index_add_(0, which, contrib)
        if conv:
            size = int(np.prod(plane))
            idx = u_out[:, None] * size + torch.arange(size, device=u_out.device)
        else:
            idx = u_out[:, None] + out_features * torch.arange(plane[0], device=u_out.device)
        flat = (src[u_rows, None] * gold.shape[1] + idx).reshape(-1)
        old_values = gold.reshape(-1).index_select(0, flat).view(idx.shape)
        # Every partial sum of the faulty layer is bounded by max|x| * sum|w| + |b| per touched
        # feature. Past half the float range, one huge term alone still sums the same in any order
        # (the others are far below its rounding step); two or more may overflow in some orders only.
        weight = module.weight.detach().reshape(out_features, -1).abs().double().sum(1)[u_out]
        x_max = x_all.reshape(len(x_all), -1).abs().amax(dim=1).double()[src[u_rows]]
        bias = module.bias.detach().abs().double()[u_out] if module.bias is not None else torch.zeros_like(x_max)
        new_abs = new.abs().double()
        added = torch.zeros_like(x_max).index_add_(0, which, new_abs)
        largest = torch.zeros_like(x_max).scatter_reduce_(0, which, new_abs, "amax")
        if fault0.site.kind == "weight":
            total, rest = x_max * (weight + added) + bias, x_max * (weight + added - largest) + bias
        else:
            total, rest = x_max * weight + bias + added, x_max * weight + bias + added - largest
        risky = ~(total < torch.finfo(param.dtype).max / 2) & ~(rest < 2.0**100)
        risky_rows = torch.zeros(len(faults), dtype=torch.bool, device=u_rows.device)
        risky_rows[u_rows[risky]] = True
        return u_rows, idx, old_values, old_values + delta.reshape(len(keys), -1), risky_rows[u_rows]


def _write(values: torch.Tensor, rows: torch.Tensor, cells: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """``values`` ([rows, numel]) with ``values[rows[k], cells[k, j]] = new[k, j]``."""
    flat = (rows[:, None] * values.shape[1] + cells).reshape(-1)
    values.view(-1).index_copy_(0, flat, new.reshape(-1))
    return values


def _cells(values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``values[rows, cols]`` (with any trailing dimensions), as one flat row gather."""
    flat = values.reshape(values.shape[0] * values.shape[1], *values.shape[2:])
    return flat.index_select(0, rows * values.shape[1] + cols)


def _positions(rows: torch.Tensor, n: int) -> torch.Tensor:
    """Map from row number (< n) to its place in the sorted ``rows``; -1 for rows not in it."""
    position = torch.full((n,), -1, dtype=torch.long, device=rows.device)
    position[rows] = torch.arange(len(rows), device=rows.device)
    return position


def _unique(values: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted distinct ``values`` (integers in [0, n)) and where each value sits among them,
    like ``torch.unique(values, return_inverse=True)`` in O(n) instead of a sort."""
    seen = torch.zeros(n, dtype=torch.bool, device=values.device)
    seen[values] = True
    distinct = torch.nonzero(seen).flatten()
    return distinct, _positions(distinct, n)[values]


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
