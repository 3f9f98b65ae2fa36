import numpy as np
import pandas as pd
import pytest

from faultsift.analysis import analyse_sets, outcome_matrix
from faultsift.engine.outcome import OUTCOMES
from faultsift.errors import ConfigError
from faultsift.selection.strategies import InputSet


def _trials(codes: dict[int, np.ndarray]) -> pd.DataFrame:
    rows = [(f, i, OUTCOMES[c]) for i, per_fault in codes.items() for f, c in enumerate(per_fault)]
    df = pd.DataFrame(rows, columns=["fault_id", "input_id", "outcome"])
    return df.sample(frac=1.0, random_state=0)  # row order must not matter


def test_per_set_counts_rates_and_ratio():
    rng = np.random.default_rng(0)
    n_faults = 400
    codes = {}
    for i in range(8):  # inputs 0-3: "random" set, rare criticals; 4-7: "low", frequent
        p_crit = 0.02 if i < 4 else 0.2
        codes[i] = rng.choice(4, size=n_faults, p=[0.5, 0.45 - p_crit, p_crit, 0.05])
    trials = _trials(codes)
    sets = [InputSet("random", "random", (0, 1, 2, 3)), InputSet("low-confidence", "low-confidence", (4, 5, 6, 7))]
    rows = {r["set"]: r for r in analyse_sets(trials, sets, n_boot=500, seed=0)}
    for name, ids in (("random", range(4)), ("low-confidence", range(4, 8))):
        block = np.stack([codes[i] for i in ids])
        assert rows[name]["trials"] == block.size
        assert rows[name]["critical"] == int((block == 2).sum())
        assert rows[name]["sdc"] == int(((block == 1) | (block == 2)).sum())
        assert rows[name]["due"] == int((block == 3).sum())
        assert rows[name]["rate"] == pytest.approx((block == 2).mean())
        assert rows[name]["ci_low"] < rows[name]["rate"] < rows[name]["ci_high"]
    assert rows["low-confidence"]["ratio_vs_random"] == pytest.approx(rows["low-confidence"]["rate"] / rows["random"]["rate"])
    assert rows["low-confidence"]["ratio_low"] > 1 and rows["low-confidence"]["significant"] is True
    assert rows["random"]["significant"] is None


def test_ratio_undefined_when_random_has_no_critical():
    codes = {0: np.zeros(50, int), 1: np.zeros(50, int), 2: np.full(50, 2), 3: np.zeros(50, int)}
    sets = [InputSet("random", "random", (0, 1)), InputSet("low-confidence", "low-confidence", (2, 3))]
    rows = {r["set"]: r for r in analyse_sets(_trials(codes), sets, n_boot=200)}
    assert np.isnan(rows["low-confidence"]["ratio_vs_random"]) and rows["random"]["ratio_vs_random"] is None
    assert rows["low-confidence"]["top_input_share"] == 1.0 and rows["low-confidence"]["top_input_id"] == 2


def test_missing_trials_are_refused():
    trials = _trials({0: np.zeros(5, int)})
    with pytest.raises(ConfigError, match="missing"):
        outcome_matrix(trials, [0, 1], range(5))
