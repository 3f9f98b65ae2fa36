"""Score-ranked, class-balanced, stratified and learned strategies against direct computations."""

import numpy as np
import pandas as pd
import pytest
import torch

from faultsift import stats
from faultsift.errors import ConfigError, UnknownNameError
from faultsift.profile import profile_logits
from faultsift.selection.scores import score_frame
from faultsift.selection.strategies import get_strategy


@pytest.fixture(scope="module")
def prof():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(600, 10, generator=g) * 3
    labels = torch.where(torch.rand(600, generator=g) < 0.8, logits.argmax(1), torch.randint(0, 10, (600,), generator=g))
    return profile_logits(logits, labels)


def test_lowest_and_highest_by_gini_match_a_sort(prof):
    correct = prof[prof["correct"]]
    gini = score_frame(["gini"], logits=torch.from_numpy(np.stack(correct["logits"])))["gini"].to_numpy()
    order = correct["input_id"].to_numpy()[np.argsort(gini, kind="stable")]
    assert list(get_strategy("lowest", score="gini").select(prof, 10).input_ids) == list(order[:10])
    assert set(get_strategy("highest", score="gini").select(prof, 10).input_ids) == set(order[-10:])
    low = get_strategy("lowest", score="margin").select(prof, 16)
    assert low.input_ids == get_strategy("low-confidence").select(prof, 16).input_ids
    with pytest.raises(UnknownNameError, match="Did you mean `gini`"):
        get_strategy("lowest", score="ginii")


def test_class_balanced_takes_each_class_lowest_in_turns(prof):
    chosen = get_strategy("class-balanced", score="margin").select(prof, 25)
    rows = prof.set_index("input_id").loc[list(chosen.input_ids)]
    counts = rows["pred"].value_counts()
    assert len(counts) == 10 and counts.max() - counts.min() <= 1
    correct = prof[prof["correct"]]
    for cls, group in rows.groupby("pred"):
        lowest = correct[correct["pred"] == cls].nsmallest(len(group), "margin")["input_id"]
        assert set(group.index) == set(lowest)


def test_stratified_quota_strata_and_seed(prof):
    s = get_strategy("stratified", score="margin", bins=4).select(prof, 22, seed=0)
    p = s.params
    correct = prof[prof["correct"]].sort_values(["margin", "input_id"])
    assert p["population"] == len(correct) and sum(p["stratum_sizes"]) == len(correct)
    assert np.bincount(p["stratum_of"]).tolist() == [6, 6, 5, 5]
    edges = np.cumsum([0] + p["stratum_sizes"])
    rank = {i: r for r, i in enumerate(correct["input_id"])}
    for i, b in zip(s.input_ids, p["stratum_of"]):
        assert edges[b] <= rank[i] < edges[b + 1]
    assert s.input_ids != get_strategy("stratified", bins=4).select(prof, 22, seed=1).input_ids
    with pytest.raises(ConfigError, match="Expected `k` >= `bins` \\(4\\)"):
        get_strategy("stratified", bins=4).select(prof, 3)


def test_stratified_estimate_is_unbiased_over_repeated_draws(prof):
    """Averaged over many stratified draws, the weighted estimate hits the pool's true rate."""
    rng = np.random.default_rng(0)
    correct = prof[prof["correct"]].reset_index(drop=True)
    p_crit = np.clip(0.02 / (correct["margin"].to_numpy() + 0.02), 0, 1)  # low margin: more critical
    truth_matrix = rng.random((len(correct), 30)) < p_crit[:, None]
    row_of = {i: r for r, i in enumerate(correct["input_id"])}
    truth = truth_matrix.mean()
    estimates = []
    for seed in range(300):
        s = get_strategy("stratified", score="margin", bins=4).select(prof, 16, seed=seed)
        rows = [row_of[i] for i in s.input_ids]
        est, low, high = stats.stratified_rate(truth_matrix[rows], s.params["stratum_of"], s.params["stratum_sizes"],
                                               n_boot=20, seed=seed)
        assert low <= est <= high
        estimates.append(est)
    assert abs(np.mean(estimates) - truth) < 3 * np.std(estimates) / np.sqrt(len(estimates))
    assert abs(np.mean(estimates) - truth) < 0.1 * truth


def test_learned_ranks_only_unscreened_inputs_by_fitted_rate():
    rng = np.random.default_rng(0)
    n = 400
    logits = torch.from_numpy(rng.normal(size=(n, 10)).astype(np.float32) * 3)
    prof = profile_logits(logits, logits.argmax(1))
    rate = pd.Series(np.exp(-20 * prof["margin"].to_numpy()), index=prof["input_id"])
    screened = rate.iloc[: n // 2]
    chosen = get_strategy("learned", screening=screened).select(prof, 10, seed=0)
    assert not set(chosen.input_ids) & set(screened.index)
    rest = prof.iloc[n // 2:]
    best = set(rest.nsmallest(40, "margin")["input_id"])  # the truly most exposed unscreened inputs
    assert len(set(chosen.input_ids) & best) >= 8
    with pytest.raises(ConfigError, match="unscreened candidates"):
        get_strategy("learned", screening=rate).select(prof, 10)


def test_options_a_strategy_does_not_take_are_refused():
    with pytest.raises(ConfigError, match="Strategy `lowest` does not take `bins`; it takes: score, only_correct."):
        get_strategy("lowest", bins=3)
