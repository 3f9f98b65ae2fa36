import numpy as np
import pytest
import torch
from torch import nn

from faultsift.engine.outcome import OUTCOMES, classify
from dataclasses import replace

from faultsift.engine.reference import ReferenceEngine, inject, injected, parameter_effect
from faultsift.faults.models import Fault, make_fault_model
from faultsift.faults.sites import Site, discover_sites


def _state_bits(model):
    return {k: v.detach().clone().view(torch.int32) if v.dtype == torch.float32 else v.clone()
            for k, v in model.state_dict().items()}


def test_classify_follows_the_definitions():
    golden = torch.tensor([[3.0, 1.0, 0.0]] * 5)
    faulty = torch.tensor([[3.0, 1.0, 0.000005],  # within 1e-5: masked
                           [3.0, 1.5, 0.0],       # beyond, same top-1: tolerable
                           [0.0, 4.0, 0.0],       # top-1 changed: critical
                           [float("nan"), 1.0, 0.0],  # non-finite: due
                           [3.0, 1.0, float("inf")]])
    out = classify(golden, faulty, threshold=1e-5)
    assert [OUTCOMES[c] for c in out["outcome"]] == ["masked", "sdc_tolerable", "sdc_critical", "due", "due"]
    assert list(out["faulty_top1"][:3]) == [0, 0, 1] and out["golden_top1"].tolist() == [0] * 5
    assert out["max_abs_diff"][1] == pytest.approx(0.5)
    assert list(out["due_kind"]) == ["", "", "", "nonfinite", "nonfinite"]


def test_hooks_removed_and_weights_restored_even_on_exception(zoo_models, hard_pool):
    model = zoo_models["digits-vit"]
    before = _state_bits(model)
    fm = make_fault_model("bitflip")
    out_site = discover_sites(model, hard_pool.inputs[:2], ["Mlp"])[0]
    w_site = discover_sites(model, hard_pool.inputs[:2], ["blocks.1.mlp.fc1"], kinds=("weight",))[0]
    for site in (out_site, w_site):
        fault = Fault(0, "bitflip", site, np.array([3]), "flip", np.array([1 << 30]))
        with pytest.raises(RuntimeError, match="boom"):
            with injected(model, fault, fm, 2):
                if site.kind == "weight":
                    assert not torch.equal(model.blocks[1].mlp.fc1.weight.view(torch.int32),
                                           before["blocks.1.mlp.fc1.weight"])
                raise RuntimeError("boom")
        assert all(not m._forward_hooks for m in model.modules())
        after = _state_bits(model)
        assert all(torch.equal(after[k], before[k]) for k in before)


def test_weight_fault_changes_output_and_is_undone(zoo_models, hard_pool):
    model = zoo_models["digits-cnn"]
    fm = make_fault_model("bitflip")
    site = discover_sites(model, hard_pool.inputs[:2], ["conv1"], kinds=("weight",))[0]
    fault = Fault(1, "bitflip", site, np.array([0]), "flip", np.array([1 << 30]))
    engine = ReferenceEngine(model, fm)
    x = hard_pool.inputs[:8]
    golden = engine.golden(x)
    # independent computation: patch a copy of the weights by hand with NumPy
    w = model.conv1.weight.detach().numpy().copy().reshape(-1)
    w.view(np.uint32)[0] ^= np.uint32(1 << 30)
    manual = nn.functional.conv2d(x, torch.from_numpy(w.reshape(model.conv1.weight.shape)), model.conv1.bias, padding=1)
    with torch.inference_mode(), injected(model, fault, fm, len(x)):
        assert torch.allclose(model.conv1(x), manual)
    assert torch.equal(engine.golden(x), golden)


def test_crashing_forward_is_due_with_kind():
    class Crashy(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, x):
            y = self.lin(x)
            if torch.isinf(y).any():
                raise FloatingPointError("overflow")
            return y

    model = Crashy().eval()
    site = Site("lin", "Linear", "output", 0, (3,), 3, "fp32")
    fault_inf = Fault(1, "beam-full", site, np.array([1]), "scale", values=np.array([np.inf]))
    rows = ReferenceEngine(model, make_fault_model("beam-full")).run(torch.randn(2, 4), np.array([5, 6]), [fault_inf])
    assert list(rows["outcome"]) == ["due", "due"] and set(rows["due_kind"]) == {"exception:FloatingPointError"}
    assert list(rows["input_id"]) == [5, 6] and list(rows["fault_id"]) == [1, 1]


def _cnn_manual(model, x, conv1_weight, conv2_out_fn=lambda y: y):
    """The digits CNN forward written out with functional ops (independent of hooks)."""
    y = torch.relu(nn.functional.conv2d(x, conv1_weight, model.conv1.bias, padding=1))
    y = conv2_out_fn(nn.functional.conv2d(y, model.conv2.weight, model.conv2.bias, padding=1))
    y = model.pool(torch.relu(y))
    y = torch.relu(nn.functional.conv2d(y, model.conv3.weight, model.conv3.bias, padding=1))
    return model.head(y.mean(dim=(2, 3)))


