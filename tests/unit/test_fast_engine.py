"""The fast engine gives the reference engine's outcomes for the same fault list.

Models: the built-in ones and timm vit_tiny / swin_tiny / resnet18 (random init, small
inputs). Fault lists mix activation faults (outputs and inputs), Linear/Conv2d weight and bias
faults (per-row corrections), other parameters (patched), no-op faults (pre-screened) and
faults of several parts. Disagreements are allowed only on the threshold, under 0.1%.
"""

from __future__ import annotations

import platform

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from torch import nn

from faultsift.campaign.plan import plan_faults, plan_multi_faults
from faultsift.engine.fast import FastEngine, compare_outcomes, keep_freed_memory
from faultsift.engine.reference import ReferenceEngine
from faultsift.faults.models import make_fault_model
from faultsift.faults.sites import discover_sites
from faultsift.zoo.models import ZOO_MODELS

FAULT_LISTS = [  # (site patterns, kinds, fault model, parameters)
    (None, ("output",), "bitflip", {}),
    (None, ("output",), "random-value", {}),
    (None, ("output",), "stuck-at", {"value": 1}),
    (["*"], ("input",), "bitflip", {"bit_low": 20}),
    (["*"], ("weight", "bias"), "random-value", {}),
    (["*"], ("weight",), "bitflip", {"pattern": "row"}),
    (["*"], ("params",), "stuck-at", {"value": 0}),
]


def _equivalent(model, inputs, fault_lists, n_faults, seed=0):
    """Run both engines on each fault list; return the summed comparison and the fast engine."""
    ids = np.arange(len(inputs))
    totals = {"trials": 0, "equal": 0, "on_threshold": 0, "other": 0}
    fast = FastEngine(model, max_rows=256)
    for i, (patterns, kinds, name, params) in enumerate(fault_lists):
        sites = [s for s in discover_sites(model, inputs[:2], patterns, kinds=kinds) if s.numel > 1]
        faults = plan_faults(sites, make_fault_model(name, **params), n_faults, seed + i)
        ref_rows = ReferenceEngine(model).run(inputs, ids, faults)
        fast_rows = fast.run(inputs, ids, faults)
        assert list(fast_rows.columns) == list(ref_rows.columns)
        assert (fast_rows[["fault_id", "input_id"]].to_numpy() == ref_rows[["fault_id", "input_id"]].to_numpy()).all()
        for k, v in compare_outcomes(ref_rows, fast_rows).items():
            totals[k] += v
    return totals, fast


def _check(totals):
    assert totals["other"] == 0, totals
    assert totals["on_threshold"] <= 0.001 * totals["trials"], totals


@pytest.mark.parametrize("name", ["digits-vit", "digits-swin", "digits-cnn"])
def test_builtin_models_match_reference(name, zoo_models, hard_pool):
    model = zoo_models[name]
    lists = [(list(ZOO_MODELS.get(name).site_classes) if p is None else p, k, f, a) for p, k, f, a in FAULT_LISTS]
    totals, fast = _equivalent(model, hard_pool.inputs[:24], lists, 60)
    _check(totals)
    assert totals["trials"] == 24 * 60 * len(FAULT_LISTS)
    assert fast.stats["prescreen_masked"] > 0  # stuck-at faults on bits already set never run a forward
    assert fast.stats["reference_rows"] == 0  # single faults never fall back to the reference


def _timm(name, **kw):
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=10, **kw).eval()


@pytest.mark.parametrize("name,kw", [
    ("vit_tiny_patch16_224", dict(img_size=32)),
    ("swin_tiny_patch4_window7_224", dict(img_size=32, window_size=4)),
    ("resnet18", {}),
])
def test_timm_models_match_reference(name, kw):
    model = _timm(name, **kw)
    inputs = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    classes = {"vit_tiny_patch16_224": ["Attention", "Mlp"], "swin_tiny_patch4_window7_224": ["WindowAttention", "Mlp"],
               "resnet18": ["Conv2d", "BatchNorm2d"]}[name]
    lists = [(classes if p is None else p, k, f, a) for p, k, f, a in FAULT_LISTS[:2] + FAULT_LISTS[4:6]]
    totals, _ = _equivalent(model, inputs, lists, 12)
    _check(totals)


