import numpy as np
import pytest
import torch
from torch import nn

from faultsift.engine.outcome import OUTCOMES, classify
from faultsift.engine.reference import ReferenceEngine, injected
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
