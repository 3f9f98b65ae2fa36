"""Statistics for fault-injection campaigns.

A campaign applies the same list of ``F`` faults to every input of several
input sets (a paired design). For one input set the outcome is a boolean
matrix ``X`` of shape ``(n_inputs, n_faults)`` where ``X[i, f]`` is ``True``
when fault ``f`` caused a critical SDC on input ``i``.

Trials that share a fault, or share an input, are correlated, so the
binomial intervals (:func:`wilson_interval`, :func:`clopper_pearson_interval`)
treat ``n_inputs * n_faults`` trials as independent and are usually too
narrow. :func:`cluster_bootstrap_interval` and :func:`compare_sets` resample
whole faults (columns) and/or whole inputs (rows) instead.

Every random choice goes through ``np.random.default_rng(seed)``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from scipy.stats import norm
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

__all__ = [
    "Comparison",
    "cluster_bootstrap_interval",
    "clopper_pearson_interval",
    "compare_sets",
    "holm_adjust",
    "leveugle_sample_size",
    "top_input_share",
    "wilson_interval",
    "exact_paired_test",
    "per_input_rates",
    "rank_metrics",
    "rank_metrics_bootstrap",
    "stratified_rate",
    "basic_interval",
]

_OVER_CHOICES = ("faults", "inputs", "both")
_CHUNK = 256  # bootstrap replicates drawn per vectorised step (bounds memory)


# --------------------------------------------------------------------------
# validation helpers


def _check_confidence(confidence: float) -> float:
    if (
        isinstance(confidence, bool)
        or not isinstance(confidence, numbers.Real)
        or not 0.0 < float(confidence) < 1.0
    ):
        raise ValueError(f"Expected `confidence` in (0, 1), got {confidence!r}.")
    return float(confidence)


def _check_count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"Expected `{name}` to be an integer, got {value!r}.")
    return int(value)


def _check_k_n(k: int, n: int) -> tuple[int, int]:
    k = _check_count(k, "k")
    n = _check_count(n, "n")
    if n < 0:
        raise ValueError(f"Expected `n` >= 0, got {n}.")
    if not 0 <= k <= n:
        raise ValueError(f"Expected `k` in [0, n] = [0, {n}], got {k}.")
    return k, n


def _check_n_boot(n_boot: int) -> int:
    n_boot = _check_count(n_boot, "n_boot")
    if n_boot < 1:
        raise ValueError(f"Expected `n_boot` >= 1, got {n_boot}.")
    return n_boot


def _check_seed(seed: int) -> int:
    seed = _check_count(seed, "seed")
    if seed < 0:
        raise ValueError(f"Expected `seed` >= 0, got {seed}.")
    return seed


def _as_matrix(matrix: object, name: str = "matrix") -> np.ndarray:
    """Return ``matrix`` as a float64 array of 0.0/1.0 values, validated."""
    arr = np.asarray(matrix)
    if arr.ndim != 2:
        raise ValueError(
            f"Expected `{name}` to be 2-dimensional (n_inputs, n_faults), "
            f"got {arr.ndim} dimension(s)."
        )
    if arr.dtype != np.bool_:
        if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise ValueError(
                f"Expected `{name}` to be boolean or numeric 0/1, got dtype {arr.dtype}."
            )
        if arr.size and not np.all((arr == 0) | (arr == 1)):
            raise ValueError(
                f"Expected `{name}` to contain only 0/1 (or boolean) values, "
                "got other values."
            )
    return arr.astype(np.float64)


# --------------------------------------------------------------------------
# binomial intervals (independent trials)


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes out of ``n`` independent trials.

    Returns ``(nan, nan)`` when ``n == 0``.

    >>> lo, hi = wilson_interval(5, 100)
    >>> round(lo, 4), round(hi, 4)
    (0.0215, 0.1118)
    """
    confidence = _check_confidence(confidence)
    k, n = _check_k_n(k, n)
    if n == 0:
        return (math.nan, math.nan)
    lo, hi = proportion_confint(k, n, alpha=1.0 - confidence, method="wilson")
    # statsmodels can return a lower bound of ~1e-21 for k = 0; the interval holds k / n
    return (float(min(lo, k / n)), float(max(hi, k / n)))


