"""The beam-measured relative-error table (``data/beam_fault_model.csv``).

Each row: model, micro-op, precision and detection threshold; how many output elements a
faulty micro-op alters (``#alt_val / #total``), how many became +inf/-inf/NaN, and the
quantiles Q0..Q100 (5% steps) of the relative error of altered elements.

Example::

    row = beam_row("vit_base_patch16_224", "Mlp")
    row.sample(np.random.default_rng(0), 3, variant="body")   # relative errors within Q5..Q95
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
import pandas as pd

from faultsift.errors import ConfigError
from faultsift.registry import unknown_name_message

LEVELS = np.linspace(0.0, 1.0, 21)
VARIANTS = ("body", "full")


@dataclass(frozen=True)
class BeamRow:
    model: str
    microop: str
    precision: str
    threshold: float
    total: int
    altered: int
    pos_inf: int
    neg_inf: int
    nan: int
    quantiles: tuple[float, ...]

    @property
    def altered_fraction(self) -> float:
        """Fraction of a faulty micro-op's output elements that the beam altered."""
        return self.altered / self.total

    def sample(self, rng: np.random.Generator, n: int, variant: str) -> np.ndarray:
        """``n`` relative errors r by inverse-CDF interpolation over the quantiles.

        ``body``: r within Q5..Q95 (as the study's own injector). ``full``: Q0..Q100 tails, and
        each element becomes +inf/-inf/NaN (encoded as r = +inf/-inf/nan) with the table's
        fractions of altered elements.
        """
        if variant not in VARIANTS:
            raise ConfigError(unknown_name_message("beam variant", variant, list(VARIANTS)))
        low, high = (0.05, 0.95) if variant == "body" else (0.0, 1.0)
        r = np.interp(rng.uniform(low, high, size=n), LEVELS, self.quantiles)
        if variant == "full":
            special = rng.random(n) * self.altered
            r[special < self.pos_inf] = np.inf
            r[(special >= self.pos_inf) & (special < self.pos_inf + self.neg_inf)] = -np.inf
            nan_start = self.pos_inf + self.neg_inf
            r[(special >= nan_start) & (special < nan_start + self.nan)] = np.nan
        return r


@lru_cache(maxsize=1)
def beam_table() -> pd.DataFrame:
    """The whole table as shipped with the package."""
    with resources.files("faultsift.faults").joinpath("data/beam_fault_model.csv").open() as handle:
        return pd.read_csv(handle)


def beam_row(model: str, microop: str, precision: str = "fp32", threshold: float = 1e-4) -> BeamRow:
    """The table row for one model, micro-op, precision and threshold."""
    table = beam_table()
    for column, value, kind in (("model", model, "beam-table model"), ("microop", microop, "beam-table micro-op"),
                                ("precision", precision, "beam-table precision")):
        choices = sorted(table[column].unique())
        if value not in choices:
            raise ConfigError(unknown_name_message(kind, value, choices))
        table = table[table[column] == value]
    match = table[np.isclose(table["diff_threshold"], threshold)]
    if match.empty:
        raise ConfigError(f"Expected `threshold` in {sorted(table['diff_threshold'].unique())}, got {threshold}.")
    r = match.iloc[0]
    quantiles = tuple(float(r[f"Q{int(p)}%"]) for p in LEVELS * 100)
    return BeamRow(r["model"], r["microop"], r["precision"], float(r["diff_threshold"]), int(r["#total"]),
                   int(r["#alt_val"]), int(r["#pos_inf"]), int(r["#neg_inf"]), int(r["#nan"]), quantiles)
