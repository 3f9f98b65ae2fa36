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


@pytest.mark.parametrize("model,microop,precision", [("vit_base_patch16_224", "Attention", "fp32"),
                                                     ("swin_base_patch4_window7_224", "WindowAttention", "fp16")])
def test_sampler_reproduces_every_table_quantile(model, microop, precision):
    """At every level p of the table, the share of samples below Q(p) is p (rescaled to Q5..Q95 for
    `body`). Tolerance: the DKW bound sqrt(ln(2/alpha) / 2n) with alpha = 1e-6, n = 100,000
    (0.0062): a correct sampler exceeds it with probability 1e-6, while reading a neighbouring
    quantile column would be off by 0.05."""
    row = beam_row(model, microop, precision)
    n, alpha = 100_000, 1e-6
    eps = np.sqrt(np.log(2 / alpha) / (2 * n))
    body = row.sample(np.random.default_rng(0), n, "body")
    for p, q in zip(LEVELS[1:-1], row.quantiles[1:-1]):
        expected = np.clip((p - 0.05) / 0.9, 0, 1)
        assert abs(np.mean(body <= q) - expected) <= eps
    full = row.sample(np.random.default_rng(1), n, "full")
    finite = full[np.isfinite(full)]
    special = (row.pos_inf + row.neg_inf + row.nan) / row.altered
    assert abs(1 - len(finite) / n - special) <= eps
    for p, q in zip(LEVELS, row.quantiles):
        assert abs(np.mean(finite <= q) - p) <= np.sqrt(np.log(2 / alpha) / (2 * len(finite)))
