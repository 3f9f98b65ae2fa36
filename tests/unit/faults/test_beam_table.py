from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from faultsift.errors import ConfigError
from faultsift.faults.beam_table import LEVELS, BeamRow, beam_row, beam_table


REFERENCE = Path(__file__).parents[4] / "shared" / "reference" / "beam_fault_model.csv"


def test_shipped_table_has_the_study_layout():
    shipped = beam_table()
    assert len(shipped) == 24
    assert set(shipped.groupby(["model", "microop"]).size()) == {4}
    if REFERENCE.exists():  # the copy next to the sources of this project
        pd.testing.assert_frame_equal(shipped, pd.read_csv(REFERENCE))


def test_row_lookup_and_errors():
    row = beam_row("swin_base_patch4_window7_224", "WindowAttention", "fp32", 1e-4)
    table = beam_table()
    raw = table[(table.model == row.model) & (table.microop == "WindowAttention") & (table.precision == "fp32")
                & np.isclose(table.diff_threshold, 1e-4)].iloc[0]
    assert row.altered_fraction == raw["#alt_val"] / raw["#total"]
    assert row.quantiles[0] == raw["Q0%"] and row.quantiles[-1] == raw["Q100%"]
    with pytest.raises(ConfigError, match="Did you mean `Attention`"):
        beam_row("vit_base_patch16_224", "Atention")
    with pytest.raises(ConfigError, match="threshold"):
        beam_row("vit_base_patch16_224", "Mlp", threshold=0.5)


def test_body_samples_follow_the_quantiles_within_q5_q95():
    row = beam_row("vit_base_patch16_224", "Attention")
    r = row.sample(np.random.default_rng(0), 200_000, "body")
    assert r.min() >= row.quantiles[1] and r.max() <= row.quantiles[19]
    # r is uniform in u over [0.05, 0.95]: its empirical quantile at level p maps back to Q(p)
    for i in (5, 10, 15):  # 25%, 50%, 75%
        empirical = np.quantile(r, (LEVELS[i] - 0.05) / 0.9)
        assert empirical == pytest.approx(row.quantiles[i], abs=0.02 * abs(row.quantiles[19] - row.quantiles[1]))


def test_full_variant_reaches_tails_and_special_values():
    row = BeamRow("m", "op", "fp32", 1e-4, 1000, 100, 10, 5, 20, tuple(np.linspace(-1e6, 1e6, 21)))
    r = row.sample(np.random.default_rng(1), 200_000, "full")
    assert np.mean(r == np.inf) == pytest.approx(0.10, abs=0.005)
    assert np.mean(r == -np.inf) == pytest.approx(0.05, abs=0.005)
    assert np.mean(np.isnan(r)) == pytest.approx(0.20, abs=0.005)
    finite = r[np.isfinite(r)]
    assert finite.min() < -0.99e6 * 0.99 and finite.max() > 0.99e6 * 0.99
    with pytest.raises(ConfigError, match="beam variant"):
        row.sample(np.random.default_rng(0), 1, "tails")
