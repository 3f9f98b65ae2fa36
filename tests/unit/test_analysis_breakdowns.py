"""Breakdowns, per-input vulnerability, exact comparisons and the learned strategy on synthetic trials."""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import binomtest

from faultsift.analysis import (analyse_sets, class_breakdown, fault_breakdown, learned_vs_scores, metric_quality,
                                vulnerability)
from faultsift.profile import profile_logits
from faultsift.selection.strategies import InputSet


@pytest.fixture(scope="module")
def campaign():
    rng = np.random.default_rng(0)
    n_inputs, n_faults = 300, 60
    logits = torch.from_numpy(rng.normal(size=(n_inputs, 10)).astype(np.float32) * 3)
    prof = profile_logits(logits, logits.argmax(1))
    p = np.clip(0.05 / (prof["margin"].to_numpy() + 0.05), 0, 1) * 0.5
    crit = rng.random((n_inputs, n_faults)) < p[:, None]
    trials = pd.DataFrame({"fault_id": np.tile(np.arange(n_faults), n_inputs),
                           "input_id": np.repeat(np.arange(n_inputs), n_faults),
                           "outcome": np.where(crit.ravel(), "sdc_critical", "masked")})
    faults = pd.DataFrame({"fault_id": np.arange(n_faults), "site": [f"layer{i % 3}:output" for i in range(n_faults)],
                           "bits": [[int(b)] for b in rng.integers(20, 31, n_faults)]})
    return trials.sample(frac=1.0, random_state=1), faults, prof, crit


def test_fault_breakdown_matches_groupby(campaign):
    trials, faults, prof, _ = campaign
    sets = [{"set": "a", "input_ids": list(range(0, 40))}, {"set": "b", "input_ids": list(range(100, 120))}]
    merged = trials.merge(faults.assign(bit=faults["bits"].map(lambda b: b[0])), on="fault_id")
    merged["crit"] = merged["outcome"] == "sdc_critical"
    for by in ("site", "bit"):
        table = fault_breakdown(trials, faults, sets, by)
        for s in sets:
            expected = merged[merged["input_id"].isin(s["input_ids"])].groupby(by)["crit"].agg(["sum", "size"])
            got = table[table["set"] == s["set"]].set_index(by)
            assert got["critical"].to_dict() == expected["sum"].to_dict()
            assert got["trials"].to_dict() == expected["size"].to_dict()
    no_bits = fault_breakdown(trials, faults.assign(bits=[[]] * len(faults)), sets, "bit")
    assert no_bits.empty


def test_class_breakdown_and_vulnerability(campaign):
    trials, _, prof, crit = campaign
    classes = class_breakdown(trials, prof)
    for row in classes.itertuples():
        rows = prof["pred"].to_numpy() == row._1
        assert row.critical == int(crit[rows].sum()) and row.inputs == int(rows.sum())
    v = vulnerability(trials, prof, ["margin"])
    np.testing.assert_allclose(v["v"], crit.mean(axis=1))
    lo, hi = binomtest(int(crit[7].sum()), crit.shape[1]).proportion_ci(method="exact")
    assert v.loc[7, "v_low"] == pytest.approx(lo) and v.loc[7, "v_high"] == pytest.approx(hi)


def test_analyse_sets_adds_exact_holm_and_clopper_pearson(campaign):
    trials, _, prof, crit = campaign
    low = tuple(prof.nsmallest(20, "margin")["input_id"])
    sets = [InputSet("random", "random", tuple(range(200, 220))), InputSet("low", "lowest", low),
            InputSet("same", "random", tuple(range(220, 240)))]
    rows = {r["set"]: r for r in analyse_sets(trials, sets, n_boot=200)}
    a, b = crit[list(low)].mean(axis=0), crit[200:220].mean(axis=0)
    p_low = binomtest(int((a > b).sum()), int((a != b).sum())).pvalue
    assert rows["low"]["p_exact"] == pytest.approx(p_low) and rows["low"]["faults_higher"] == int((a > b).sum())
    p_same = rows["same"]["p_exact"]
    first = min(1.0, 2 * min(p_low, p_same))  # Holm by hand for two p-values
    holm = {p_low: first if p_low <= p_same else min(1.0, max(first, p_low))}
    assert rows["low"]["p_exact_holm"] == pytest.approx(holm[p_low])
    assert rows["low"]["p_exact_holm"] < 0.01
    k, n = int(crit[list(low)].sum()), crit[list(low)].size
    cp = binomtest(k, n).proportion_ci(method="exact")
    assert (rows["low"]["cp_low"], rows["low"]["cp_high"]) == pytest.approx((cp.low, cp.high))
    assert rows["low"]["sdc_rate"] == rows["low"]["rate"] == k / n  # only masked and critical outcomes here
    assert (rows["low"]["sdc_cp_low"], rows["low"]["sdc_cp_high"]) == pytest.approx((cp.low, cp.high))


def test_metric_quality_orders_scores_and_learned_is_held_out(campaign):
    trials, _, prof, _ = campaign
    table = metric_quality(trials, prof, ["margin", "entropy", "energy"], k=20, n_boot=50)
    assert list(table["spearman"]) == sorted(table["spearman"], reverse=True)
    assert table.set_index("score").loc["margin", "auroc"] > 0.6
    verdict = learned_vs_scores(trials, prof, ["margin", "entropy", "energy"], k=20, n_boot=50)
    assert verdict["train_inputs"] + verdict["test_inputs"] == 300 and verdict["train_faults"] == 30
    assert set(verdict["table"]["score"]) == {"learned", "margin", "entropy", "energy"}
    assert verdict["difference_low"] <= verdict["difference_high"]
    assert verdict["beats_best"] == (verdict["difference_low"] > 0)
