"""Fault sites: where a fault lands.

A site is a module's ``output`` or ``input`` at one of its calls (a module called twice per
forward gives two sites), or one of its parameters or buffers by name (``weight``, ``bias``,
bare ``nn.Parameter`` such as ``in_proj_weight``, ``running_mean``, the stored int8 weight of a
``torch.ao`` quantized module). Modules are chosen by selectors:

| selector | modules |
| --- | --- |
| ``Attention`` | every instance of that class |
| ``blocks.3.attn``, ``blocks.*.attn`` | by qualified name or glob |
| ``Attention[2]`` | the third instance of the class to run in the forward |
| ``Attention[largest]`` | the instance with the most elements at the site |

A module returning a tuple (``nn.MultiheadAttention``) is faulted in its first item.
Activations are seen per input as a flat vector of ``numel`` elements. Where a module folds
the batch into another dimension (Swin's ``WindowAttention`` runs on B x windows, attention
on B x heads, sequence-first layouts put the batch second), discovery finds the batch
dimension, the fold factor and whether the batch is the major or the minor part of the
folded dimension, from forwards with one input, two inputs and the two swapped; every fault
then lands on the elements of its own input (:func:`to_rows`, :func:`from_rows`).

Example::

    sites = discover_sites(model, example, ["Attention", "blocks.0.mlp"], kinds=("output", "weight"))
    sites[0].name   # 'blocks.0.attn:output'
"""

from __future__ import annotations

import fnmatch
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from faultsift.errors import ConfigError
from faultsift.faults.bits import DTYPE_NAMES, storage

ACTIVATION_KINDS = ("output", "input")
PARAM_GROUPS = ("params", "buffers")
SITE_KINDS = ACTIVATION_KINDS + ("weight", "bias") + PARAM_GROUPS
_SELECTOR = re.compile(r"^(?P<base>.*?)(\[(?P<which>\d+|largest)\])?$")


@dataclass(frozen=True)
class Site:
    """One place a fault can land; ``numel`` counts elements per input (activations) or in total.

    ``batch_dim``, ``fold`` and ``fold_order`` say how the batch sits in an activation: input
    ``b`` owns index ``b * fold + j`` (major) or ``j * B + b`` (minor) of dimension
    ``batch_dim``, for j < fold. ``golden_min``/``golden_max``: the value range seen in
    fault-free runs (for range restriction).
    """

    module: str
    module_class: str
    kind: str
    call: int
    shape: tuple[int, ...]
    numel: int
    dtype: str
    batch_dim: int = 0
    fold: int = 1
    fold_order: str = "major"
    golden_min: float | None = None
    golden_max: float | None = None

    @property
    def name(self) -> str:
        call = f"#{self.call}" if self.call else ""
        return f"{self.module}:{self.kind}{call}"

    @property
    def is_activation(self) -> bool:
        return self.kind in ACTIVATION_KINDS

    def to_dict(self) -> dict:
        return {**asdict(self), "shape": list(self.shape)}


def to_rows(values: torch.Tensor, site: Site, batch: int) -> torch.Tensor:
    """A [batch, numel] copy of an activation; row b holds input b's elements (folding undone)."""
    x = values.movedim(site.batch_dim, 0)
    if site.fold_order == "minor":
        x = x.reshape(site.fold, batch, *x.shape[1:]).transpose(0, 1)
    return x.reshape(batch, -1).clone()


