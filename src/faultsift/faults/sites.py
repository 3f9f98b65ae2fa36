"""Fault sites: where a fault lands (a module's output at one of its calls, or a parameter).

A module output of shape [B, ...] or with a folded batch dimension [B*k, ...] (Swin's
``WindowAttention`` runs on B x windows, batch-major) is seen per input as a flat vector of
``numel`` elements: ``out.reshape(B, -1)[b]`` belongs to input ``b``.

Example::

    sites = discover_sites(model, example, ["Attention", "blocks.0.mlp"])
    sites[0].name   # 'blocks.0.attn:output'
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass

import torch
from torch import nn

from faultsift.errors import ConfigError
from faultsift.faults.bits import DTYPE_NAMES

SITE_KINDS = ("output", "weight", "bias")


@dataclass(frozen=True)
class Site:
    """One place a fault can land; ``numel`` counts elements per input (outputs) or in total."""

    module: str
    module_class: str
    kind: str
    call: int
    shape: tuple[int, ...]
    numel: int
    dtype: str

    @property
    def name(self) -> str:
        call = f"#{self.call}" if self.call else ""
        return f"{self.module}:{self.kind}{call}"

    def to_dict(self) -> dict:
        return {**asdict(self), "shape": list(self.shape)}


def _matches(name: str, module: nn.Module, patterns: list[str]) -> bool:
    return any(type(module).__name__ == p or fnmatch.fnmatchcase(name, p) for p in patterns)


def discover_sites(
    model: nn.Module, example: torch.Tensor, patterns: list[str], kinds: tuple[str, ...] = ("output",)
) -> list[Site]:
    """Sites of modules whose class name or qualified name (glob) matches ``patterns``.

    ``example`` is a batch of at least two inputs, used once to record output shapes and to
    find how many times each module runs per forward.
    """
    bad = [k for k in kinds if k not in SITE_KINDS]
    if bad:
        raise ConfigError(f"Expected site kinds among {', '.join(SITE_KINDS)}, got {', '.join(bad)}.")
    if len(example) < 2:
        raise ConfigError(f"Expected an example batch of at least 2 inputs to find sites, got {len(example)}.")
    named = [(n, m) for n, m in model.named_modules() if n and _matches(n, m, patterns)]
    if not named:
        classes = sorted({type(m).__name__ for n, m in model.named_modules() if n})
        raise ConfigError(
            f"No module matches {', '.join(f'`{p}`' for p in patterns)}; module classes in this model: {', '.join(classes)}."
        )
    sites: list[Site] = []
    if "output" in kinds:
        sites += _output_sites(model, example, named)
    for kind in (k for k in kinds if k != "output"):
        for name, module in named:
            param = getattr(module, kind, None)
            if isinstance(param, torch.Tensor) and param.dtype in DTYPE_NAMES:
                sites.append(Site(name, type(module).__name__, kind, 0, tuple(param.shape), param.numel(),
                                  DTYPE_NAMES[param.dtype]))
    return sites


@torch.inference_mode()
def _output_sites(model: nn.Module, example: torch.Tensor, named: list[tuple[str, nn.Module]]) -> list[Site]:
    batch = len(example)
    found: list[Site] = []
    calls: dict[str, int] = {}

    def record(name: str, module: nn.Module):
        def hook(mod, args, out):
            call = calls.get(name, 0)
            calls[name] = call + 1
            if not isinstance(out, torch.Tensor) or out.dtype not in DTYPE_NAMES or out.numel() % batch:
                return
            folded = out.shape[0] // batch if out.shape[0] % batch == 0 else None
            shape = tuple(out.shape[1:]) if folded == 1 else ((folded, *out.shape[1:]) if folded else (out.numel() // batch,))
            found.append(Site(name, type(mod).__name__, "output", call, shape, out.numel() // batch, DTYPE_NAMES[out.dtype]))

        return hook

    handles = [m.register_forward_hook(record(n, m)) for n, m in named]
    try:
        model.eval()(example)
    finally:
        for h in handles:
            h.remove()
    return found
