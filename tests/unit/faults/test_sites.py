import warnings

import numpy as np
import pytest
import timm
import torch
from torch import nn

from faultsift.engine.reference import inject
from faultsift.errors import ConfigError
from faultsift.faults.models import make_fault_model
from faultsift.faults.sites import discover_sites, from_rows, to_rows, with_golden_ranges


class SeqFirst(nn.Module):
    """Batch second (nn.MultiheadAttention default layout) and a batch-minor fold; `lin` runs twice."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.mha = nn.MultiheadAttention(8, 2)
        self.bn = nn.BatchNorm1d(8)
        self.fold = nn.Identity()
        self.head = nn.Linear(8, 3)

    def forward(self, x):  # x [B, N, 8]
        y = self.lin(self.lin(x)).transpose(0, 1)  # [N, B, 8]
        y = self.mha(y, y, y)[0]  # [N, B, 8]
        n, b, c = y.shape
        y = self.fold(y.reshape(n * b, c)).reshape(n, b, c)  # batch-minor fold: row j * B + b
        return self.head(self.bn(y.mean(0)))


@pytest.fixture(scope="module")
def seqfirst():
    torch.manual_seed(0)
    model = SeqFirst().eval()
    model.bn.running_mean.uniform_(-1, 1)
    return model


@pytest.fixture(scope="module")
def swin():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # 32 x 32 images, windows of 4 tokens a side: 4 windows per image in stage 0
        return timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=32, window_size=4).eval()


def test_selectors_by_class_instance_largest_glob_and_name(zoo_models, hard_pool):
    vit, example = zoo_models["digits-vit"], hard_pool.inputs[:2]
    assert [s.module for s in discover_sites(vit, example, ["Attention[2]"])] == ["blocks.2.attn"]
    assert [s.module for s in discover_sites(vit, example, ["Mlp[0]", "blocks.3.attn"])] == ["blocks.0.mlp", "blocks.3.attn"]
    largest = discover_sites(vit, example, ["Linear[largest]"], kinds=("weight",))
    linear_sizes = {n: m.weight.numel() for n, m in vit.named_modules() if isinstance(m, nn.Linear)}
    assert [s.module for s in largest] == [max(linear_sizes, key=linear_sizes.get)]
    with pytest.raises(ConfigError, match=r"Expected an instance index in \[0, 3\] for `Attention`, got 4\."):
        discover_sites(vit, example, ["Attention[4]"])
    with pytest.raises(ConfigError, match="No module matches `Atention`; module classes in this model: .*Attention"):
        discover_sites(vit, example, ["Atention"])


def test_parameters_bare_parameters_buffers_and_root_parameters(seqfirst, zoo_models, hard_pool):
    sites = discover_sites(seqfirst, torch.randn(2, 5, 8), ["mha", "bn"], kinds=("in_proj_weight", "buffers"))
    assert {(s.name, s.shape, s.dtype) for s in sites} == {
        ("mha:in_proj_weight", (24, 8), "fp32"), ("bn:running_mean", (8,), "fp32"), ("bn:running_var", (8,), "fp32")}
    root = discover_sites(zoo_models["digits-vit"], hard_pool.inputs[:2], ["VisionTransformer"], kinds=("params",))
    assert {s.name for s in root} == {":cls_token", ":pos_embed"}
    with pytest.raises(ConfigError, match="No site of kind nothing in modules matching `bn`"):
        discover_sites(seqfirst, torch.randn(2, 5, 8), ["bn"], kinds=("nothing",))


def test_repeated_calls_are_separate_sites(seqfirst):
    x = torch.randn(3, 5, 8, generator=torch.Generator().manual_seed(1))
    sites = discover_sites(seqfirst, x, ["lin"])
    assert [s.name for s in sites] == ["lin:output", "lin:output#1"]
    seen = []
    fault = make_fault_model("zero", pattern="row").draw(sites[1], np.random.default_rng(0), 0)
    with torch.inference_mode(), inject(seqfirst, fault, len(x)):
        handle = seqfirst.lin.register_forward_hook(lambda m, a, out: seen.append(out.clone()))  # runs after the fault's
        try:
            seqfirst(x)
        finally:
            handle.remove()
    with torch.inference_mode():
        golden_first = seqfirst.lin(x)
    assert torch.equal(seen[0], golden_first)  # the first call is untouched
    rows = to_rows(seen[1], sites[1], len(x))
    assert (rows[:, fault.indices] == 0).all() and (rows != 0).sum() == rows.numel() - 3 * len(fault.indices)


def test_batch_layouts_are_found(seqfirst, swin):
    sites = {s.name: s for s in discover_sites(seqfirst, torch.randn(2, 5, 8), ["mha", "fold", "lin"])}
    assert (sites["mha:output"].batch_dim, sites["mha:output"].fold, sites["mha:output"].shape) == (1, 1, (5, 8))
    assert (sites["fold:output"].fold, sites["fold:output"].fold_order, sites["fold:output"].shape) == (5, "minor", (5, 8))
    assert sites["lin:output"].batch_dim == 0
    swin_sites = discover_sites(swin, torch.randn(2, 3, 32, 32), ["WindowAttention"], kinds=("output", "input"))
    # 32 / 4 = 8 tokens a side -> 4 windows of 4 x 4 in stage 0; one window from stage 1 on
    assert [(s.fold, s.shape) for s in swin_sites[:2]] == [(4, (4, 16, 96))] * 2
    assert all(s.fold_order == "major" and s.batch_dim == 0 for s in swin_sites)


def _folded_sites(model_name, swin, seqfirst):
    model = {"swin": swin, "seqfirst": seqfirst}[model_name]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 3, 32, 32, generator=gen) if model_name == "swin" else torch.randn(3, 5, 8, generator=gen)
    selectors = ["WindowAttention", "layers.0.blocks.1.attn.qkv"] if model_name == "swin" else ["*"]
    sites = [s for s in discover_sites(model, x[:2], selectors, kinds=("output", "input")) if s.fold > 1 or s.batch_dim]
    assert len(sites) >= 3
    return model, x, sites


@pytest.mark.parametrize("model_name", ["swin", "seqfirst"])
def test_per_input_rows_are_the_elements_of_that_input(model_name, swin, seqfirst):
    """to_rows(batch)[b] equals the site's values when input b runs alone; from_rows inverts to_rows."""
    model, x, sites = _folded_sites(model_name, swin, seqfirst)
    grabbed = {}
    hooks = []
    for name in {s.module for s in sites}:
        module = model.get_submodule(name)
        hooks.append(module.register_forward_hook(
            lambda m, a, out, name=name: grabbed.setdefault((name, "output"), []).append(out[0] if isinstance(out, tuple) else out)))
        hooks.append(module.register_forward_pre_hook(
            lambda m, a, name=name: grabbed.setdefault((name, "input"), []).append(a[0])))
    try:
        with torch.inference_mode():
            for batch in (x, x[0:1], x[2:3]):
                model(batch)
    finally:
        for h in hooks:
            h.remove()
    for site in sites:
        seen = grabbed[(site.module, site.kind)]
        calls = len(seen) // 3
        together = seen[site.call]
        rows = to_rows(together, site, 3)
        for b, run in ((0, 1), (2, 2)):
            assert torch.allclose(rows[b], to_rows(seen[run * calls + site.call], site, 1)[0], atol=1e-5), site.name
        assert torch.equal(from_rows(rows, site, together), together)


