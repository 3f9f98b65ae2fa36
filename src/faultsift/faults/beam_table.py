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
from pathlib import Path

import numpy as np
import pandas as pd

from faultsift.errors import ConfigError, LoadError
from faultsift.registry import unknown_name_message

LEVELS = np.linspace(0.0, 1.0, 21)
VARIANTS = ("body", "full")
QUANTILE_COLUMNS = tuple(f"Q{int(round(p * 100))}%" for p in LEVELS)
COLUMNS = ("model", "microop", "precision", "diff_threshold", "#total", "#alt_val", "#pos_inf", "#neg_inf",
           "#nan") + QUANTILE_COLUMNS


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


@lru_cache(maxsize=8)
def beam_table(path: str | None = None) -> pd.DataFrame:
    """The table shipped with the package, or a user's table of the same layout at ``path``."""
    if path is None:
        with resources.files("faultsift.faults").joinpath("data/beam_fault_model.csv").open() as handle:
            return pd.read_csv(handle)
    if not Path(path).is_file():
        raise LoadError(f"Beam table {path} does not exist; give a CSV with columns {', '.join(COLUMNS)}.")
    try:
        table = pd.read_csv(path)
    except (ValueError, OSError) as exc:
        raise LoadError(f"Could not read beam table {path} ({type(exc).__name__}: {exc}).") from None
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ConfigError(f"Beam table {path} lacks columns {', '.join(missing)}; expected {', '.join(COLUMNS)}.")
    quantiles = table[list(QUANTILE_COLUMNS)].to_numpy(dtype=float)
    if len(table) == 0 or (np.diff(quantiles, axis=1) < 0).any() or (table["#alt_val"] > table["#total"]).any():
        raise ConfigError(f"Expected beam table {path} to have rows with non-decreasing Q0%..Q100% and "
                          f"#alt_val <= #total.")
    return table


def beam_row(model: str, microop: str, precision: str = "fp32", threshold: float = 1e-4,
             path: str | None = None) -> BeamRow:
    """The table row for one model, micro-op, precision and threshold (of the table at ``path``)."""
    table = beam_table(path)
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
    quantiles = tuple(float(r[c]) for c in QUANTILE_COLUMNS)
    return BeamRow(r["model"], r["microop"], r["precision"], float(r["diff_threshold"]), int(r["#total"]),
                   int(r["#alt_val"]), int(r["#pos_inf"]), int(r["#neg_inf"]), int(r["#nan"]), quantiles)
