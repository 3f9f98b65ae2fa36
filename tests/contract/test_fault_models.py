"""Contract of every registered fault model x number format x site kind.

For each case the corrupted values at the site, as the model computes with them, must equal an
independent NumPy computation from the fault's own record (bit operations on unsigned views,
rounding to the format by hand for bf16 and the integer formats); afterwards the model is
bit-exactly restored and hook-free, also when the forward raises. Models: timm
``vit_tiny_patch16_224``, ``swin_tiny_patch4_window7_224`` and ``resnet18`` (random init, small
inputs), the built-in models, and ``torch.ao`` quantized models (int8 weights, uint8 activations).
"""

import warnings
from functools import lru_cache

import numpy as np
import pytest
import timm
import torch
from torch import nn

from faultsift.engine.reference import inject
from faultsift.errors import ConfigError
from faultsift.faults.models import FAULT_MODELS, make_fault_model
from faultsift.faults.sites import discover_sites, read_param, to_rows

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

# format -> (torch dtype of the stored values, NumPy unsigned view, bits)
FORMATS = {"fp32": (torch.int32, np.uint32), "fp64": (torch.int64, np.uint64), "fp16": (torch.int16, np.uint16),
           "bf16": (torch.int16, np.uint16), "qint8": (torch.int8, np.uint8), "quint8": (torch.uint8, np.uint8)}
FLOATS = {"fp32": np.float32, "fp64": np.float64, "fp16": np.float16}


