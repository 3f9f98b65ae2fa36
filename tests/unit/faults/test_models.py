import numpy as np
import pytest
import torch
from scipy import stats

from faultsift.errors import ConfigError
from faultsift.faults.models import FAULT_MODELS, describe, make_fault_model, widened_range
from faultsift.faults.sites import Site

SITE = Site("blocks.0.mlp", "Mlp", "output", 0, (17, 32), 544, "fp32", golden_min=-2.0, golden_max=3.0)


def _values(n_rows=3, seed=0):
    return torch.randn(n_rows, 544, generator=torch.Generator().manual_seed(seed)) * 4


def test_multi_bitflip_adjacent_and_random_bits():
    values = _values()
    for mode in ("adjacent", "random"):
        fm = make_fault_model("multi-bitflip", k=3, mode=mode, bit_low=10, bit_high=20, pattern="random-k:5")
        fault = fm.draw(SITE, np.random.default_rng(1), 0)
        assert len(fault.indices) == 5 and fault.op == "flip"
        for bits in fault.element_bits():
            assert len(bits) == 3 and 10 <= min(bits) and max(bits) <= 20
            if mode == "adjacent":
                assert bits == list(range(bits[0], bits[0] + 3))
        out = fm.corrupt(values.clone(), fault).numpy().view(np.uint32)
        expected = values.numpy().view(np.uint32).copy()
        expected[:, fault.indices] ^= fault.masks.astype(np.uint32)
        assert np.array_equal(out, expected)


def test_stuck_at_sets_the_bit_and_is_idempotent():
    values = _values()
    for value in (0, 1):
        fm = make_fault_model("stuck-at", value=value, bit_low=20, bit_high=30, pattern="row")
        fault = fm.draw(SITE, np.random.default_rng(value), 0)
        out = fm.corrupt(values.clone(), fault)
        bits = fault.bits
        stored = (out.numpy().view(np.uint32)[:, fault.indices] >> bits.astype(np.uint32)) & 1
        assert (stored == value).all()
        assert torch.equal(fm.corrupt(out.clone(), fault).view(torch.int32), out.view(torch.int32))


def test_zero_random_value_and_power_law_effects():
    values = _values()
    zero = make_fault_model("zero", pattern="block:4")
    fault = zero.draw(SITE, np.random.default_rng(0), 0)
    out = zero.corrupt(values.clone(), fault)
    assert len(fault.indices) == 16 and (out[:, fault.indices] == 0).all()
    uniform = make_fault_model("random-value", mode="uniform", low=-3, high=-2, pattern="fraction:0.5")
    fault = uniform.draw(SITE, np.random.default_rng(0), 0)
    out = uniform.corrupt(values.clone(), fault)
    assert np.array_equal(out[0, fault.indices].numpy(), fault.values.astype(np.float32))
    assert (out[:, fault.indices] >= -3).all() and (out[:, fault.indices] <= -2).all()
    power = make_fault_model("power-law", xmin=2.0, alpha=3.0, pattern="random-k:4")
    fault = power.draw(SITE, np.random.default_rng(0), 0)
    out = power.corrupt(values.clone(), fault)
    expected = values.numpy()[:, fault.indices] * (np.float32(1) + (fault.values).astype(np.float32))
    assert np.array_equal(out[:, fault.indices].numpy(), expected) and (fault.values >= 1.0).all()


@pytest.mark.parametrize("dtype", ["fp16", "bf16", "fp32", "int8", "uint8"])
def test_finite_random_values_cover_the_format(dtype):
    site = Site("m", "Linear", "output", 0, (4000,), 4000, dtype)
    fault = make_fault_model("random-value", pattern="fraction:1").draw(site, np.random.default_rng(0), 0)
    v = fault.values
    assert np.isfinite(v).all()
    if dtype in ("fp16", "bf16", "fp32"):
        # sign bit uniform, and exponents across the range (huge and tiny magnitudes both occur)
        assert abs((v < 0).mean() - 0.5) < 0.05 and np.abs(v).max() > 1e4 and np.abs(v[v != 0]).min() < 1e-3
    else:
        low, high = (-128, 127) if dtype == "int8" else (0, 255)
        assert v.min() >= low and v.max() <= high and len(np.unique(v)) > 200


def test_power_law_multipliers_follow_the_pareto_law():
    """KS test against scipy's Pareto (b = alpha - 1, scale = xmin); 20,000 draws, fixed seed,
    p > 0.01: a wrong exponent (alpha +- 0.1) is rejected with p < 1e-6 at this size."""
    fm = make_fault_model("power-law", xmin=0.5, alpha=2.2)
    m = fm.multipliers(np.random.default_rng(0), 20_000)
    assert stats.kstest(m, stats.pareto(b=1.2, scale=0.5).cdf).pvalue > 0.01
    assert stats.kstest(m, stats.pareto(b=1.3, scale=0.5).cdf).pvalue < 1e-6


