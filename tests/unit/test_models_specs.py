"""Model specs: timm, torchvision, TorchScript, exported programs, py factories, weights files."""

import warnings

import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import nn

from faultsift.errors import ConfigError, LoadError
from faultsift.campaign.plan import plan_faults
from faultsift.engine.reference import injected
from faultsift.faults.models import make_fault_model
from faultsift.faults.sites import discover_sites
from faultsift.models import check_hookable, init_note, load_model, zoo_entry


FACTORIES = (
    "import torch\n"
    "def small():\n    torch.manual_seed(0)\n    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4))\n"
    "def not_a_model():\n    return 3\n"
)


def _same_output(a: nn.Module, b: nn.Module, x: torch.Tensor) -> bool:
    with torch.inference_mode():
        return torch.equal(a.eval()(x), b.eval()(x))


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(3)  # timm's init draws from the global generator; fixed for this file's models
    return timm.create_model("test_vit", pretrained=False, num_classes=5).eval()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_timm_weights_file_gives_the_saved_model(tmp_path, source, suffix):
    path = tmp_path / f"w{suffix}"
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save({"state_dict": state}, path)
    model = load_model("timm:test_vit", weights=path, num_classes=5)
    x = torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(0))
    assert _same_output(model, source, x) and not model.training
    inline = load_model(f"timm:test_vit:{path}", num_classes=5)
    assert _same_output(inline, source, x)
    assert init_note("timm:test_vit", path) == f"weights from {path}"


def test_random_init_is_reported():
    assert init_note("timm:resnet18", None).startswith("random init")
    assert init_note("torchvision:resnet18", None).startswith("random init")
    assert init_note("zoo:digits-vit", None) == "shipped weights"


def test_mismatched_weights_list_the_first_mismatches_on_one_line(tmp_path, source):
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    state.pop("blocks.0.attn.qkv.weight")
    state["extra.weight"] = torch.zeros(2)
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    with pytest.raises(LoadError) as err:
        load_model("timm:test_vit", weights=path, num_classes=5)
    msg = str(err.value)
    assert "\n" not in msg and "1 missing (blocks.0.attn.qkv.weight)" in msg and "1 unexpected (extra.weight)" in msg
    # a file with another class count: the shapes differ and the message says how to fix it
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    with pytest.raises(LoadError, match=r"head.weight \[5, 64\] vs \[1000, 64\].*`--num-classes`"):
        load_model("timm:test_vit", weights=path)


def test_unreadable_weights_and_unknown_names(tmp_path):
    bad = tmp_path / "w.pth"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(LoadError, match="Could not read weights file"):
        load_model("timm:test_vit", weights=bad)
    with pytest.raises(ConfigError, match="no separate weights"):
        load_model("zoo:digits-vit", weights=bad)


@pytest.mark.parametrize("spec,error,match", [
    ("timm:test_vitt", ConfigError, "Did you mean `test_vit`"),
    ("torchvision:resnet181", ConfigError, "Did you mean `resnet18`"),
    ("tim:resnet18", ConfigError, "Unknown model kind `tim`.*Did you mean `timm`"),
    ("py:mymodels:smal", ConfigError, "Did you mean `small`"),
    ("py:mymodels:not_a_model", ConfigError, "to return an nn.Module, got int"),
    ("py:no_such_module_xyz:f", LoadError, "Could not import `no_such_module_xyz`"),
    ("py:mymodels", ConfigError, "Expected `py:package.module:factory`"),
])
def test_bad_specs_are_one_line_errors(tmp_path, monkeypatch, spec, error, match):
    (tmp_path / "mymodels.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(error, match=match) as err:
        load_model(spec)
    assert "\n" not in str(err.value)


def test_torchvision_weights_roundtrip(tmp_path):
    torch.manual_seed(4)
    import torchvision

    source = torchvision.models.get_model("squeezenet1_1", weights=None, num_classes=3).eval()
    path = tmp_path / "sq.pth"
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, path)  # as saved from DataParallel
    model = load_model("torchvision:squeezenet1_1", weights=path, num_classes=3)
    assert _same_output(model, source, torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)))


def test_torchscript_and_exported_programs(tmp_path, source):
    x = torch.randn(3, 3, 160, 160, generator=torch.Generator().manual_seed(2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(source, x[:2]), str(tmp_path / "m.ts"))
    scripted = load_model(f"torchscript:{tmp_path / 'm.ts'}")
    with torch.inference_mode():
        assert torch.allclose(scripted(x), source(x), atol=1e-5)
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(source, (x[:2],), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, str(tmp_path / "m.pt2"))
    exported = load_model(f"exported:{tmp_path / 'm.pt2'}")
    with torch.inference_mode():
        assert torch.allclose(exported(x), source(x), atol=1e-5)
    # submodules keep their qualified names, so fault sites can be chosen by name
    names = {n for n, _ in exported.named_modules()}
    assert {"blocks.0.attn", "blocks.1.mlp"} <= names
    # faults land in an exported program by qualified name
    site = discover_sites(exported, x[:2], ["blocks.0.attn"])[0]
    shapes = []
    handle = source.blocks[0].attn.register_forward_hook(lambda m, a, out: shapes.append(out.shape))
    with torch.inference_mode():
        source(x[:2])
    handle.remove()
    assert site.numel == shapes[0].numel() // 2
    fm = make_fault_model("bitflip", bit_low=30, bit_high=30)
    fault = plan_faults([site], fm, 1, seed=0)[0]
    with torch.inference_mode(), injected(exported, fault, fm, len(x)):
        assert not torch.equal(exported(x), source(x))
    with pytest.raises(ConfigError, match="got TorchScript"):
        check_hookable(scripted, "torchscript:m.ts")
    torch.export.save(torch.export.export(source, (x[:2],)), str(tmp_path / "static.pt2"))
    with pytest.raises(LoadError, match="static batch size 2; export it with a dynamic batch dimension"):
        load_model(f"exported:{tmp_path / 'static.pt2'}")
    with pytest.raises(ConfigError, match="Expected `dtype` fp32 for torchscript"):
        load_model(f"torchscript:{tmp_path / 'm.ts'}", dtype="fp16")


def test_py_factory_from_a_file_and_a_module(tmp_path, monkeypatch):
    (tmp_path / "mymodels.py").write_text(FACTORIES)
    by_file = load_model(f"py:{tmp_path / 'mymodels.py'}:small")
    monkeypatch.syspath_prepend(str(tmp_path))
    by_module = load_model("py:mymodels:small")
    x = torch.randn(2, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    assert _same_output(by_file, by_module, x) and by_file(x).shape == (2, 4)


def test_timm_families_get_the_study_micro_ops():
    assert zoo_entry("timm:vit_tiny_patch16_224").site_classes == ("Attention", "Block", "Mlp")
    swin = zoo_entry("timm:swin_tiny_patch4_window7_224")
    assert swin.beam_table_model == "swin_base_patch4_window7_224" and "WindowAttention" in swin.site_classes
    assert zoo_entry("timm:resnet18") is None and zoo_entry("torchvision:vit_b_16") is None
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False)
    classes = {type(m).__name__ for m in vit.modules()}
    assert set(zoo_entry("timm:vit_tiny_patch16_224").site_classes) <= classes