def test_prefix_is_computed_once_per_chunk(zoo_models, hard_pool):
    """Faults in the last block never re-run the patch embedding: it is replayed from the golden pass."""
    model, inputs = zoo_models["digits-vit"], hard_pool.inputs[:16]
    sites = discover_sites(model, inputs[:2], ["blocks.3.mlp"])
    faults = plan_faults(sites, make_fault_model("random-value"), 40, 0)
    engine = FastEngine(model, max_rows=64)
    engine.tree(inputs)  # the call tree is traced once per input shape
    calls = []
    handle = model.patch_embed.proj.register_forward_hook(lambda *a: calls.append(1))
    try:
        frames = list(engine.iter_run(inputs, np.arange(16), faults, chunk_faults=16))
    finally:
        handle.remove()
    assert len(frames) == 3 and engine.stats["rows"] == 16 * 40
    assert len(calls) == 3  # one golden pass per chunk of faults, never in a trial


class _ReluNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU())
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.body(x))


def test_early_masking_stops_rows_that_are_golden_again():
    """Negative values written before a ReLU whose golden input was negative too vanish at the ReLU."""
    model = _ReluNet().eval()
    inputs = torch.randn(32, 8, generator=torch.Generator().manual_seed(0))
    sites = discover_sites(model, inputs[:2], ["body.0"])
    faults = plan_faults(sites, make_fault_model("random-value", mode="uniform", low=-9.0, high=-1.0), 50, 0)
    fast = FastEngine(model, max_rows=128)
    fast.tree(inputs)
    head_rows = []
    handle = model.head.register_forward_hook(lambda mod, args, out: head_rows.append(len(out)))
    try:
        rows = pd.concat(fast.iter_run(inputs, np.arange(32), faults, chunk_faults=25), ignore_index=True)
    finally:
        handle.remove()
    ref = ReferenceEngine(model).run(inputs, np.arange(32), faults)
    assert compare_outcomes(ref, rows)["equal"] == len(ref)
    masked = int((ref["outcome"] == "masked").sum())
    assert 0.5 * masked < fast.stats["early_masked"] <= masked
    # rows stopped early never reach the head (the golden pass of each of the 2 chunks does)
    assert sum(head_rows) == len(ref) - fast.stats["early_masked"] + 2 * 32


def test_several_parts_and_own_faults_per_input_match_reference(zoo_models, hard_pool):
    model, inputs = zoo_models["digits-vit"], hard_pool.inputs[:8]
    acts = discover_sites(model, inputs[:2], ["Attention"])
    weights = discover_sites(model, inputs[:2], ["Linear"], kinds=("weight",))
    multi = plan_multi_faults([(acts, make_fault_model("bitflip")), (weights, make_fault_model("random-value"))], 10, 3)
    ref = ReferenceEngine(model).run(inputs, np.arange(8), multi)
    assert compare_outcomes(ref, FastEngine(model).run(inputs, np.arange(8), multi))["equal"] == len(ref)
    singles = plan_faults(acts + weights, make_fault_model("random-value"), 8, 4)
    assigned = [singles[i] if i % 3 else (singles[i], multi[i][1]) for i in range(8)]
    want = ReferenceEngine(model).run_assigned(inputs, np.arange(8), assigned)
    got = FastEngine(model).run_assigned(inputs, np.arange(8), assigned)
    assert (want["outcome"] == got["outcome"]).all() and (want["fault_id"] == got["fault_id"]).all()