@pytest.mark.parametrize("restrict", ["clamp", "zero"])
def test_range_restriction_post_step(restrict):
    values = _values()
    fm = make_fault_model("bitflip", bit_low=30, bit_high=30, pattern="random-k:40", restrict=restrict)
    fault = fm.draw(SITE, np.random.default_rng(0), 0)
    low, high = widened_range(-2.0, 3.0)
    assert (fault.low, fault.high) == (low, high) == (-2.2, 3.3)
    out = fm.corrupt(values.clone(), fault).numpy()
    flipped = values.numpy().copy()
    flipped.view(np.uint32)[:, fault.indices] ^= np.uint32(1 << 30)
    touched = flipped[:, fault.indices]
    outside = ~((touched >= low) & (touched <= high))  # NaN is outside too
    replaced = np.nan_to_num(np.clip(touched, low, high), nan=0.0) if restrict == "clamp" else 0
    expected = np.where(outside, replaced, touched).astype(np.float32)
    assert np.isnan(touched).any() and outside.any() and np.array_equal(out[:, fault.indices], expected)
    untouched = np.setdiff1d(np.arange(544), fault.indices)
    assert np.array_equal(out[:, untouched], values.numpy()[:, untouched])
    with pytest.raises(ConfigError, match="Expected a golden range at m:output for `restrict=clamp`"):
        make_fault_model("zero", restrict="clamp").draw(Site("m", "Linear", "output", 0, (4,), 4, "fp32"),
                                                        np.random.default_rng(0), 0)


@pytest.mark.parametrize("name,params,message", [
    ("bitflip", {"bit_high": 40}, r"Expected `bit` in \[0, 15\] for fp16, got 40\."),
    ("bitflip", {"bit_low": -1}, r"Expected `bit_low` >= 0, got -1\."),
    ("multi-bitflip", {"k": 5, "bit_low": 0, "bit_high": 2}, r"Expected `k` <= 3 \(bits 0..2 of fp16\), got 5\."),
    ("multi-bitflip", {"mode": "burst"}, r"Invalid `mode` of fault model `multi-bitflip`: .*'adjacent' or 'random'"),
    ("stuck-at", {"value": 2}, r"Invalid `value` of fault model `stuck-at`"),
    ("random-value", {"mode": "uniform", "low": 1, "high": 0}, r"Expected finite `low` < `high`, got 1.0 and 0.0\."),
    ("power-law", {"alpha": 1.0}, r"Expected `alpha` > 1, got 1.0\."),
    ("power-law", {"xmin": -1}, r"Expected `xmin` > 0, got -1.0\."),
    ("zero", {"pattern": "fraction:-0.1"}, r"Expected `fraction` in \(0, 1\], got -0.1\."),
    ("zero", {"restrict": "wrap"}, r"Invalid `restrict` of fault model `zero`"),
    ("zero", {"bit": 3}, r"Unknown parameter `bit` of fault model `zero`; parameters: pattern: "),
    ("beam-body", {"microops": {"Mlp": "Mlpp"}}, r"Unknown beam-table micro-op `Mlpp`. Did you mean `Mlp`"),
])
def test_bad_parameters_get_one_line_errors(name, params, message):
    site = Site("m", "Linear", "output", 0, (4, 4), 16, "fp16")
    with pytest.raises(ConfigError, match=message) as info:
        make_fault_model(name, **params).draw(site, np.random.default_rng(0), 0)
    assert "\n" not in str(info.value)


def test_user_beam_table_is_checked(tmp_path):
    from faultsift.faults.beam_table import beam_table

    good = beam_table()
    path = tmp_path / "table.csv"
    good.drop(columns=["#nan", "Q50%"]).to_csv(path, index=False)
    with pytest.raises(ConfigError, match="lacks columns #nan, Q50%; expected model, microop"):
        make_fault_model("beam-full", table=str(path), microops={"Mlp": "Mlp"})
    mine = good.copy()
    mine["model"] = "my_model"
    mine.to_csv(path, index=False)
    fm = make_fault_model("beam-full", table=str(path), table_model="my_model")
    assert fm.row(SITE).model == "my_model" and fm.params()["table"] == str(path)


def test_every_model_is_listed_with_its_parameters():
    for name in FAULT_MODELS.names():
        lines = describe(name)
        assert lines[0].startswith("pattern: ") and any(line.startswith("restrict: ") for line in lines)