def from_rows(rows: torch.Tensor, site: Site, like: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_rows`: a tensor laid out like ``like`` holding ``rows``."""
    moved = like.movedim(site.batch_dim, 0).shape
    batch = rows.shape[0]
    if site.fold_order == "minor":
        x = rows.reshape(batch, site.fold, *moved[1:]).transpose(0, 1).reshape(moved)
    else:
        x = rows.reshape(moved)
    return x.movedim(0, site.batch_dim)


def read_param(module: nn.Module, name: str) -> torch.Tensor:
    """Parameter or buffer ``name`` of ``module``; quantized modules' ``weight()``/``bias()`` too."""
    value = getattr(module, name)
    return value() if callable(value) and not isinstance(value, torch.Tensor) else value


def is_packed(module: nn.Module, name: str) -> bool:
    """True for the packed weight/bias of a ``torch.ao`` quantized module (set through ``set_weight_bias``)."""
    return (name in ("weight", "bias") and hasattr(module, "set_weight_bias") and hasattr(module, name)
            and callable(getattr(module, name)))


def first_tensor(value):
    """The tensor a site sees in a module's output or input: the value itself, or item 0 of a tuple/list."""
    return value[0] if isinstance(value, (tuple, list)) and value else value


def _parse(selectors: list[str]) -> list[tuple[str, str | None]]:
    out = []
    for s in selectors:
        m = _SELECTOR.match(s.strip())
        out.append((m["base"], m["which"]))
    return out


def _matches(name: str, module: nn.Module, base: str) -> bool:
    return type(module).__name__ == base or name == base or fnmatch.fnmatchcase(name, base)


def discover_sites(
    model: nn.Module, example: torch.Tensor, patterns: list[str], kinds: tuple[str, ...] = ("output",)
) -> list[Site]:
    """Sites of the modules chosen by ``patterns`` (see the module docstring), of the given ``kinds``.

    ``kinds``: ``output``, ``input``, ``weight``, ``bias``, ``params`` (every parameter),
    ``buffers`` (every floating buffer) or any parameter/buffer name. ``example`` is a batch
    of at least two different inputs, run three times to record shapes, calls, batch layout
    and golden value ranges.
    """
    if len(example) < 2:
        raise ConfigError(f"Expected an example batch of at least 2 inputs to find sites, got {len(example)}.")
    parsed = _parse(patterns)
    candidates = {n: m for n, m in model.named_modules() if any(_matches(n, m, b) for b, _ in parsed)}
    if not candidates:
        classes = sorted({type(m).__name__ for n, m in model.named_modules() if n})
        raise ConfigError(f"No module matches {', '.join(f'`{p}`' for p in patterns)}; "
                          f"module classes in this model: {', '.join(classes)}.")
    activation_kinds = [k for k in kinds if k in ACTIVATION_KINDS]
    traced = _trace(model, example, {n: m for n, m in candidates.items() if n}, activation_kinds)
    order = {name: i for i, name in enumerate(dict.fromkeys(traced["order"]))}
    param_kinds = [k for k in kinds if k not in ACTIVATION_KINDS]
    per_module: dict[str, list[Site]] = defaultdict(list)
    for site in traced["sites"]:
        per_module[site.module].append(site)
    for name, module in candidates.items():
        per_module[name] += _param_sites(name, module, param_kinds)
    chosen: dict[str, None] = {}
    for base, which in parsed:
        names = [n for n in candidates if _matches(n, candidates[n], base)]
        if which is None:
            chosen.update(dict.fromkeys(names))
        elif which == "largest":
            sized = [n for n in names if per_module[n]]
            if sized:
                chosen[max(sized, key=lambda n: max(s.numel for s in per_module[n]))] = None
        else:
            ran = sorted((n for n in names if n in order), key=order.get)
            if int(which) >= len(ran):
                raise ConfigError(f"Expected an instance index in [0, {len(ran) - 1}] for `{base}`, got {which}.")
            chosen[ran[int(which)]] = None
    # activations in execution order, then parameters kind by kind
    sites = [s for s in traced["sites"] if s.module in chosen]
    sites += [s for kind in param_kinds for n in candidates if n in chosen
              for s in _param_sites(n, candidates[n], [kind])]
    if not sites:
        raise ConfigError(f"No site of kind {', '.join(kinds)} in modules matching {', '.join(f'`{p}`' for p in patterns)}; "
                          f"kinds are {', '.join(SITE_KINDS)} or a parameter/buffer name.")
    return sites


def _param_sites(name: str, module: nn.Module, kinds: list[str]) -> list[Site]:
    found: dict[str, torch.Tensor] = {}
    own = dict(module.named_parameters(recurse=False)) | dict(module.named_buffers(recurse=False))
    for kind in kinds:
        if kind == "params":
            found |= dict(module.named_parameters(recurse=False))
        elif kind == "buffers":
            found |= dict(module.named_buffers(recurse=False))
        elif kind in own:
            found[kind] = own[kind]
        elif is_packed(module, kind):
            value = read_param(module, kind)
            if value is not None:
                found[kind] = value
    return [Site(name, type(module).__name__, kind, 0, tuple(t.shape), t.numel(), DTYPE_NAMES[t.dtype])
            for kind, t in found.items() if isinstance(t, torch.Tensor) and t.dtype in DTYPE_NAMES]


@torch.inference_mode()
def _trace(model: nn.Module, example: torch.Tensor, modules: dict[str, nn.Module], kinds: list[str]) -> dict:
    """Run the model on 1 input, 2 inputs and the 2 swapped; record every activation site."""
    runs: list[dict] = [{}, {}, {}]
    current = {"run": 0}
    calls: dict[tuple[str, str], int] = defaultdict(int)
    order: list[str] = []

    def record(name, kind, mod, value):
        key = (name, kind)
        call = calls[key]
        calls[key] += 1
        if current["run"] == 0 and kind == "output":
            order.append(name)
        if kind not in kinds or not isinstance(value, torch.Tensor) or value.dtype not in DTYPE_NAMES:
            return
        x = storage(value).double()
        sums = [x.sum(dim=[d for d in range(x.dim()) if d != dim]) if x.dim() > 1 else x for dim in range(x.dim())]
        runs[current["run"]][(name, kind, call)] = (tuple(value.shape), DTYPE_NAMES[value.dtype], sums,
                                                    float(x.min()) if x.numel() else 0.0,
                                                    float(x.max()) if x.numel() else 0.0, type(mod).__name__)

    handles = []
    for name, module in modules.items():
        handles.append(module.register_forward_hook(  # always: the execution order
            lambda mod, args, out, name=name: record(name, "output", mod, first_tensor(out))))
        if "input" in kinds:
            handles.append(module.register_forward_pre_hook(
                lambda mod, args, name=name: record(name, "input", mod, args[0] if args else None)))
    was_training = model.training
    try:
        model.eval()
        for i, batch in enumerate((example[:1], example[:2], example[[1, 0]])):
            current["run"] = i
            calls.clear()
            model(batch)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    sites = []
    for key, (shape2, dtype, sums, low, high, cls) in runs[1].items():
        if key not in runs[0] or key not in runs[2]:
            continue
        layout = _batch_layout(runs[0][key][0], shape2, sums, runs[2][key][2])
        if layout is None:
            continue
        dim, fold, fold_order = layout
        rest = shape2[:dim] + shape2[dim + 1:]
        per_input = ((fold,) if fold > 1 else ()) + rest
        numel = 1
        for s in per_input:
            numel *= s
        name, kind, call = key
        sites.append(Site(name, cls, kind, call, per_input, numel, dtype, dim, fold, fold_order, low, high))
    return {"sites": sites, "order": order}


def _batch_layout(shape1, shape2, sums, swapped_sums) -> tuple[int, int, str] | None:
    """(batch dim, fold, order) from shapes at batch 1 and 2 and per-slice sums of normal vs swapped runs."""
    if len(shape1) != len(shape2):
        return None
    dims = [d for d, (a, b) in enumerate(zip(shape1, shape2)) if b == 2 * a and a > 0]
    if not dims or any(a != b for d, (a, b) in enumerate(zip(shape1, shape2)) if d != dims[0]):
        return None
    dim, fold = dims[0], shape1[dims[0]]
    if fold == 1:
        return dim, 1, "major"
    normal, swapped = sums[dim], swapped_sums[dim]
    major = float((swapped[:fold] - normal[fold:]).abs().max())
    minor = float((swapped[0::2] - normal[1::2]).abs().max())
    return dim, fold, "major" if major <= minor else "minor"


def with_golden_ranges(model: nn.Module, inputs: torch.Tensor, sites: list[Site], batch_size: int = 256) -> list[Site]:
    """``sites`` with ``golden_min``/``golden_max`` of activations taken over every input of ``inputs``."""
    lows: dict[tuple, float] = {}
    highs: dict[tuple, float] = {}
    wanted = {(s.module, s.kind, s.call) for s in sites if s.is_activation}
    calls: dict[tuple[str, str], int] = defaultdict(int)

    def record(name, kind, value):
        call = calls[(name, kind)]
        calls[(name, kind)] += 1
        if (name, kind, call) in wanted and isinstance(value, torch.Tensor):
            x = storage(value)
            key = (name, kind, call)
            lows[key] = min(lows.get(key, float("inf")), float(x.min()))
            highs[key] = max(highs.get(key, float("-inf")), float(x.max()))

    handles = []
    for name in {s.module for s in sites if s.is_activation}:
        module = model.get_submodule(name)
        handles.append(module.register_forward_hook(
            lambda mod, args, out, name=name: record(name, "output", first_tensor(out))))
        handles.append(module.register_forward_pre_hook(
            lambda mod, args, name=name: record(name, "input", args[0] if args else None)))
    try:
        with torch.inference_mode():
            for start in range(0, len(inputs), batch_size):
                calls.clear()
                model.eval()(inputs[start:start + batch_size])
    finally:
        for h in handles:
            h.remove()
    return [replace(s, golden_min=lows[k], golden_max=highs[k]) if (k := (s.module, s.kind, s.call)) in lows else s
            for s in sites]