class _Fragile(nn.Module):
    """Raises when a value is huge: a fault that crashes the forward (DUE by exception)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 3)

    def forward(self, x):
        h = self.a(x)
        if bool((h.abs() > 1e6).any()):
            raise RuntimeError("overflow")
        return self.b(h)


def test_a_crashing_fault_marks_only_its_own_trials_due():
    model = _Fragile().eval()
    inputs = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    sites = discover_sites(model, inputs[:2], ["a"])
    faults = plan_faults(sites, make_fault_model("random-value"), 30, 0)  # finite encodings: many are huge
    ref = ReferenceEngine(model).run(inputs, np.arange(5), faults)
    fast_rows = FastEngine(model).run(inputs, np.arange(5), faults)
    crashed = ref["due_kind"] == "exception:RuntimeError"
    assert 0 < crashed.sum() < len(ref)
    assert (fast_rows["due_kind"] == ref["due_kind"]).all() and (fast_rows["outcome"] == ref["outcome"]).all()


def test_faults_are_consumed_lazily_in_chunks(zoo_models, hard_pool):
    model, inputs = zoo_models["digits-cnn"], hard_pool.inputs[:4]
    sites = discover_sites(model, inputs[:2], ["Conv2d"])
    fm = make_fault_model("bitflip")
    pulled = []

    def stream():
        for i in range(100):
            pulled.append(i)
            yield plan_faults(sites, fm, 1, 0, start=i)[0]

    frames = FastEngine(model).iter_run(inputs, np.arange(4), stream(), chunk_faults=10)
    first = next(frames)
    assert len(first) == 40 and len(pulled) == 10
    rest = list(frames)
    assert sum(len(f) for f in rest) == 360 and len(pulled) == 100


def test_a_small_cache_budget_splits_inputs_without_changing_rows(zoo_models, hard_pool):
    model, inputs = zoo_models["digits-swin"], hard_pool.inputs[:12]
    sites = discover_sites(model, inputs[:2], ["WindowAttention", "Mlp"])
    faults = plan_faults(sites, make_fault_model("bitflip"), 20, 5)
    small = FastEngine(model, cache_bytes=200_000)
    assert len(small._input_groups(inputs)) > 1
    want = ReferenceEngine(model).run(inputs, np.arange(12) + 100, faults)
    got = small.run(inputs, np.arange(12) + 100, faults)
    assert (got[["fault_id", "input_id"]].to_numpy() == want[["fault_id", "input_id"]].to_numpy()).all()
    assert compare_outcomes(want, got)["other"] == 0


def _rows_through(module: nn.Module, run) -> tuple[list[int], object]:
    """Rows that reach ``module`` while ``run()`` executes, per call, and what ``run`` returned."""
    seen: list[int] = []
    handle = module.register_forward_hook(lambda mod, args, out: seen.append(len(out)))
    try:
        return seen, run()
    finally:
        handle.remove()


def test_changed_channels_skip_the_convolution_after_a_fault(zoo_models, hard_pool):
    """conv1 faults reach conv2 only as their changed channels: no trial row runs conv2 itself."""
    model, inputs = zoo_models["digits-cnn"], hard_pool.inputs[:32]
    engine = FastEngine(model)
    tree = engine.tree(inputs)
    steps, _, resume = tree.planes[tree.by_key[("conv1", 0)]]
    assert [type(s).__name__ for s in steps][1] == "_ConvStep" and tree.calls[resume].module == "pool"
    for kinds in (("output",), ("weight",)):
        faults = plan_faults(discover_sites(model, inputs[:2], ["conv1"], kinds=kinds),
                             make_fault_model("random-value"), 64, 3)
        engine.stats.clear()
        conv2_rows, rows = _rows_through(model.conv2, lambda: engine.run(inputs, np.arange(32), faults))
        ref = ReferenceEngine(model).run(inputs, np.arange(32), faults)
        _check(compare_outcomes(ref, rows))
        trial_rows = sum(conv2_rows) - 32  # the golden pass (one chunk of faults) runs every input once
        assert trial_rows == engine.stats["overflow_rows"] and engine.stats["rows"] > 0  # overflow rows run in full


def test_channels_golden_again_after_relu_and_pooling_are_masked_without_a_forward(zoo_models, hard_pool):
    """conv2 output faults whose channel comes out of ReLU and max pooling unchanged never reach conv3."""
    model, inputs = zoo_models["digits-cnn"], hard_pool.inputs[:32]
    faults = plan_faults(discover_sites(model, inputs[:2], ["conv2"]), make_fault_model("bitflip"), 100, 4)
    engine = FastEngine(model)
    engine.tree(inputs)
    conv3_rows, rows = _rows_through(model.conv3, lambda: engine.run(inputs, np.arange(32), faults))
    ref = ReferenceEngine(model).run(inputs, np.arange(32), faults)
    assert compare_outcomes(ref, rows)["equal"] == len(ref)
    masked = int((ref["outcome"] == "masked").sum())
    assert 0.5 * masked < engine.stats["plane_masked"] <= masked
    assert sum(conv3_rows) == len(ref) - engine.stats["plane_masked"] + 32  # + the golden pass


def test_only_replayed_calls_the_rest_reads_are_gathered(zoo_models, hard_pool):
    """Resuming at the pooling, the replayed conv1/conv2 outputs feed nothing that runs."""
    model, inputs = zoo_models["digits-cnn"], hard_pool.inputs[:4]
    tree = FastEngine(model).tree(inputs)
    pool = tree.by_key[("pool", 0)]
    replays = tree.replay_nodes(tree.calls[pool].end + 0.5)
    assert {tree.calls[i].module for i in replays} == {"conv1", "conv2", "pool"}
    assert {tree.calls[i].module for i in tree.live(replays)} == {"pool"}


class _Branchy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it, so no channel chains are used."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        if x.sum() > 0:
            x = x * 2
        return self.head(x.mean(dim=(2, 3)))


def test_a_model_fx_cannot_trace_still_matches_the_reference():
    model = _Branchy().eval()
    inputs = torch.randn(16, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    engine = FastEngine(model)
    assert engine.tree(inputs).planes == {} and not engine.tree(inputs).skip_dead
    for kinds in (("output",), ("weight", "bias")):
        faults = plan_faults(discover_sites(model, inputs[:2], ["*"], kinds=kinds), make_fault_model("random-value"), 40, 1)
        _check(compare_outcomes(ReferenceEngine(model).run(inputs, np.arange(16), faults),
                                engine.run(inputs, np.arange(16), faults)))


def test_weight_faults_that_could_overflow_run_with_the_weights_patched_in():
    """One huge weight sums the same in any order and takes the fast route; a row of huge
    weights makes the layer's sum order-dependent near the float range, so those rows take the
    reference's route. Both agree with the reference."""
    model = _ReluNet().eval()
    inputs = torch.randn(16, 8, generator=torch.Generator().manual_seed(2))
    sites = discover_sites(model, inputs[:2], ["head"], kinds=("weight",))
    for params, routed in (({"mode": "uniform", "low": 1e38, "high": 3e38}, False),
                           ({"mode": "uniform", "low": 1e38, "high": 3e38, "pattern": "row"}, True)):
        faults = plan_faults(sites, make_fault_model("random-value", **params), 10, 0)
        engine = FastEngine(model)
        rows = engine.run(inputs, np.arange(16), faults)
        assert (engine.stats["overflow_rows"] > 0) == routed
        ref = ReferenceEngine(model).run(inputs, np.arange(16), faults)
        assert (rows["outcome"] == ref["outcome"]).all() and (rows["due_kind"] == ref["due_kind"]).all()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_the_fast_engine_keeps_freed_memory_for_reuse_on_glibc(zoo_models):
    FastEngine(zoo_models["digits-cnn"])
    assert keep_freed_memory() is True  # both mallopt calls were accepted


