"""Input-selection strategies: ``select(profile, k, seed) -> InputSet``.

Example::

    low = get_strategy("low-confidence").select(prof, k=32, seed=0)
    low.input_ids[:3]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from faultsift.errors import ConfigError
from faultsift.registry import Registry


@dataclass(frozen=True)
class InputSet:
    """A named list of dataset indices chosen by a strategy."""

    name: str
    strategy: str
    input_ids: tuple[int, ...]
    params: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "strategy": self.strategy, "input_ids": list(self.input_ids), "params": self.params}

    @classmethod
    def from_dict(cls, d: dict) -> "InputSet":
        return cls(d["name"], d["strategy"], tuple(int(i) for i in d["input_ids"]), dict(d.get("params", {})))


class Strategy(ABC):
    """One verb: choose ``k`` inputs from a profile."""

    name: str = ""

    def __init__(self, only_correct: bool = True):
        self.only_correct = only_correct

    def candidates(self, profile: pd.DataFrame, k: int) -> pd.DataFrame:
        """Eligible rows (correct ones only, if asked), checking that ``k`` fits."""
        pool = profile[profile["correct"]] if self.only_correct else profile
        what = "correctly classified inputs" if self.only_correct else "inputs"
        if not isinstance(k, (int, np.integer)) or k < 1 or k > len(pool):
            raise ConfigError(f"Expected `k` in [1, {len(pool)}] ({what} in the pool), got {k}.")
        return pool

    @abstractmethod
    def select(self, profile: pd.DataFrame, k: int, seed: int = 0) -> InputSet:
        """Choose ``k`` input ids from ``profile``."""

    def _make(self, ids, **params) -> InputSet:
        return InputSet(self.name, self.name, tuple(int(i) for i in ids), {"only_correct": self.only_correct, **params})


STRATEGIES: Registry[type[Strategy]] = Registry("strategy")


@STRATEGIES.register("random")
class RandomStrategy(Strategy):
    """Seeded sampling without replacement (from the whole pool by default, as in the study)."""

    name = "random"

    def __init__(self, only_correct: bool = False):
        super().__init__(only_correct)

    def select(self, profile: pd.DataFrame, k: int, seed: int = 0) -> InputSet:
        pool = self.candidates(profile, k)
        ids = np.random.default_rng(seed).choice(pool["input_id"].to_numpy(), size=k, replace=False)
        return self._make(np.sort(ids), seed=seed)


@STRATEGIES.register("low-confidence")
class LowConfidence(Strategy):
    """Smallest margin (top-1 minus top-2 probability) among correctly classified inputs."""

    name = "low-confidence"
    ascending = True

    def select(self, profile: pd.DataFrame, k: int, seed: int = 0) -> InputSet:
        pool = self.candidates(profile, k)
        ranked = pool.sort_values(["margin", "input_id"], ascending=[self.ascending, True], kind="stable")
        return self._make(ranked["input_id"].to_numpy()[:k], score="margin")


@STRATEGIES.register("high-confidence")
class HighConfidence(LowConfidence):
    """Largest margin among correctly classified inputs."""

    name = "high-confidence"
    ascending = False


@STRATEGIES.register("fi-ranked")
class FiRanked(Strategy):
    """Highest critical rate in a screening campaign; ties broken by the lowest margin.

    ``screening`` maps input id -> critical-SDC rate measured on a screening campaign run with
    a different seed from the evaluation campaign, so the evaluation is not biased.
    """

    name = "fi-ranked"

    def __init__(self, screening: pd.Series | None = None, only_correct: bool = True):
        super().__init__(only_correct)
        if screening is None:
            raise ConfigError("Strategy `fi-ranked` needs screening results; pass a screening campaign's per-input rates.")
        self.screening = screening

    def select(self, profile: pd.DataFrame, k: int, seed: int = 0) -> InputSet:
        pool = self.candidates(profile, k)
        pool = pool.assign(screen_rate=pool["input_id"].map(self.screening))
        if pool["screen_rate"].isna().any():
            missing = int(pool["screen_rate"].isna().sum())
            raise ConfigError(f"Expected screening results for every candidate input, got none for {missing}.")
        ranked = pool.sort_values(["screen_rate", "margin", "input_id"], ascending=[False, True, True], kind="stable")
        nonzero = int((pool["screen_rate"] > 0).sum())
        return self._make(ranked["input_id"].to_numpy()[:k], nonzero_screening_inputs=nonzero, screened_inputs=len(pool))


def get_strategy(name: str, **kwargs) -> Strategy:
    """Instantiate a registered strategy by name."""
    return STRATEGIES.get(name)(**kwargs)