@pytest.mark.parametrize("model_name", ["swin", "seqfirst"])
def test_per_input_fault_never_lands_in_another_input(model_name, swin, seqfirst):
    model, x, sites = _folded_sites(model_name, swin, seqfirst)
    fm = make_fault_model("random-value", mode="uniform", low=50, high=60, pattern="row")
    with torch.inference_mode():
        golden = model(x)
    for i, site in enumerate(sites):
        fault = fm.draw(site, np.random.default_rng(i), i)
        with torch.inference_mode(), inject(model, [fault], 3, rows=[[1]]):
            faulty = model(x)
        assert torch.equal(faulty[[0, 2]], golden[[0, 2]]), site.name
        assert not torch.allclose(faulty[1], golden[1]), site.name
        if i < 2:
            with torch.inference_mode(), inject(model, [fault], 1):
                alone = model(x[1:2])
            assert torch.allclose(faulty[1], alone[0], atol=1e-4), site.name


def test_golden_ranges_cover_every_input(zoo_models, hard_pool):
    model = zoo_models["digits-cnn"]
    sites = discover_sites(model, hard_pool.inputs[:2], ["conv2"])
    wide = with_golden_ranges(model, hard_pool.inputs[:300], sites, batch_size=128)
    with torch.inference_mode():
        out = model.conv2(torch.relu(model.conv1(hard_pool.inputs[:300])))
    assert (wide[0].golden_min, wide[0].golden_max) == (float(out.min()), float(out.max()))
    assert wide[0].golden_min <= sites[0].golden_min and wide[0].golden_max >= sites[0].golden_max
