"""Load a model from a spec string, with optional weights and a precision.

Specs:

- ``zoo:NAME``: built-in model with its shipped weights;
- ``timm:NAME`` and ``torchvision:NAME``: the architecture with random init, or a local state
  dict given as ``weights`` (``.safetensors``, ``.pth``/``.pt`` read with ``weights_only``);
  ``timm:NAME:WEIGHTS`` is a shorthand;
- ``torchscript:FILE`` (``torch.jit.save``), ``exported:FILE`` (``torch.export.save``, with a
  dynamic batch dimension);
- ``py:package.module:factory`` or ``py:path/to/file.py:factory``: a function of no
  arguments returning an ``nn.Module`` (``weights`` then load into it).

Nothing is ever downloaded. ``dtype`` (``fp32``, ``fp16``, ``bf16``) casts the parameters, and a
forward pre-hook casts floating inputs to that dtype and moves inputs to the model's device,
so callers keep feeding float32 CPU tensors; fault sites then report the model's dtype.

Example::

    model = load_model("timm:vit_tiny_patch16_224", weights="vit_tiny.safetensors", dtype="fp16")
    init_note("timm:resnet18", None)    # 'random init (no weights given)'
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import logging
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from faultsift.errors import ConfigError, LoadError
from faultsift.registry import unknown_name_message
from faultsift.zoo.models import ZOO_MODELS, load_zoo_model

log = logging.getLogger(__name__)

MODEL_KINDS = ("zoo", "timm", "torchvision", "torchscript", "exported", "py")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_MAX_LISTED = 3


def _split_spec(spec: str, kinds: tuple[str, ...], what: str) -> tuple[str, str]:
    kind, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise ConfigError(f"Expected a {what} spec like `{kinds[0]}:NAME`, got `{spec}`.")
    if kind not in kinds:
        raise ConfigError(unknown_name_message(f"{what} kind", kind, list(kinds)))
    return kind, rest


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a ``.pt``/``.pth`` file (weights only).

    A checkpoint that wraps the state dict under ``state_dict`` or ``model`` is unwrapped, and
    a ``module.`` prefix (saved from ``DataParallel``) is removed.
    """
    if not path.is_file():
        raise LoadError(f"Weights file {path} does not exist; give the path of a .safetensors or .pth state dict.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any parse failure of an untrusted file
        raise LoadError(f"Could not read weights file {path} ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}).") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise LoadError(f"Weights file {path} holds a {type(state).__name__} that is not a state dict of tensors.")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _listed(keys: list[str]) -> str:
    more = f", +{len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else ""
    return ", ".join(keys[:_MAX_LISTED]) + more


def load_weights(model: nn.Module, path: Path, what: str) -> nn.Module:
    """Load a state dict file into ``model`` strictly; a mismatch is a one-line error listing the first ones."""
    state = load_state_dict_file(Path(path))
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [k for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or reshaped:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing ({_listed(missing)})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected ({_listed(unexpected)})")
        if reshaped:
            shapes = [f"{k} {list(state[k].shape)} vs {list(expected[k].shape)}" for k in reshaped]
            problems.append(f"{len(reshaped)} of another shape, file vs model ({_listed(shapes)})")
        weight_keys = [k for k in expected if k.endswith("weight")]
        hint = ""
        if weight_keys and weight_keys[-1] in reshaped:
            hint = f"; the file's last layer has {state[weight_keys[-1]].shape[0]} outputs: give `--num-classes` to match"
        raise LoadError(f"Weights {path} do not fit {what}: {'; '.join(problems)}{hint}.")
    model.load_state_dict(state, strict=True)
    return model


def _closest(name: str, names: list[str]) -> list[str]:
    """A short list of choices for an error message: the closest names, else the first ones."""
    return difflib.get_close_matches(name, names, n=5, cutoff=0.5) or names[:10]


def _timm(name: str, num_classes: int | None) -> nn.Module:
    import timm

    if name not in timm.list_models():
        raise ConfigError(unknown_name_message("timm model", name, _closest(name, timm.list_models())))
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    return timm.create_model(name, pretrained=False, **kwargs)


def _torchvision(name: str, num_classes: int | None) -> nn.Module:
    import torchvision

    names = torchvision.models.list_models()
    if name not in names:
        raise ConfigError(unknown_name_message("torchvision model", name, _closest(name, names)))
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    return torchvision.models.get_model(name, weights=None, **kwargs)


def _torchscript(path: Path) -> nn.Module:
    if not path.is_file():
        raise LoadError(f"TorchScript file {path} does not exist.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # deprecation notice of torch.jit
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise LoadError(f"Could not load TorchScript file {path} ({type(exc).__name__}).") from None


def _exported(path: Path) -> nn.Module:
    """An exported program, unflattened so submodules keep their qualified names for fault sites."""
    if not path.is_file():
        raise LoadError(f"Exported program file {path} does not exist.")
    try:
        program = torch.export.load(str(path))
    except Exception as exc:
        raise LoadError(f"Could not load exported program {path} ({type(exc).__name__}).") from None
    user_inputs = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user_inputs:
            shape = getattr(node.meta.get("val"), "shape", None)
            if shape is not None and len(shape) and isinstance(shape[0], int):
                raise LoadError(
                    f"Exported program {path} has a static batch size {shape[0]}; export it with a dynamic batch "
                    f"dimension, e.g. dynamic_shapes={{'x': {{0: torch.export.Dim('batch')}}}}."
                )
            break
    return torch.export.unflatten(program)


def _py_factory(target: str) -> nn.Module:
    module_name, sep, func_name = target.rpartition(":")
    if not sep or not module_name or not func_name:
        raise ConfigError(f"Expected `py:package.module:factory` or `py:file.py:factory`, got `py:{target}`.")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise LoadError(f"Python file {path} does not exist.")
            spec = importlib.util.spec_from_file_location(f"faultsift_user_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ImportError as exc:
        raise LoadError(f"Could not import `{module_name}` for `py:{target}` ({exc}).") from None
    factory = getattr(module, func_name, None)
    if not callable(factory):
        choices = [n for n in dir(module) if callable(getattr(module, n)) and not n.startswith("_")]
        raise ConfigError(unknown_name_message(f"factory in `{module_name}`", func_name, choices))
    model = factory()
    if not isinstance(model, nn.Module):
        raise ConfigError(f"Expected `py:{target}` to return an nn.Module, got {type(model).__name__}.")
    return model


def check_dtype_name(dtype: str) -> torch.dtype:
    """The torch dtype of ``fp32``/``fp16``/``bf16``; anything else is a one-line error."""
    if dtype not in DTYPES:
        raise ConfigError(unknown_name_message("dtype", dtype, list(DTYPES)))
    return DTYPES[dtype]


def _cast_inputs(module: nn.Module, args: tuple) -> tuple:
    ref = next(module.parameters(), None)
    if ref is None:
        return args
    return tuple(
        a.to(device=ref.device, dtype=ref.dtype if a.is_floating_point() else a.dtype) if isinstance(a, torch.Tensor) else a
        for a in args
    )


def load_model(spec: str, weights: str | Path | None = None, *, dtype: str = "fp32",
               num_classes: int | None = None) -> nn.Module:
    """An ``nn.Module`` in eval mode for ``spec`` (see the module docstring)."""
    kind, rest = _split_spec(spec, MODEL_KINDS, "model")
    torch_dtype = check_dtype_name(dtype)
    if kind == "timm" and ":" in rest:
        rest, _, inline = rest.partition(":")
        if weights:
            raise ConfigError(f"Expected weights either in the spec or as `weights`, got both for `{spec}`.")
        weights = inline
    if num_classes is not None and kind not in ("timm", "torchvision"):
        raise ConfigError(f"Expected `num_classes` only for timm: and torchvision: models, got it for `{spec}`.")
    if weights and kind in ("zoo", "torchscript", "exported"):
        raise ConfigError(f"Expected no separate weights for `{kind}:` models (they carry their own), got {weights}.")
    if kind in ("torchscript", "exported") and dtype != "fp32":
        raise ConfigError(f"Expected `dtype` fp32 for {kind}: models (their graph fixes the dtype), got {dtype}; "
                          f"save the model in {dtype} instead.")
    if kind == "zoo":
        model = load_zoo_model(rest)
    elif kind == "timm":
        model = _timm(rest, num_classes)
    elif kind == "torchvision":
        model = _torchvision(rest, num_classes)
    elif kind == "py":
        model = _py_factory(rest)
    elif kind == "torchscript":
        model = _torchscript(Path(rest))
    else:
        model = _exported(Path(rest))
    if weights:
        load_weights(model, Path(weights), f"{kind} `{rest}`")
    elif kind in ("timm", "torchvision"):
        log.warning("%s has random init: no weights given", spec)
    if kind != "torchscript":  # TorchScript runs its own forward: Python hooks do not fire inside it
        model = model.to(torch_dtype)
        model.register_forward_pre_hook(_cast_inputs)
    return model.eval()


def check_hookable(model: nn.Module, spec: str) -> None:
    """Refuse output fault sites on TorchScript models, whose submodules run outside Python hooks."""
    if isinstance(model, torch.jit.ScriptModule):
        raise ConfigError(f"Expected a model whose module outputs can be hooked, got TorchScript `{spec}`; "
                          f"give it as `exported:` (torch.export) or `py:` instead.")


def init_note(spec: str, weights: str | Path | None) -> str:
    """How a model's parameters are initialised, for reports (random init is said plainly)."""
    kind, _, rest = spec.partition(":")
    if kind == "timm" and ":" in rest:
        weights = rest.partition(":")[2]
    if weights:
        return f"weights from {weights}"
    return {
        "zoo": "shipped weights",
        "timm": "random init (no weights given)",
        "torchvision": "random init (no weights given)",
        "py": "as built by the factory",
    }.get(kind, "weights inside the file")


def zoo_entry(spec: str):
    """Default fault sites and beam-table rows for a spec, or None when there are none.

    Built-in models have their own entry; timm ViT/DeiT and Swin (v1) models get the micro-ops
    and beam-table rows of the study's ``vit_base_patch16_224`` and ``swin_base_patch4_window7_224``.
    """
    from faultsift.presets import timm_family

    kind, _, rest = spec.partition(":")
    if kind == "zoo":
        return ZOO_MODELS.get(rest) if rest in ZOO_MODELS else None
    if kind == "timm":
        return timm_family(rest.partition(":")[0])
    return None