def _timm(name, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        return timm.create_model(name, pretrained=False, num_classes=10, **kw).eval()


class TinyQuantNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant, self.dequant = torch.ao.quantization.QuantStub(), torch.ao.quantization.DeQuantStub()
        self.conv1, self.conv2 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        y = self.conv2(torch.relu(self.conv1(self.quant(x))))
        return self.head(self.dequant(y).flatten(1))


@lru_cache(maxsize=None)
def model_and_inputs(name: str, fmt: str):
    gen = torch.Generator().manual_seed(1)
    if name.startswith("zoo:"):
        from faultsift.data import load_data
        from faultsift.models import load_model

        model, x = load_model(name), load_data("zoo:digits-hard").inputs[:2]
    elif name == "quant-static":
        torch.manual_seed(0)
        model = TinyQuantNet().eval()
        model.qconfig = torch.ao.quantization.get_default_qconfig("x86")
        model.head.qconfig = None  # runs in float after the dequant stub
        torch.ao.quantization.prepare(model, inplace=True)
        x = torch.randn(2, 1, 8, 8, generator=gen)
        model(torch.randn(16, 1, 8, 8, generator=gen))
        torch.ao.quantization.convert(model, inplace=True)
    elif name == "quant-dynamic":
        from faultsift.models import load_model

        model = torch.ao.quantization.quantize_dynamic(load_model("zoo:digits-vit"), {nn.Linear})
        x = torch.randn(2, 1, 8, 8, generator=gen)
    else:
        kw = {"vit": dict(img_size=32), "swin": dict(img_size=32, window_size=4), "resnet": {}}[name]
        model = _timm({"vit": "vit_tiny_patch16_224", "swin": "swin_tiny_patch4_window7_224", "resnet": "resnet18"}[name], **kw)
        x = torch.randn(2, 3, 32, 32, generator=gen)
    if fmt in ("fp64", "fp16", "bf16"):
        dtype = {"fp64": torch.float64, "fp16": torch.float16, "bf16": torch.bfloat16}[fmt]
        model, x = model.to(dtype), x.to(dtype)
    return model, x


# (model, selector, kind) per site kind; every floating format runs each of them
FLOAT_CASES = {"output": ("vit", "blocks.1.attn", "output"), "input": ("swin", "WindowAttention[0]", "input"),
               "weight": ("resnet", "layer1.0.conv1", "weight"), "param": ("vit", "VisionTransformer", "pos_embed"),
               "buffer": ("resnet", "layer1.0.bn1", "running_var")}
CASES = [(fmt, kind, *FLOAT_CASES[kind]) for fmt in ("fp32", "fp64", "fp16", "bf16") for kind in FLOAT_CASES]
CASES += [("qint8", "weight", "quant-dynamic", "blocks.0.mlp.fc1", "weight"),
          ("quint8", "output", "quant-static", "conv1", "output"), ("quint8", "input", "quant-static", "conv2", "input"),
          ("fp32", "output", "zoo:digits-swin", "WindowAttention[0]", "output"),
          ("fp32", "output", "zoo:digits-vit", "Block[3]", "output"), ("fp32", "bias", "zoo:digits-cnn", "conv2", "bias")]


@lru_cache(maxsize=None)
def golden_at(fmt, model_name, selector, kind):
    model, x = model_and_inputs(model_name, fmt)
    return _capture(model, site_for(fmt, model_name, selector, kind), x)


@lru_cache(maxsize=None)
def site_for(fmt, model_name, selector, kind):
    model, x = model_and_inputs(model_name, fmt)
    (site,) = discover_sites(model, x, [selector], kinds=(kind,))[:1]
    assert site.dtype == fmt, (site.dtype, fmt)
    return site


def _bits(t: torch.Tensor, fmt: str) -> np.ndarray:
    t = t.int_repr() if t.is_quantized else t
    return t.contiguous().view(FORMATS[fmt][0]).cpu().numpy().view(FORMATS[fmt][1]).copy()


def _decode(u: np.ndarray, fmt: str) -> np.ndarray:
    if fmt in FLOATS:
        return u.view(FLOATS[fmt]).astype(np.float64)
    if fmt == "bf16":
        return (u.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return u.view(np.int8).astype(np.float64) if fmt == "qint8" else u.astype(np.float64)


def _round_bf16(f32: np.ndarray) -> np.ndarray:
    u = f32.astype(np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(np.isnan(f32), np.uint16(0x7FC0), rounded)


def _encode(x: np.ndarray, fmt: str) -> np.ndarray:
    """float64 -> the format's bits, rounding to nearest even (integers: rounded, saturated, NaN -> 0)."""
    with np.errstate(over="ignore", invalid="ignore"):
        if fmt in FLOATS:
            return x.astype(FLOATS[fmt]).view(FORMATS[fmt][1])
        if fmt == "bf16":
            return _round_bf16(x.astype(np.float32))
        low, high = (-128, 127) if fmt == "qint8" else (0, 255)
        v = np.clip(np.round(np.nan_to_num(x, nan=0.0, posinf=high, neginf=low)), low, high)
        return v.astype(np.int8).view(np.uint8) if fmt == "qint8" else v.astype(np.uint8)


def _arith(fmt):
    """Rounding of one arithmetic result: native for fp32/fp64, float32 then the format for fp16/bf16."""
    return lambda v: _decode(_encode(v.astype(np.float32).astype(np.float64) if fmt in ("fp16", "bf16") else v, fmt), fmt)


def expected_bits(golden: np.ndarray, fault, fmt: str) -> np.ndarray:
    """The fault applied to golden bits [R, numel], written from the Fault's documented semantics."""
    out = golden.copy()
    u = golden[:, fault.indices]
    width = golden.dtype.itemsize * 8
    masks = (fault.masks.astype(np.uint64) & np.uint64(2**width - 1 if width < 64 else 2**64 - 1)).astype(golden.dtype)
    if fault.op == "flip":
        new = u ^ masks
    elif fault.op == "set1":
        new = u | masks
    elif fault.op == "set0":
        new = u & ~masks
    elif fault.op == "assign":
        new = np.broadcast_to(_encode(fault.values, fmt), u.shape)
    else:  # scale
        x = _decode(u, fmt)
        if fmt in ("qint8", "quint8"):
            with np.errstate(invalid="ignore"):
                prod = np.where(np.isfinite(fault.values), x * (1 + fault.values), fault.values)
            new = _encode(prod, fmt)
        else:
            r = _decode(_encode(fault.values, fmt), fmt)
            rnd = _arith(fmt)
            with np.errstate(invalid="ignore", over="ignore"):
                prod = rnd(x * rnd(1 + r))
            new = np.where(np.isfinite(r), _encode(prod, fmt), _encode(r, fmt))
    if fault.restrict != "none":
        x = _decode(new, fmt)
        outside = ~((x >= fault.low) & (x <= fault.high))
        if fault.restrict == "clamp":
            repl = _encode(np.nan_to_num(np.clip(x, fault.low, fault.high), nan=0.0), fmt)
        else:
            repl = _encode(np.zeros_like(x), fmt)
        new = np.where(outside, repl, new)
    out[:, fault.indices] = new
    return out


def _capture(model, site, x, fault=None):
    """Site values [R, numel] as the model computes with them (under ``fault`` if given)."""
    module = model.get_submodule(site.module)
    if not site.is_activation:
        value = read_param(module, site.kind)
        return _bits(value, site.dtype).reshape(1, -1)
    seen = []
    if site.kind == "output":
        def grab(m, a, out):
            seen.append(out[0] if isinstance(out, tuple) else out)
        register = module.register_forward_hook
    else:
        def grab(m, a):
            seen.append(a[0])
        register = module.register_forward_pre_hook
    handle = register(grab)  # registered after the fault's hook: sees corrupted values
    try:
        with torch.inference_mode():
            model(x)
    finally:
        handle.remove()
    return _bits(to_rows(seen[site.call], site, len(x)), site.dtype)


def _snapshot(model):
    out = {}
    for name, value in model.state_dict().items():
        if isinstance(value, torch.Tensor):
            out[name] = value.int_repr().clone() if value.is_quantized else value.detach().clone()
        elif isinstance(value, tuple):  # packed quantized weight, bias
            out[name] = [v.int_repr().clone() if v.is_quantized else v.clone() for v in value if isinstance(v, torch.Tensor)]
    return out


def _hooks(model):
    return {name: (list(m._forward_hooks), list(m._forward_pre_hooks)) for name, m in model.named_modules()}


def _same(a, b):
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a.dtype == b.dtype and torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))


def _params_for(name, site):
    return {"microops": {site.module_class: "Mlp"}} if name.startswith("beam-") else {}


@pytest.mark.parametrize("fault_model", FAULT_MODELS.names())
@pytest.mark.parametrize("fmt,kind,model_name,selector,site_kind", CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CASES])
def test_fault_model_contract(fault_model, fmt, kind, model_name, selector, site_kind):
    model, x = model_and_inputs(model_name, fmt)
    site = site_for(fmt, model_name, selector, site_kind)
    fm = make_fault_model(fault_model, **_params_for(fault_model, site))
    fault = fm.draw(site, np.random.default_rng([7, len(fault_model)]), 3)
    assert fault == fm.draw(site, np.random.default_rng([7, len(fault_model)]), 3)  # replayable
    before, hooks = _snapshot(model), _hooks(model)
    golden = golden_at(fmt, model_name, selector, site_kind)
    with inject(model, fault, len(x)):
        faulty = _capture(model, site, x, fault)
    assert np.array_equal(faulty, expected_bits(golden, fault, fmt))
    after = _snapshot(model)
    assert before.keys() == after.keys() and all(_same(before[k], after[k]) for k in before)
    assert _hooks(model) == hooks  # the loader's own hooks stay, every injection hook is gone
    with pytest.raises(RuntimeError, match="boom"):
        with inject(model, fault, len(x)):
            raise RuntimeError("boom")
    assert all(_same(before[k], v) for k, v in _snapshot(model).items())
    assert _hooks(model) == hooks  # the loader's own hooks stay, every injection hook is gone


@pytest.mark.parametrize("restrict", ["clamp", "zero"])
@pytest.mark.parametrize("pattern", ["row", "column", "block:3", "random-k:7", "fraction:0.2", "channel:0"])
@pytest.mark.parametrize("fmt", ["fp32", "bf16", "quint8"])
def test_patterns_and_range_restriction_contract(fmt, pattern, restrict):
    model_name, selector = ("quant-static", "conv1") if fmt == "quint8" else ("vit", "blocks.1.attn")
    model, x = model_and_inputs(model_name, fmt)
    site = site_for(fmt, model_name, selector, "output")
    fm = make_fault_model("bitflip", pattern=pattern, restrict=restrict)
    fault = fm.draw(site, np.random.default_rng(0), 0)
    golden = golden_at(fmt, model_name, selector, "output")
    with inject(model, fault, len(x)):
        faulty = _capture(model, site, x, fault)
    assert np.array_equal(faulty, expected_bits(golden, fault, fmt))


def test_a_site_that_matches_nothing_says_what_exists():
    model, x = model_and_inputs("resnet", "fp32")
    with pytest.raises(ConfigError, match="No module matches `Attention`; module classes in this model: .*BasicBlock"):
        discover_sites(model, x, ["Attention"])
