"""Exact paired test, per-input intervals and rank metrics against scipy / sklearn / brute force."""

import doctest
import math

import numpy as np
import pytest
from scipy.stats import binomtest, kendalltau, spearmanr
from sklearn.metrics import roc_auc_score

from faultsift import stats


def test_doctests_of_stats_and_selection():
    import faultsift.selection.scores as scores
    import faultsift.selection.strategies as strategies

    for module in (stats, scores, strategies):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__


def test_exact_paired_test_is_a_sign_test_over_faults():
    rng = np.random.default_rng(0)
    a = rng.random((6, 80)) < 0.15
    b = rng.random((9, 80)) < 0.05
    p, higher, lower = stats.exact_paired_test(a, b)
    ra, rb = a.mean(0), b.mean(0)
    assert (higher, lower) == (int((ra > rb).sum()), int((ra < rb).sum()))
    assert p == pytest.approx(binomtest(higher, higher + lower, 0.5).pvalue)
    assert p < 0.05
    same = stats.exact_paired_test(a, a)
    assert same == (1.0, 0, 0)
    with pytest.raises(ValueError, match="same number of faults"):
        stats.exact_paired_test(a, b[:, :5])


def test_per_input_rates_use_clopper_pearson():
    x = np.zeros((3, 40), bool)
    x[0, :10] = True
    x[1, :1] = True
    r = stats.per_input_rates(x)
    assert r["rate"].tolist() == [0.25, 0.025, 0.0]
    for i, k in enumerate((10, 1, 0)):
        lo, hi = binomtest(k, 40).proportion_ci(0.95, method="exact")
        assert r["low"][i] == pytest.approx(lo, abs=1e-12) and r["high"][i] == pytest.approx(hi)


def _apfd_brute(score, v):
    order = sorted(range(len(score)), key=lambda i: (-score[i], i))
    positions = [order.index(i) + 1 for i in range(len(v)) if v[i] > 0]
    n, m = len(v), len(positions)
    return 1 - sum(positions) / (n * m) + 1 / (2 * n)


def test_rank_metrics_match_references():
    rng = np.random.default_rng(3)
    n = 120
    v = np.where(rng.random(n) < 0.3, rng.random(n), 0.0)
    score = v + rng.normal(scale=0.3, size=n)
    m = stats.rank_metrics(score, v, k=12)
    assert m["spearman"] == pytest.approx(spearmanr(score, v).statistic)
    assert m["kendall_tau_b"] == pytest.approx(kendalltau(score, v, variant="b").statistic)
    assert m["auroc"] == pytest.approx(roc_auc_score(v > 0, score))
    top = np.argsort(-score)[:12]
    assert m["precision_at_k"] == pytest.approx((v[top] > 0).mean())
    assert m["lift_at_k"] == pytest.approx(v[top].mean() / v.mean())
    assert m["apfd"] == pytest.approx(_apfd_brute(score, v))
    assert m["auroc"] > 0.7 and m["lift_at_k"] > 1.5
    flat = stats.rank_metrics(np.zeros(n), np.zeros(n), k=5)
    assert math.isnan(flat["auroc"]) and math.isnan(flat["spearman"]) and math.isnan(flat["apfd"])


def test_rank_metrics_bootstrap_intervals_cover_and_share_replicates():
    rng = np.random.default_rng(4)
    p = np.where(rng.random(80) < 0.3, 0.3, 0.01)
    x = rng.random((80, 60)) < p[:, None]
    good, noise = p + rng.normal(scale=0.05, size=80), rng.normal(size=80)
    out, reps = stats.rank_metrics_bootstrap({"good": good, "noise": noise}, x, k=10, n_boot=300, seed=0)
    bounds = {"lift_at_k": (0, math.inf), "spearman": (-1, 1), "kendall_tau_b": (-1, 1)}
    for j, name in enumerate(("good", "noise")):
        for metric, (value, low, high) in out[name].items():
            q_low, q_high = np.quantile(reps[metric][:, j], [0.025, 0.975])
            lo_bound, hi_bound = bounds.get(metric, (0, 1))
            assert low == pytest.approx(max(lo_bound, 2 * value - q_high)), (name, metric)
            assert high == pytest.approx(min(hi_bound, 2 * value - q_low)), (name, metric)
    assert out["good"]["auroc"][1] > out["noise"]["auroc"][2]  # separated intervals
    diff = reps["spearman"][:, 0] - reps["spearman"][:, 1]
    assert np.quantile(diff, 0.025) > 0
    again, _ = stats.rank_metrics_bootstrap({"good": good, "noise": noise}, x, k=10, n_boot=300, seed=0)
    assert again == out


@pytest.mark.slow
def test_basic_interval_covers_the_infinite_fault_spearman():
    """Simulation: inputs from a population with known rates p_i, 100 faults each; the basic
    two-way interval covers Spearman(score, p) far more often than the percentile one."""
    rng = np.random.default_rng(0)

    def draw(n):
        p = np.where(rng.random(n) < 0.25, rng.beta(0.5, 20, n), 0.0)
        return p, np.log(p + 1e-3) + rng.normal(0, 1, n)

    big_p, big_s = draw(200_000)
    truth = spearmanr(big_s, big_p).statistic
    basic = percentile = 0
    runs = 40
    for r in range(runs):
        p, s = draw(300)
        x = rng.random((300, 100)) < p[:, None]
        out, reps = stats.rank_metrics_bootstrap({"s": s}, x, k=10, n_boot=200, seed=r)
        _, low, high = out["s"]["spearman"]
        basic += low <= truth <= high
        q_low, q_high = np.quantile(reps["spearman"][:, 0], [0.025, 0.975])
        percentile += q_low <= truth <= q_high
    assert basic / runs >= 0.8 and percentile / runs <= 0.5


def test_wilson_interval_holds_the_rate_at_zero():
    assert stats.wilson_interval(0, 64_000)[0] == 0.0
    assert stats.wilson_interval(64_000, 64_000)[1] == 1.0