def clopper_pearson_interval(
    k: int, n: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Clopper-Pearson (exact, beta) interval for ``k`` out of ``n`` trials.

    Returns ``(nan, nan)`` when ``n == 0``.

    >>> lo, hi = clopper_pearson_interval(0, 10)
    >>> lo, round(hi, 4)
    (0.0, 0.3085)
    """
    confidence = _check_confidence(confidence)
    k, n = _check_k_n(k, n)
    if n == 0:
        return (math.nan, math.nan)
    lo, hi = proportion_confint(k, n, alpha=1.0 - confidence, method="beta")
    return (float(lo), float(hi))


# --------------------------------------------------------------------------
# cluster (two-way) bootstrap


def _multinomial_weights(
    rng: np.random.Generator, n: int, size: int
) -> np.ndarray:
    """``size`` resampling-with-replacement count vectors over ``n`` units."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=size)


def _chunks(n_boot: int) -> Iterator[int]:
    done = 0
    while done < n_boot:
        size = min(_CHUNK, n_boot - done)
        yield size
        done += size


def _weighted_rates(
    x: np.ndarray, v: np.ndarray | None, w: np.ndarray | None
) -> np.ndarray:
    """Rates ``v^T x w / (sum v * sum w)`` for a chunk of weight vectors.

    ``v`` has shape ``(chunk, n_inputs)``, ``w`` shape ``(chunk, n_faults)``;
    ``None`` means all-ones weights (that dimension is not resampled).
    Multinomial weights always sum to the number of units, so the
    denominator is ``n_inputs * n_faults``.
    """
    n_inputs, n_faults = x.shape
    denom = float(n_inputs * n_faults)
    if v is None and w is None:
        raise ValueError("Expected at least one of the weight arrays to be given.")
    if v is None:
        return (w @ x.sum(axis=0)) / denom
    if w is None:
        return (v @ x.sum(axis=1)) / denom
    return np.einsum("bf,bf->b", v @ x, w) / denom


def _percentile_interval(
    values: np.ndarray, confidence: float
) -> tuple[float, float]:
    """Percentile interval; ``+inf`` values are allowed, ``nan`` values dropped."""
    values = values[~np.isnan(values)]
    if values.size == 0:
        return (math.nan, math.nan)
    alpha = 1.0 - confidence
    probs = [alpha / 2.0, 1.0 - alpha / 2.0]
    with np.errstate(invalid="ignore"):
        q = np.quantile(values, probs)
    # Linear interpolation next to +inf yields nan (inf - inf); the exact
    # answer there is the upper neighbour (inf, or the finite value itself
    # when no interpolation is needed).
    bad = np.isnan(q)
    if bad.any():
        q = np.where(bad, np.quantile(values, probs, method="higher"), q)
    return (float(q[0]), float(q[1]))


def cluster_bootstrap_interval(
    matrix,
    over: str,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval for the critical-SDC rate ``mean(matrix)``.

    ``over`` selects what is resampled with replacement: ``"faults"``
    (columns), ``"inputs"`` (rows) or ``"both"`` (rows and columns
    independently: the two-way / pigeonhole bootstrap, whose replicate is
    ``v^T X w / (sum v * sum w)`` for multinomial weight vectors ``v`` over
    inputs and ``w`` over faults). Returns ``(nan, nan)`` for an empty
    matrix.

    >>> x = np.zeros((4, 10), dtype=bool); x[:, 0] = True
    >>> lo, hi = cluster_bootstrap_interval(x, over="faults", n_boot=500)
    >>> bool(lo <= x.mean() <= hi)
    True
    """
    if over not in _OVER_CHOICES:
        raise ValueError(f"Expected `over` in {_OVER_CHOICES}, got {over!r}.")
    n_boot = _check_n_boot(n_boot)
    seed = _check_seed(seed)
    confidence = _check_confidence(confidence)
    x = _as_matrix(matrix)
    if x.size == 0:
        return (math.nan, math.nan)

    n_inputs, n_faults = x.shape
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot, dtype=np.float64)
    start = 0
    for size in _chunks(n_boot):
        v = _multinomial_weights(rng, n_inputs, size) if over in ("inputs", "both") else None
        w = _multinomial_weights(rng, n_faults, size) if over in ("faults", "both") else None
        reps[start : start + size] = _weighted_rates(x, v, w)
        start += size
    return _percentile_interval(reps, confidence)


# --------------------------------------------------------------------------
# paired comparison of two input sets


@dataclass(frozen=True)
class Comparison:
    """Result of :func:`compare_sets` (``a`` versus ``b``).

    ``ratio`` is ``rate(a) / rate(b)`` (``nan`` when ``rate(b) == 0``: the
    ratio is undefined and so is its interval). The ratio interval may have
    an infinite upper bound when some bootstrap replicates have
    ``rate(b) == 0``. ``difference`` is ``rate(a) - rate(b)``. ``p_value``
    is a two-sided bootstrap p-value for ``difference == 0``.
    """

    ratio: float
    ratio_low: float
    ratio_high: float
    difference: float
    difference_low: float
    difference_high: float
    p_value: float


def compare_sets(
    a,
    b,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Comparison:
    """Compare the critical-SDC rates of two input sets run on the same faults.

    ``a`` is ``(n_a, F)`` and ``b`` is ``(n_b, F)``, columns paired on the
    same ``F`` faults. Each bootstrap replicate draws one multinomial
    fault-weight vector shared by ``a`` and ``b`` and independent
    input-weight vectors for the rows of ``a`` and of ``b``.

    Intervals are percentile intervals of the replicate ratios and
    differences. Replicates where both rates are zero have no ratio and are
    left out of the ratio interval. The p-value inverts the percentile
    interval of the differences ``d``:
    ``min(1, 2 * min(P(d <= 0), P(d >= 0)))``, floored at
    ``1 / (n_boot + 1)``; it is ``1.0`` when neither set has any critical
    outcome. If either matrix is empty every field is ``nan``.

    >>> a = np.zeros((5, 20), dtype=bool); a[:, :4] = True
    >>> b = np.zeros((5, 20), dtype=bool); b[:, :2] = True
    >>> c = compare_sets(a, b, n_boot=200)
    >>> c.ratio, round(c.difference, 2)
    (2.0, 0.1)
    """
    n_boot = _check_n_boot(n_boot)
    seed = _check_seed(seed)
    confidence = _check_confidence(confidence)
    xa = _as_matrix(a, "a")
    xb = _as_matrix(b, "b")
    if xa.shape[1] != xb.shape[1]:
        raise ValueError(
            "Expected `a` and `b` to have the same number of faults (columns), "
            f"got {xa.shape[1]} and {xb.shape[1]}."
        )
    if xa.size == 0 or xb.size == 0:
        nan = math.nan
        return Comparison(nan, nan, nan, nan, nan, nan, nan)

    rate_a = float(xa.mean())
    rate_b = float(xb.mean())
    difference = rate_a - rate_b
    ratio = rate_a / rate_b if rate_b > 0 else math.nan

    n_a, n_faults = xa.shape
    n_b = xb.shape[0]
    rng = np.random.default_rng(seed)
    reps_a = np.empty(n_boot, dtype=np.float64)
    reps_b = np.empty(n_boot, dtype=np.float64)
    start = 0
    for size in _chunks(n_boot):
        w = _multinomial_weights(rng, n_faults, size)
        va = _multinomial_weights(rng, n_a, size)
        vb = _multinomial_weights(rng, n_b, size)
        reps_a[start : start + size] = _weighted_rates(xa, va, w)
        reps_b[start : start + size] = _weighted_rates(xb, vb, w)
        start += size

    diffs = reps_a - reps_b
    difference_low, difference_high = _percentile_interval(diffs, confidence)

    if math.isnan(ratio):
        ratio_low = ratio_high = math.nan
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = reps_a / reps_b  # a>0, b=0 -> inf; 0/0 -> nan (dropped)
        ratio_low, ratio_high = _percentile_interval(ratios, confidence)

    if rate_a == 0.0 and rate_b == 0.0:
        p_value = 1.0
    else:
        tail = min(float(np.mean(diffs <= 0.0)), float(np.mean(diffs >= 0.0)))
        p_value = max(min(1.0, 2.0 * tail), 1.0 / (n_boot + 1))

    return Comparison(
        ratio=float(ratio),
        ratio_low=ratio_low,
        ratio_high=ratio_high,
        difference=difference,
        difference_low=difference_low,
        difference_high=difference_high,
        p_value=p_value,
    )


# --------------------------------------------------------------------------
# misc


def holm_adjust(p_values) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (same order as the input).

    >>> holm_adjust([0.01, 0.04, 0.03]).round(2).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(
            f"Expected `p_values` to be 1-dimensional, got {p.ndim} dimension(s)."
        )
    if p.size == 0:
        return np.empty(0, dtype=np.float64)
    if np.any(np.isnan(p)) or np.any((p < 0.0) | (p > 1.0)):
        raise ValueError(f"Expected `p_values` in [0, 1], got {p.tolist()!r}.")
    return np.asarray(multipletests(p, method="holm")[1], dtype=np.float64)


def top_input_share(matrix) -> float:
    """Share of the critical count caused by the single most vulnerable input.

    ``max(row sums) / total``; ``nan`` if the total is 0.

    >>> top_input_share([[1, 1, 1], [1, 0, 0]])
    0.75
    """
    x = _as_matrix(matrix)
    total = x.sum()
    if total == 0:
        return math.nan
    return float(x.sum(axis=1).max() / total)


def leveugle_sample_size(
    population: int | float,
    margin: float,
    confidence: float = 0.95,
    p: float = 0.5,
) -> int:
    """Number of faults to inject for a given error margin (Leveugle et al., 2009).

    ``n = N / (1 + e^2 (N - 1) / (t^2 p (1 - p)))`` rounded up, with
    ``t = norm.ppf(1 - (1 - confidence) / 2)`` (the exact quantile, not a
    rounded table value). ``population`` may be ``math.inf``, giving
    ``t^2 p (1 - p) / e^2`` rounded up.

    With the exact quantile, ``e = 0.01`` and ``N = inf`` gives 9604 at 95 %
    (t = 1.95996: 9603.65; the paper's t = 1.96 also gives 9604) and 16588
    at 99 % (t = 2.57583: 16587.24; the paper's rounded t = 2.58 gives 16641).

    >>> leveugle_sample_size(math.inf, 0.01)
    9604
    """
    if isinstance(population, bool) or not isinstance(population, numbers.Real):
        raise ValueError(f"Expected `population` to be a number, got {population!r}.")
    population = float(population)
    if math.isnan(population) or population < 1:
        raise ValueError(f"Expected `population` >= 1 (or math.inf), got {population!r}.")
    if math.isfinite(population) and population != math.floor(population):
        raise ValueError(f"Expected `population` to be a whole number, got {population!r}.")
    if (
        isinstance(margin, bool)
        or not isinstance(margin, numbers.Real)
        or not 0.0 < float(margin) < 1.0
    ):
        raise ValueError(f"Expected `margin` in (0, 1), got {margin!r}.")
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 < float(p) < 1.0:
        raise ValueError(f"Expected `p` in (0, 1), got {p!r}.")
    confidence = _check_confidence(confidence)

    t = float(norm.ppf(1.0 - (1.0 - confidence) / 2.0))
    core = t * t * p * (1.0 - p) / (margin * margin)
    if math.isinf(population):
        n = core
    else:
        n = population / (1.0 + (population - 1.0) / core)
    # Guard against values like 9604.000000000002 that are whole numbers
    # up to floating-point error.
    return int(math.ceil(round(n, 9)))


# --------------------------------------------------------------------------
# exact paired test, per-input rates, groups, stratified estimate


def exact_paired_test(a, b) -> tuple[float, int, int]:
    """Exact two-sided sign test of two sets run on the same faults.

    Per fault ``f`` the critical rates ``mean(a[:, f])`` and ``mean(b[:, f])`` are compared;
    faults where they tie carry no information. Under the null hypothesis (no difference), each
    untied fault favours ``a`` with probability 1/2, so the count favouring ``a`` is
    Binomial(untied, 1/2) (scipy ``binomtest``). Faults are the independent units (drawn
    independently); the result holds for the inputs the sets contain. Returns
    ``(p_value, faults_a_higher, faults_b_higher)``; p is 1.0 when no fault differs.

    >>> a = np.zeros((2, 12), bool); a[:, :10] = True
    >>> p, na, nb = exact_paired_test(a, np.zeros((3, 12), bool))
    >>> round(p, 4), na, nb
    (0.002, 10, 0)
    """
    from scipy.stats import binomtest

    xa, xb = _as_matrix(a, "a"), _as_matrix(b, "b")
    if xa.shape[1] != xb.shape[1]:
        raise ValueError(f"Expected `a` and `b` to have the same number of faults (columns), "
                         f"got {xa.shape[1]} and {xb.shape[1]}.")
    ra, rb = xa.mean(axis=0), xb.mean(axis=0)
    higher, lower = int((ra > rb).sum()), int((ra < rb).sum())
    if higher + lower == 0:
        return 1.0, 0, 0
    return float(binomtest(higher, higher + lower, 0.5).pvalue), higher, lower


def per_input_rates(matrix, confidence: float = 0.95) -> dict[str, np.ndarray]:
    """Per-input critical rate ``v_i`` (row means) with Clopper-Pearson intervals.

    Within one input the trials are independent (independent faults), so the exact binomial
    interval applies to ``v_i``.

    >>> r = per_input_rates([[1, 0, 0, 0], [0, 0, 0, 0]])
    >>> r["rate"].tolist(), r["critical"].tolist()
    ([0.25, 0.0], [1, 0])
    """
    x = _as_matrix(matrix)
    confidence = _check_confidence(confidence)
    k = x.sum(axis=1).astype(np.int64)
    n = x.shape[1]
    if n == 0:
        nan = np.full(len(k), np.nan)
        return {"critical": k, "trials": np.zeros(len(k), np.int64), "rate": nan, "low": nan, "high": nan}
    low, high = proportion_confint(k, n, alpha=1.0 - confidence, method="beta")
    return {"critical": k, "trials": np.full(len(k), n, np.int64), "rate": k / n,
            "low": np.nan_to_num(np.asarray(low, float), nan=0.0), "high": np.nan_to_num(np.asarray(high, float), nan=1.0)}


def stratified_rate(
    matrix,
    stratum_of,
    stratum_sizes,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """Unbiased estimate of a whole pool's critical rate from a stratified sample of its inputs.

    Row ``i`` of ``matrix`` is an input drawn without replacement from stratum
    ``stratum_of[i]``, which holds ``stratum_sizes[b]`` inputs of the pool; the estimate is
    ``sum_b (N_b / N) * mean(rows of b)`` (each input weighted by the inverse of its
    inclusion probability). The interval is a percentile bootstrap that resamples the faults
    (shared by all rows) and the inputs within each stratum. Returns ``(rate, low, high)``.

    >>> x = np.array([[1, 1], [0, 0]], bool)
    >>> stratified_rate(x, [0, 1], [10, 30], n_boot=100)[0]
    0.25
    """
    x = _as_matrix(matrix)
    n_boot, seed, confidence = _check_n_boot(n_boot), _check_seed(seed), _check_confidence(confidence)
    strata = np.asarray(stratum_of, dtype=np.int64)
    sizes = np.asarray(stratum_sizes, dtype=np.float64)
    if strata.shape != (x.shape[0],):
        raise ValueError(f"Expected one stratum per row ({x.shape[0]}), got {strata.shape[0]}.")
    present = np.unique(strata)
    if present.size == 0 or present.min() < 0 or present.max() >= sizes.size:
        raise ValueError(f"Expected strata in [0, {sizes.size - 1}], got {present.tolist()}.")
    if present.size < sizes.size:
        raise ValueError(f"Expected at least one input in every stratum, got none in "
                         f"{sorted(set(range(sizes.size)) - set(present.tolist()))}.")
    weights = sizes / sizes.sum()
    rows = [np.flatnonzero(strata == b) for b in range(sizes.size)]
    estimate = float(sum(w * x[r].mean() for w, r in zip(weights, rows)))
    rng = np.random.default_rng(seed)
    n_faults = x.shape[1]
    reps = np.zeros(n_boot)
    start = 0
    for size in _chunks(n_boot):
        w = _multinomial_weights(rng, n_faults, size)
        for weight, r in zip(weights, rows):
            v = _multinomial_weights(rng, len(r), size)
            reps[start : start + size] += weight * _weighted_rates(x[r], v, w)
        start += size
    low, high = _percentile_interval(reps, confidence)
    return estimate, low, high


# --------------------------------------------------------------------------
# how well a score ranks inputs by their fault-injection vulnerability

RANK_METRICS = ("spearman", "kendall_tau_b", "precision_at_k", "lift_at_k", "auroc", "apfd")


def rank_metrics(score, vulnerability, k: int) -> dict[str, float]:
    """How well ``score`` (larger = more exposed) ranks inputs by measured ``vulnerability``.

    - ``spearman``, ``kendall_tau_b``: rank correlation with ``vulnerability`` (scipy);
    - ``precision_at_k``: share of the ``k`` top-scored inputs with ``vulnerability > 0``;
    - ``lift_at_k``: mean vulnerability of those ``k`` over the pool's mean (a random set's
      expectation); 1 = no better than random;
    - ``auroc``: probability that a vulnerable input (``> 0``) outscores a non-vulnerable one
      (Mann-Whitney U / (m (n - m)), ties count half);
    - ``apfd``: ``1 - sum(positions of the m vulnerable inputs) / (n m) + 1 / (2 n)`` with
      positions 1..n in decreasing score (ties: input order).

    Undefined values (no vulnerable input, constant inputs) are ``nan``.

    >>> m = rank_metrics([3, 2, 1, 0], [0.5, 0.2, 0.0, 0.0], k=2)
    >>> m["precision_at_k"], m["auroc"], m["apfd"]
    (1.0, 1.0, 0.75)
    """
    import warnings

    from scipy.stats import kendalltau, mannwhitneyu, spearmanr

    s = np.asarray(score, dtype=np.float64)
    v = np.asarray(vulnerability, dtype=np.float64)
    if s.shape != v.shape or s.ndim != 1:
        raise ValueError(f"Expected `score` and `vulnerability` of the same 1-d shape, got {s.shape} and {v.shape}.")
    n = s.size
    k = _check_count(k, "k")
    if not 1 <= k <= n:
        raise ValueError(f"Expected `k` in [1, {n}], got {k}.")
    positive = v > 0
    m = int(positive.sum())
    order = np.argsort(-s, kind="stable")
    top = order[:k]
    mean_v = v.mean()
    out = {"precision_at_k": float(positive[top].mean()),
           "lift_at_k": float(v[top].mean() / mean_v) if mean_v > 0 else math.nan}
    constant = np.ptp(s) == 0 or np.ptp(v) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["spearman"] = math.nan if constant else float(spearmanr(s, v).statistic)
        out["kendall_tau_b"] = math.nan if constant else float(kendalltau(s, v).statistic)
    if 0 < m < n:
        out["auroc"] = float(mannwhitneyu(s[positive], s[~positive]).statistic / (m * (n - m)))
        positions = np.empty(n)
        positions[order] = np.arange(1, n + 1)
        out["apfd"] = float(1.0 - positions[positive].sum() / (n * m) + 1.0 / (2 * n))
    else:
        out["auroc"] = out["apfd"] = math.nan
    return {name: out[name] for name in RANK_METRICS}


def rank_metrics_bootstrap(
    scores: dict,
    matrix,
    k: int,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[dict[str, dict[str, tuple[float, float, float]]], dict[str, np.ndarray]]:
    """:func:`rank_metrics` of each score against ``v = matrix.mean(axis=1)``, with intervals.

    ``scores`` maps a name to one value per row of ``matrix``. Each replicate resamples the
    inputs (rows, with their scores) and the faults (columns, so ``v`` is re-measured): a
    two-way bootstrap with basic intervals (:func:`basic_interval`). Every score sees the same
    replicates, so differences between
    scores can be bootstrapped from the returned replicate arrays
    (``reps[metric][:, j]`` for the ``j``-th score). Returns
    ``({score: {metric: (value, low, high)}}, reps)``.

    >>> x = np.zeros((6, 4), bool); x[0] = True; x[1, :2] = True
    >>> out, reps = rank_metrics_bootstrap({"s": np.arange(6)[::-1]}, x, k=2, n_boot=50)
    >>> out["s"]["precision_at_k"][0], reps["auroc"].shape
    (1.0, (50, 1))
    """
    x = _as_matrix(matrix)
    n_boot, seed, confidence = _check_n_boot(n_boot), _check_seed(seed), _check_confidence(confidence)
    names = list(scores)
    s = np.stack([np.asarray(scores[name], dtype=np.float64) for name in names])
    points = {name: rank_metrics(s[j], x.mean(axis=1), k) for j, name in enumerate(names)}
    rng = np.random.default_rng(seed)
    n_inputs, n_faults = x.shape
    reps = {metric: np.empty((n_boot, len(names))) for metric in RANK_METRICS}
    for b in range(n_boot):
        rows = rng.integers(0, n_inputs, n_inputs)
        counts = np.bincount(rng.integers(0, n_faults, n_faults), minlength=n_faults)
        v = x[rows] @ counts / n_faults
        for j in range(len(names)):
            for metric, value in rank_metrics(s[j, rows], v, k).items():
                reps[metric][b, j] = value
    out = {name: {metric: (points[name][metric], *basic_interval(points[name][metric], reps[metric][:, j], confidence,
                                                                 _METRIC_RANGE[metric]))
                  for metric in RANK_METRICS} for j, name in enumerate(names)}
    return out, reps


_METRIC_RANGE = {"spearman": (-1.0, 1.0), "kendall_tau_b": (-1.0, 1.0), "precision_at_k": (0.0, 1.0),
                 "lift_at_k": (0.0, math.inf), "auroc": (0.0, 1.0), "apfd": (0.0, 1.0)}


def basic_interval(point: float, replicates, confidence: float = 0.95,
                   bounds: tuple[float, float] = (-math.inf, math.inf)) -> tuple[float, float]:
    """Basic (reverse-percentile) bootstrap interval ``[2 t - q_hi, 2 t - q_lo]``, clipped to ``bounds``.

    Used for rank metrics: re-measuring ``v`` with resampled faults adds noise on top of the
    finite-fault noise already in ``v``, so the replicates sit below the point estimate by about
    as much as the estimate sits below its infinite-fault value; the basic interval corrects
    that shift (percentile intervals miss the true value most of the time; see the tests).
    ``nan`` when the point estimate is ``nan``.

    >>> tuple(round(x, 3) for x in basic_interval(0.5, np.array([0.3, 0.4, 0.5]), bounds=(-1, 1)))
    (0.505, 0.695)
    """
    if point is None or math.isnan(point):
        return (math.nan, math.nan)
    q_low, q_high = _percentile_interval(np.asarray(replicates, dtype=np.float64), _check_confidence(confidence))
    if math.isnan(q_low):
        return (math.nan, math.nan)
    return (float(max(bounds[0], 2 * point - q_high)), float(min(bounds[1], 2 * point - q_low)))