def test_one_trial_with_a_weight_and_an_activation_fault(zoo_models, hard_pool):
    from faultsift.campaign.plan import draw_fault, draw_multi_fault

    model, x = zoo_models["digits-cnn"], hard_pool.inputs[:6]
    weight_sites = discover_sites(model, x[:2], ["conv1"], kinds=("weight",))
    out_sites = discover_sites(model, x[:2], ["conv2"])
    parts = [(weight_sites, make_fault_model("bitflip", bit_low=24, bit_high=25)),
             (out_sites, make_fault_model("zero", pattern="channel"))]
    wf, af = draw_multi_fault(parts, seed=4, fault_id=9)
    assert (wf.part, af.part, wf.fault_id, af.fault_id) == (0, 1, 9, 9)
    assert draw_fault(*parts[0], seed=4, fault_id=9) == replace(wf, part=0)  # a first part replays alone
    w = model.conv1.weight.detach().numpy().copy().reshape(-1)
    w.view(np.uint32)[wf.indices] ^= wf.masks.astype(np.uint32)

    def zero_channel(y):
        flat = y.reshape(len(y), -1).clone()
        flat[:, af.indices] = 0
        return flat.reshape(y.shape)

    with torch.inference_mode():
        manual = _cnn_manual(model, x, torch.from_numpy(w.reshape(model.conv1.weight.shape)), zero_channel)
        with inject(model, (wf, af), len(x)):
            faulty = model(x)
    assert torch.isfinite(faulty).all() and torch.allclose(faulty, manual, atol=1e-5)
    before = _state_bits(model)
    rows = ReferenceEngine(model).run(x, np.arange(6), [(wf, af)])
    assert list(rows["fault_id"]) == [9] * 6 and all(torch.equal(before[k], v) for k, v in _state_bits(model).items())


def test_each_input_carries_its_own_weight_and_activation_faults(zoo_models, hard_pool):
    """evaluate_assigned equals evaluating every input alone with its own faults."""
    from faultsift.campaign.plan import plan_faults

    model, x = zoo_models["digits-vit"], hard_pool.inputs[:7]
    engine = ReferenceEngine(model)
    weights = plan_faults(discover_sites(model, x[:2], ["blocks.*.mlp.fc1"], kinds=("weight",)),
                          make_fault_model("bitflip", bit_low=29, bit_high=30, pattern="row"), 2, seed=1)
    acts = plan_faults(discover_sites(model, x[:2], ["Attention"]),
                       make_fault_model("random-value", mode="uniform", low=-20, high=20, pattern="row"), 3, seed=2)
    assigned = [[weights[0]], [acts[0]], [], [weights[0], acts[1]], [weights[1]], [acts[2]], [weights[1], acts[0]]]
    together = engine.evaluate_assigned(x, engine.golden(x), assigned)
    for b, faults in enumerate(assigned):
        alone = engine.evaluate(x[b:b + 1], engine.golden(x[b:b + 1]), faults)
        assert together["outcome"][b] == alone["outcome"][0]
        assert together["max_abs_diff"][b] == pytest.approx(alone["max_abs_diff"][0], rel=1e-4, abs=1e-5)
    assert together["max_abs_diff"][2] == 0 and (together["max_abs_diff"][[0, 3, 4, 6]] > 0).all()
    rows = engine.run_assigned(x, np.arange(100, 107), assigned)
    assert list(rows["fault_id"]) == [weights[0].fault_id, acts[0].fault_id, -1, weights[0].fault_id,
                                      weights[1].fault_id, acts[2].fault_id, weights[1].fault_id]


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
def test_quantized_weight_flip_reports_the_dequantized_effect():
    from torch.ao.quantization import quantize_dynamic

    torch.manual_seed(0)
    model = quantize_dynamic(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval(), {nn.Linear})
    x = torch.randn(2, 8)
    site = [s for s in discover_sites(model, x, ["0"], kinds=("weight",))][0]
    assert (site.dtype, site.shape) == ("qint8", (16, 8))
    fault = make_fault_model("bitflip", bit_low=6, bit_high=7, pattern="random-k:3").draw(site, np.random.default_rng(0), 0)
    weight = model[0].weight()
    ints = weight.int_repr().numpy().reshape(-1)
    before, after = parameter_effect(model, fault)
    flipped = (ints[fault.indices].view(np.uint8) ^ fault.masks.astype(np.uint8)).view(np.int8)
    scale, zero = weight.q_scale(), weight.q_zero_point()
    assert np.allclose(before, (ints[fault.indices] - zero) * scale) and np.allclose(after, (flipped.astype(float) - zero) * scale)
    assert np.array_equal(model[0].weight().int_repr().numpy().reshape(-1), ints)  # restored
    with torch.inference_mode():
        golden = model(x)
        with inject(model, fault, 2):
            faulty = model(x)
    assert not torch.equal(golden, faulty) and torch.equal(model(x), golden)
