import numpy as np
import pytest
import torch

from faultsift.campaign.plan import draw_fault, faults_frame, faults_from_frame, plan_faults
from faultsift.engine.reference import ReferenceEngine, injected
from faultsift.errors import ConfigError
from faultsift.faults.models import Fault, make_fault_model
from faultsift.faults.sites import Site, discover_sites
from faultsift.models import zoo_entry


def test_vit_and_swin_sites(zoo_models, hard_pool):
    vit = discover_sites(zoo_models["digits-vit"], hard_pool.inputs[:2], ["Attention", "Block", "Mlp"])
    assert len(vit) == 12 and all(s.shape == (17, 32) and s.numel == 544 for s in vit)
    assert {s.module_class for s in vit} == {"Attention", "Block", "Mlp"}
    swin = discover_sites(zoo_models["digits-swin"], hard_pool.inputs[:2], ["WindowAttention"])
    # stage 1: 8x8 tokens in 4 windows of 16 -> folded batch [B*4, 16, 24]; stage 2: one window
    assert [(s.name, s.shape) for s in swin] == [
        ("layers.0.blocks.0.attn:output", (4, 16, 24)), ("layers.0.blocks.1.attn:output", (4, 16, 24)),
        ("layers.1.blocks.0.attn:output", (16, 48)), ("layers.1.blocks.1.attn:output", (16, 48))]
    globbed = discover_sites(zoo_models["digits-vit"], hard_pool.inputs[:2], ["blocks.*.attn"])
    assert [s.module for s in globbed] == [f"blocks.{i}.attn" for i in range(4)]


def test_unknown_site_lists_classes(zoo_models, hard_pool):
    with pytest.raises(ConfigError, match="module classes in this model: .*WindowAttention"):
        discover_sites(zoo_models["digits-swin"], hard_pool.inputs[:2], ["Attention"])


@pytest.mark.parametrize("model_name,site_class", [("digits-swin", "WindowAttention"), ("digits-vit", "Attention"),
                                                    ("digits-cnn", "Conv2d")])
def test_fault_lands_on_the_same_input_element_whatever_the_batch(zoo_models, hard_pool, model_name, site_class):
    """A fault on input i gives the same faulty output alone or inside any batch (folded dims too)."""
    model = zoo_models[model_name]
    sites = discover_sites(model, hard_pool.inputs[:2], [site_class])
    fm = make_fault_model("beam-body", table_model="vit_base_patch16_224", microops={site_class: "Attention"})
    engine = ReferenceEngine(model, fm)
    for fault in plan_faults(sites, fm, 4, seed=3):
        batch = hard_pool.inputs[10:17]
        with torch.inference_mode(), injected(model, fault, fm, len(batch)):
            together = model(batch)
        for j in (0, 3, 6):
            with torch.inference_mode(), injected(model, fault, fm, 1):
                alone = model(batch[j : j + 1])
            assert torch.allclose(alone[0], together[j], atol=1e-5)
        assert not torch.allclose(engine.golden(batch), together, atol=1e-7)


def test_bitflip_corrupts_exactly_one_element_per_input():
    site = Site("m", "Linear", "output", 0, (6,), 6, "fp32")
    fm = make_fault_model("bitflip", bit_low=20, bit_high=30)
    values = torch.randn(3, 6, generator=torch.Generator().manual_seed(0))
    for i in range(20):
        fault = fm.draw(site, np.random.default_rng(i), i)
        (bit,) = fault.bits.tolist()
        assert 20 <= bit <= 30 and fault.op == "flip"
        out = fm.corrupt(values.clone(), fault)
        changed = (out.view(torch.int32) != values.view(torch.int32))
        assert changed.sum().item() == 3 and changed[:, fault.indices[0]].all()
        expected = (values.numpy()[:, fault.indices[0]].view(np.uint32) ^ np.uint32(1 << bit))
        assert np.array_equal(out.numpy()[:, fault.indices[0]].view(np.uint32), expected)


def test_bitflip_bad_bit_range():
    site = Site("m", "Linear", "output", 0, (6,), 6, "fp16")
    with pytest.raises(ConfigError, match=r"Expected `bit` in \[0, 15\] for fp16, got 20\."):
        make_fault_model("bitflip", bit_low=3, bit_high=20).draw(site, np.random.default_rng(0), 0)
    with pytest.raises(ConfigError, match="bit_low"):
        make_fault_model("bitflip", bit_low=9, bit_high=3)
    with pytest.raises(ConfigError, match="Unknown parameter `bits` of fault model `bitflip`; parameters: .*bit_low"):
        make_fault_model("bitflip", bits=3)


def test_beam_fault_multiplies_the_table_fraction_of_elements():
    site = Site("blocks.0.mlp", "Mlp", "output", 0, (17, 32), 544, "fp32")
    fm = make_fault_model("beam-body", table_model="vit_base_patch16_224")
    fault = fm.draw(site, np.random.default_rng(0), 0)
    assert len(fault.indices) == round(fm.row(site).altered_fraction * 544)
    assert len(np.unique(fault.indices)) == len(fault.indices)
    values = torch.randn(2, 544, generator=torch.Generator().manual_seed(0))
    out = fm.corrupt(values.clone(), fault)
    untouched = np.setdiff1d(np.arange(544), fault.indices)
    assert torch.equal(out[:, untouched], values[:, untouched])
    expected = values.numpy()[:, fault.indices] * (np.float32(1) + fault.values.astype(np.float32))
    assert np.allclose(out.numpy()[:, fault.indices], expected, rtol=1e-6)


def test_beam_full_special_values_are_set():
    site = Site("x", "Mlp", "output", 0, (4,), 4, "fp32")
    fault = Fault(0, "beam-full", site, np.arange(4), "scale", values=np.array([np.inf, -np.inf, np.nan, 0.5]))
    out = make_fault_model("beam-full").corrupt(torch.tensor([[2.0, -3.0, 1.0, 4.0]]), fault)
    assert out[0, 0] == np.inf and out[0, 1] == -np.inf and torch.isnan(out[0, 2]) and out[0, 3] == 6.0


def test_plan_is_seeded_stable_and_round_trips(zoo_models, hard_pool):
    entry = zoo_entry("zoo:digits-vit")
    sites = discover_sites(zoo_models["digits-vit"], hard_pool.inputs[:2], list(entry.site_classes))
    fm = make_fault_model("beam-full", table_model=entry.beam_table_model)
    a, b = plan_faults(sites, fm, 20, seed=5), plan_faults(sites, fm, 30, seed=5)
    later = draw_fault(sites, fm, 5, 17)  # replay one fault alone
    assert np.array_equal(a[17].values, later.values, equal_nan=True) and a[17].site == later.site
    for x, y in zip(a, b):
        assert x.site == y.site and np.array_equal(x.indices, y.indices)
    other = plan_faults(sites, fm, 20, seed=6)
    assert any(x.site != y.site or not np.array_equal(x.indices, y.indices) for x, y in zip(a, other))
    back = faults_from_frame(faults_frame(a))
    for x, y in zip(a, back):
        assert x.site == y.site and np.array_equal(x.indices, y.indices)
        assert np.array_equal(x.values, y.values, equal_nan=True) and x.fault_id == y.fault_id and x == x
