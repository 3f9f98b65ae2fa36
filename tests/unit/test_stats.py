"""Tests for faultsift.stats, checked against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest, norm

from faultsift.stats import (
    Comparison,
    clopper_pearson_interval,
    cluster_bootstrap_interval,
    compare_sets,
    holm_adjust,
    leveugle_sample_size,
    top_input_share,
    wilson_interval,
)

KN_CASES = [(0, 1), (0, 10), (3, 10), (10, 10), (1, 1000), (50, 200), (999, 1000)]


def _iid(shape, p, seed):
    return np.random.default_rng(seed).random(shape) < p


# ---------------------------------------------------------------- binomial


@pytest.mark.parametrize("k,n", KN_CASES)
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_wilson_matches_scipy(k, n, confidence):
    ref = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    lo, hi = wilson_interval(k, n, confidence)
    assert lo == pytest.approx(ref.low, abs=1e-12)
    assert hi == pytest.approx(ref.high, abs=1e-12)


@pytest.mark.parametrize("k,n", KN_CASES)
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_clopper_pearson_matches_scipy(k, n, confidence):
    ref = binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    lo, hi = clopper_pearson_interval(k, n, confidence)
    assert lo == pytest.approx(ref.low, abs=1e-10)
    assert hi == pytest.approx(ref.high, abs=1e-10)


def test_binomial_intervals_empty_and_types():
    for fn in (wilson_interval, clopper_pearson_interval):
        lo, hi = fn(0, 0)
        assert math.isnan(lo) and math.isnan(hi)
        lo, hi = fn(np.int64(2), np.int64(7))
        assert isinstance(lo, float) and isinstance(hi, float)


@pytest.mark.parametrize("fn", [wilson_interval, clopper_pearson_interval])
def test_binomial_intervals_validation(fn):
    with pytest.raises(ValueError, match=r"Expected `confidence` in \(0, 1\), got 1.5\."):
        fn(1, 10, 1.5)
    with pytest.raises(ValueError, match="`confidence`"):
        fn(1, 10, 0.0)
    with pytest.raises(ValueError, match="`k`"):
        fn(11, 10)
    with pytest.raises(ValueError, match="`k`"):
        fn(-1, 10)
    with pytest.raises(ValueError, match="`n`"):
        fn(0, -1)
    with pytest.raises(ValueError, match="`k`"):
        fn(1.5, 10)


# ---------------------------------------------------------------- cluster bootstrap


def _reference_bootstrap(x, over, n_boot, seed, confidence):
    """Slow, loop-based bootstrap that resamples row/column indices."""
    rng = np.random.default_rng(seed)
    n, f = x.shape
    reps = []
    for _ in range(n_boot):
        rows = rng.choice(n, size=n, replace=True) if over in ("inputs", "both") else np.arange(n)
        cols = rng.choice(f, size=f, replace=True) if over in ("faults", "both") else np.arange(f)
        reps.append(x[np.ix_(rows, cols)].mean())
    alpha = 1 - confidence
    return np.quantile(reps, [alpha / 2, 1 - alpha / 2])


def test_perfect_fault_clustering_degenerate_fault_interval():
    # Every column is the same: the outcome depends only on the input.
    rows = _iid((60, 1), 0.3, seed=1)
    x = np.repeat(rows, 80, axis=1)
    lo_f, hi_f = cluster_bootstrap_interval(x, over="faults", n_boot=500, seed=0)
    assert lo_f == hi_f == pytest.approx(x.mean())
    lo_i, hi_i = cluster_bootstrap_interval(x, over="inputs", n_boot=500, seed=0)
    assert hi_i - lo_i > 0.1
    assert lo_i < x.mean() < hi_i


def test_iid_fault_interval_close_to_wilson():
    x = _iid((40, 500), 0.1, seed=2)
    lo, hi = cluster_bootstrap_interval(x, over="faults", n_boot=2000, seed=3)
    wlo, whi = wilson_interval(int(x.sum()), x.size)
    assert (hi - lo) == pytest.approx(whi - wlo, rel=0.25)
    assert lo < x.mean() < hi


def test_single_killer_fault_much_wider_than_wilson():
    x = np.zeros((50, 100), dtype=bool)
    x[:, 0] = True
    lo, hi = cluster_bootstrap_interval(x, over="faults", n_boot=2000, seed=0)
    wlo, whi = wilson_interval(int(x.sum()), x.size)
    assert (hi - lo) > 3 * (whi - wlo)
    assert lo == 0.0  # many resamples miss fault 0 entirely (P ~ 0.37)


@pytest.mark.parametrize("over", ["faults", "inputs", "both"])
def test_agrees_with_slow_reference(over):
    # Input and fault effects both present: rate = p_input * p_fault.
    rng = np.random.default_rng(4)
    p_in = rng.beta(0.5, 2.0, size=30)
    p_fault = rng.beta(0.5, 2.0, size=120)
    x = rng.random((30, 120)) < np.outer(p_in, p_fault) * 2
    lo, hi = cluster_bootstrap_interval(x, over=over, n_boot=3000, seed=5)
    rlo, rhi = _reference_bootstrap(x, over, n_boot=3000, seed=6, confidence=0.95)
    width = rhi - rlo
    assert width > 0
    assert lo == pytest.approx(rlo, abs=0.12 * width)
    assert hi == pytest.approx(rhi, abs=0.12 * width)


def test_two_way_wider_than_one_way():
    rng = np.random.default_rng(7)
    x = rng.random((40, 150)) < np.outer(rng.beta(0.5, 2, 40), rng.beta(0.5, 2, 150)) * 2
    widths = {
        over: np.subtract(*cluster_bootstrap_interval(x, over=over, n_boot=2000, seed=8)[::-1])
        for over in ("faults", "inputs", "both")
    }
    assert widths["both"] > widths["faults"]
    assert widths["both"] > widths["inputs"]


def test_bootstrap_seed_and_chunking():
    x = _iid((20, 300), 0.05, seed=9)
    a = cluster_bootstrap_interval(x, over="both", n_boot=1000, seed=11)
    b = cluster_bootstrap_interval(x, over="both", n_boot=1000, seed=11)
    c = cluster_bootstrap_interval(x, over="both", n_boot=1000, seed=12)
    assert a == b
    assert a != c
    # n_boot not a multiple of the chunk size, and n_boot == 1
    lo, hi = cluster_bootstrap_interval(x, over="faults", n_boot=257, seed=0)
    assert lo <= hi
    lo, hi = cluster_bootstrap_interval(x, over="faults", n_boot=1, seed=0)
    assert lo == hi


def test_bootstrap_global_rng_untouched():
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    cluster_bootstrap_interval(_iid((5, 10), 0.3, 0), over="both", n_boot=50, seed=0)
    assert np.random.random() == expected


def test_bootstrap_empty_and_validation():
    for shape in [(0, 10), (10, 0), (0, 0)]:
        lo, hi = cluster_bootstrap_interval(np.zeros(shape, dtype=bool), over="both")
        assert math.isnan(lo) and math.isnan(hi)
    x = np.zeros((3, 4), dtype=bool)
    with pytest.raises(ValueError, match="`over`"):
        cluster_bootstrap_interval(x, over="rows")
    with pytest.raises(ValueError, match=r"Expected `confidence` in \(0, 1\), got 1.5\."):
        cluster_bootstrap_interval(x, over="faults", confidence=1.5)
    with pytest.raises(ValueError, match="`n_boot`"):
        cluster_bootstrap_interval(x, over="faults", n_boot=0)
    with pytest.raises(ValueError, match="2-dimensional"):
        cluster_bootstrap_interval(np.zeros(5), over="faults")
    with pytest.raises(ValueError, match="0/1"):
        cluster_bootstrap_interval(np.full((2, 2), 2), over="faults")
    # 0/1 integers are accepted and equal to booleans
    xi = _iid((10, 30), 0.2, 1)
    assert cluster_bootstrap_interval(xi, "both", 200, 0) == cluster_bootstrap_interval(
        xi.astype(int), "both", 200, 0
    )


# ---------------------------------------------------------------- compare_sets


def test_compare_point_values():
    a = _iid((12, 200), 0.2, seed=20)
    b = _iid((9, 200), 0.1, seed=21)
    c = compare_sets(a, b, n_boot=500, seed=0)
    assert isinstance(c, Comparison)
    ra = a.sum() / a.size
    rb = b.sum() / b.size
    assert c.ratio == pytest.approx(ra / rb, rel=1e-12)
    assert c.difference == pytest.approx(ra - rb, abs=1e-12)
    assert c.difference_low <= c.difference <= c.difference_high
    assert c.ratio_low <= c.ratio <= c.ratio_high


def test_compare_zero_denominator():
    a = _iid((10, 50), 0.2, seed=22)
    b = np.zeros((10, 50), dtype=bool)
    c = compare_sets(a, b, n_boot=300, seed=0)
    assert math.isnan(c.ratio)
    assert math.isnan(c.ratio_low) and math.isnan(c.ratio_high)
    assert c.difference == pytest.approx(a.mean())
    assert c.difference_low > 0


def test_compare_both_zero():
    z = np.zeros((5, 20), dtype=bool)
    c = compare_sets(z, z, n_boot=100, seed=0)
    assert c.p_value == 1.0
    assert math.isnan(c.ratio) and math.isnan(c.ratio_low)
    assert c.difference == c.difference_low == c.difference_high == 0.0


def test_compare_inf_upper_bound_allowed():
    # b has a single critical outcome: most replicates drop it -> rate(b) == 0.
    a = _iid((10, 40), 0.3, seed=23)
    b = np.zeros((10, 40), dtype=bool)
    b[0, 0] = True
    c = compare_sets(a, b, n_boot=500, seed=0)
    assert c.ratio == pytest.approx(a.mean() / b.mean())
    assert c.ratio_high == math.inf
    assert math.isfinite(c.ratio_low) and c.ratio_low > 0


def test_compare_identical_sets():
    a = _iid((32, 300), 0.1, seed=24)
    c = compare_sets(a, a.copy(), n_boot=1000, seed=1)
    assert c.difference == 0.0
    assert c.ratio == 1.0
    assert c.difference_low < 0 < c.difference_high
    assert c.ratio_low < 1 < c.ratio_high
    assert c.p_value > 0.5


def test_compare_clear_difference():
    a = _iid((32, 500), 0.30, seed=25)
    b = _iid((32, 500), 0.01, seed=26)
    c = compare_sets(a, b, n_boot=2000, seed=2)
    assert c.p_value < 0.01
    assert c.p_value == pytest.approx(1 / 2001)  # floor: no replicate crosses 0
    assert c.ratio_low > 1
    assert c.difference_low > 0


def test_compare_p_value_matches_replicate_definition():
    # Moderate difference: recompute the p-value from replicates drawn the
    # same way (shared fault weights, independent input weights).
    a = _iid((8, 60), 0.12, seed=27)
    b = _iid((8, 60), 0.09, seed=28)
    n_boot, seed = 700, 3
    c = compare_sets(a, b, n_boot=n_boot, seed=seed)
    rng = np.random.default_rng(seed)
    diffs = []
    for size in (256, 256, 188):
        w = rng.multinomial(60, np.full(60, 1 / 60), size=size)
        va = rng.multinomial(8, np.full(8, 1 / 8), size=size)
        vb = rng.multinomial(8, np.full(8, 1 / 8), size=size)
        for j in range(size):
            diffs.append(
                (va[j] @ a @ w[j]) / (8 * 60) - (vb[j] @ b @ w[j]) / (8 * 60)
            )
    diffs = np.array(diffs)
    p = min(1.0, 2 * min(np.mean(diffs <= 0), np.mean(diffs >= 0)))
    assert c.p_value == pytest.approx(max(p, 1 / (n_boot + 1)))
    assert 0.01 < c.p_value < 1.0
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    assert c.difference_low == pytest.approx(lo)
    assert c.difference_high == pytest.approx(hi)


def test_compare_pairing_on_faults_narrows_interval():
    # Both sets share strong per-fault effects; pairing cancels them, so the
    # difference interval is much narrower than the sum of the two
    # single-set fault-bootstrap half-widths would suggest.
    rng = np.random.default_rng(29)
    p_fault = rng.beta(0.3, 1.5, size=200)
    a = rng.random((30, 200)) < p_fault
    b = rng.random((30, 200)) < p_fault
    c = compare_sets(a, b, n_boot=1000, seed=0)
    la, ha = cluster_bootstrap_interval(a, over="faults", n_boot=1000, seed=0)
    lb, hb = cluster_bootstrap_interval(b, over="faults", n_boot=1000, seed=0)
    assert (c.difference_high - c.difference_low) < 0.6 * ((ha - la) + (hb - lb))


def test_compare_validation_and_seed():
    a = _iid((5, 10), 0.3, 0)
    with pytest.raises(ValueError, match="same number of faults"):
        compare_sets(a, _iid((5, 11), 0.3, 1))
    with pytest.raises(ValueError, match=r"Expected `confidence` in \(0, 1\), got 1.5\."):
        compare_sets(a, a, confidence=1.5)
    b = _iid((7, 10), 0.2, 2)
    assert compare_sets(a, b, 300, seed=4) == compare_sets(a, b, 300, seed=4)
    assert compare_sets(a, b, 300, seed=4) != compare_sets(a, b, 300, seed=5)
    with pytest.raises(Exception):
        compare_sets(a, b).ratio = 2.0  # frozen


# ---------------------------------------------------------------- holm


def test_holm_hand_computation():
    # sorted: 0.001*3 = 0.003, 0.02*2 = 0.04, 0.5*1 = 0.5 (monotone already)
    np.testing.assert_allclose(holm_adjust([0.02, 0.5, 0.001]), [0.04, 0.5, 0.003])
    # sorted: 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> raised to 0.06
    np.testing.assert_allclose(holm_adjust([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    # capped at 1
    np.testing.assert_allclose(holm_adjust(np.array([0.4, 0.6, 0.9])), [1.0, 1.0, 1.0])


def test_holm_empty_and_validation():
    out = holm_adjust([])
    assert isinstance(out, np.ndarray) and out.shape == (0,)
    with pytest.raises(ValueError, match="`p_values`"):
        holm_adjust([0.1, 1.2])
    with pytest.raises(ValueError, match="`p_values`"):
        holm_adjust([[0.1, 0.2]])


# ---------------------------------------------------------------- top input share


def test_top_input_share():
    x = np.array(
        [
            [1, 0, 0, 0],
            [1, 1, 1, 0],
            [0, 0, 0, 0],
            [1, 0, 0, 1],
        ],
        dtype=bool,
    )
    assert top_input_share(x) == pytest.approx(3 / 6)  # rows sum to 1, 3, 0, 2
    assert math.isnan(top_input_share(np.zeros((3, 4), dtype=bool)))
    assert math.isnan(top_input_share(np.zeros((0, 4), dtype=bool)))
    assert top_input_share([[0, 1]]) == 1.0


# ---------------------------------------------------------------- leveugle


def _leveugle_by_hand(population, margin, confidence, p):
    t = norm.ppf(1 - (1 - confidence) / 2)
    if math.isinf(population):
        return math.ceil(t**2 * p * (1 - p) / margin**2)
    return math.ceil(population / (1 + margin**2 * (population - 1) / (t**2 * p * (1 - p))))


def test_leveugle_literature_values():
    # Infinite population, e = 1 %: 9604 at 95 % (both t = 1.96 and the exact
    # quantile), 16588 at 99 % with the exact quantile 2.5758.
    assert leveugle_sample_size(math.inf, 0.01, 0.95) == 9604
    assert leveugle_sample_size(math.inf, 0.01, 0.99) == 16588
    assert math.ceil(2.5758293035489004**2 * 0.25 / 0.01**2) == 16588
    # The rounded table value t = 2.58 would give 16641 instead.
    assert math.ceil(2.58**2 * 0.25 / 0.01**2) == 16641


@pytest.mark.parametrize(
    "population,margin,confidence,p",
    [
        (math.inf, 0.01, 0.95, 0.5),
        (math.inf, 0.05, 0.9, 0.5),
        (math.inf, 0.02, 0.99, 0.1),
        (1_000_000, 0.01, 0.95, 0.5),
        (50_000, 0.01, 0.99, 0.5),
        (2_000, 0.03, 0.95, 0.3),
        (10, 0.05, 0.95, 0.5),
    ],
)
def test_leveugle_matches_hand_formula(population, margin, confidence, p):
    n = leveugle_sample_size(population, margin, confidence, p)
    assert isinstance(n, int)
    assert n == _leveugle_by_hand(population, margin, confidence, p)
    if math.isfinite(population):
        assert n <= population


def test_leveugle_validation():
    with pytest.raises(ValueError, match=r"Expected `confidence` in \(0, 1\), got 1.5\."):
        leveugle_sample_size(100, 0.01, 1.5)
    with pytest.raises(ValueError, match="`margin`"):
        leveugle_sample_size(100, 0.0)
    with pytest.raises(ValueError, match="`p`"):
        leveugle_sample_size(100, 0.01, p=1.0)
    with pytest.raises(ValueError, match="`population`"):
        leveugle_sample_size(0, 0.01)
    with pytest.raises(ValueError, match="`population`"):
        leveugle_sample_size(float("nan"), 0.01)