def test_rows_per_forward_shrink_for_large_activations(zoo_models, hard_pool):
    model, inputs = zoo_models["digits-cnn"], hard_pool.inputs[:8]
    tree = FastEngine(model).tree(inputs)
    assert FastEngine(model)._rows(tree) == 4096  # the built-in CNN's activations are small
    small = FastEngine(model, batch_bytes=tree.bytes_per_input * 10)
    assert small._rows(tree) == 10
    faults = plan_faults(discover_sites(model, inputs[:2], ["conv2"]), make_fault_model("bitflip"), 30, 2)
    small.stats.clear()
    got = small.run(inputs, np.arange(8), faults)
    want = ReferenceEngine(model).run(inputs, np.arange(8), faults)
    assert compare_outcomes(want, got)["equal"] == len(want) and small.stats["forwards"] >= small.stats["rows"] / 10


class _TokenMlp(nn.Module):
    """Linear layers on [B, tokens, features] with as many tokens as features, ReLU between."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.fc2, self.head = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(64, 3)

    def forward(self, x):
        return self.head(torch.relu(self.fc2(torch.relu(self.fc1(x)))).flatten(1))


def test_token_layouts_follow_channel_chains_like_the_reference():
    model = _TokenMlp().eval()
    inputs = torch.randn(16, 8, 8, generator=torch.Generator().manual_seed(3))
    engine = FastEngine(model)
    assert engine.tree(inputs).planes  # fc1 and fc2 feed a ReLU: chains over the token dimension
    for kinds, name in ((("output",), "random-value"), (("weight", "bias"), "random-value"), (("weight",), "bitflip")):
        faults = plan_faults(discover_sites(model, inputs[:2], ["fc1", "fc2"], kinds=kinds), make_fault_model(name), 60, 4)
        _check(compare_outcomes(ReferenceEngine(model).run(inputs, np.arange(16), faults),
                                engine.run(inputs, np.arange(16), faults)))
    # weight faults all in output feature 0: the changes span one feature across the tokens, not a channel
    faults = plan_faults(discover_sites(model, inputs[:2], ["fc1"], kinds=("weight",)), make_fault_model("random-value"),
                         400, 5)
    first_row = [f for f in faults if (f.indices < 8).all()]
    assert len(first_row) > 20
    _check(compare_outcomes(ReferenceEngine(model).run(inputs, np.arange(16), first_row),
                            engine.run(inputs, np.arange(16), first_row)))
