"""Load a model from a spec string.

Specs: ``zoo:NAME`` (built-in, shipped weights), ``timm:NAME[:WEIGHTS]`` (local state dict;
random init without one), ``torchscript:FILE``.

Example::

    model = load_model("zoo:digits-vit")
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from faultsift.errors import ConfigError, LoadError
from faultsift.registry import unknown_name_message
from faultsift.zoo.models import ZOO_MODELS, load_zoo_model

MODEL_KINDS = ("zoo", "timm", "torchscript")


def _split_spec(spec: str, kinds: tuple[str, ...], what: str) -> tuple[str, str]:
    kind, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise ConfigError(f"Expected a {what} spec like `{kinds[0]}:NAME`, got `{spec}`.")
    if kind not in kinds:
        raise ConfigError(unknown_name_message(f"{what} kind", kind, list(kinds)))
    return kind, rest


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a ``.pt``/``.pth`` file (weights only)."""
    if not path.is_file():
        raise LoadError(f"Weights file {path} does not exist; give the path of a .safetensors or .pth state dict.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any parse failure of an untrusted file
        raise LoadError(f"Could not read weights file {path} ({type(exc).__name__}: {exc}).") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise LoadError(f"Weights file {path} holds a {type(state).__name__}, expected a state dict.")
    return state


def load_model(spec: str) -> nn.Module:
    """An ``nn.Module`` in eval mode for ``spec`` (see module docstring)."""
    kind, rest = _split_spec(spec, MODEL_KINDS, "model")
    if kind == "zoo":
        return load_zoo_model(rest)
    if kind == "timm":
        import timm

        name, _, weights = rest.partition(":")
        if name not in timm.list_models():
            raise ConfigError(unknown_name_message("timm model", name, timm.list_models(f"*{name[:3]}*")[:10]))
        model = timm.create_model(name, pretrained=False)
        if weights:
            try:
                model.load_state_dict(load_state_dict_file(Path(weights)), strict=True)
            except RuntimeError as exc:
                raise LoadError(f"Weights {weights} do not fit timm `{name}`: {' '.join(str(exc).split())[:300]}") from None
        return model.eval()
    path = Path(rest)
    if not path.is_file():
        raise LoadError(f"TorchScript file {path} does not exist.")
    try:
        return torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:
        raise LoadError(f"Could not load TorchScript file {path} ({type(exc).__name__}).") from None


def zoo_entry(spec: str):
    """The built-in model entry behind a ``zoo:`` spec, or None for other specs."""
    kind, _, rest = spec.partition(":")
    return ZOO_MODELS.get(rest) if kind == "zoo" else None
