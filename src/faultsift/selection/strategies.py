"""Input-selection strategies: ``select(profile, k, seed) -> InputSet``.

Example::

    low = get_strategy("low-confidence").select(prof, k=32, seed=0)
    low.input_ids[:3]
"""

from __future__ import annotations

import json
from pathlib import Path

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from faultsift.errors import ConfigError
from faultsift.registry import Registry
from faultsift.selection.scores import SCORES, logit_score_names, profile_scores


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


class _ByScore(Strategy):
    """Shared part of the strategies that rank by a registered score."""

    def __init__(self, score: str = "margin", only_correct: bool = True):
        super().__init__(only_correct)
        SCORES.get(score)  # unknown names fail here, with suggestions
        self.score = score

    def scored(self, profile: pd.DataFrame, k: int) -> pd.DataFrame:
        pool = self.candidates(profile, k)
        return pool.assign(_score=profile_scores(pool, [self.score])[self.score].to_numpy())


@STRATEGIES.register("lowest")
class Lowest(_ByScore):
    """The ``k`` inputs with the smallest ``score`` (ties: lowest input id)."""

    name = "lowest"
    ascending = True

    def select(self, profile: pd.DataFrame, k: int, seed: int = 0) -> InputSet:
        ranked = self.scored(profile, k).sort_values(["_score", "input_id"], ascending=[self.ascending, True],
                                                    kind="stable")
        return self._make(ranked["input_id"].to_numpy()[:k], score=self.score)


@STRATEGIES.register("highest")
class Highest(Lowest):
    """The ``k`` inputs with the largest ``score``."""

    name = "highest"
    ascending = False


@STRATEGIES.register("low-confidence")
class LowConfidence(Lowest):
    """Smallest margin (top-1 minus top-2 probability) among correctly classified inputs (the study's)."""

    name = "low-confidence"

    def __init__(self, only_correct: bool = True):
        super().__init__("margin", only_correct)


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


@STRATEGIES.register("class-balanced")
class ClassBalanced(_ByScore):
    """Lowest ``score`` per predicted class, in turns: every class's lowest, then every second lowest..."""

    name = "class-balanced"

    def select(self, profile: pd.DataFrame, k: int, seed: int = 0) -> InputSet:
        pool = self.scored(profile, k).sort_values(["_score", "input_id"], kind="stable")
        pool = pool.assign(_turn=pool.groupby("pred", sort=False).cumcount())
        ranked = pool.sort_values(["_turn", "_score", "input_id"], kind="stable")
        return self._make(ranked["input_id"].to_numpy()[:k], score=self.score)


@STRATEGIES.register("stratified")
class Stratified(_ByScore):
    """Equal-count quantile bins of ``score``; ``k`` split evenly over the bins, drawn at random within.

    ``params`` records each chosen input's stratum and the stratum sizes, so the inclusion
    probability of an input of stratum ``b`` is ``chosen_b / size_b`` (see
    :func:`faultsift.stats.stratified_rate`).
    """

    name = "stratified"

    def __init__(self, score: str = "margin", bins: int = 4, only_correct: bool = True):
        super().__init__(score, only_correct)
        if not isinstance(bins, (int, np.integer)) or bins < 1:
            raise ConfigError(f"Expected `bins` >= 1, got {bins}.")
        self.bins = int(bins)

    def select(self, profile: pd.DataFrame, k: int, seed: int = 0) -> InputSet:
        pool = self.scored(profile, k)
        if k < self.bins:
            raise ConfigError(f"Expected `k` >= `bins` ({self.bins}) for a stratified set, got {k}.")
        order = pool.sort_values(["_score", "input_id"], kind="stable")["input_id"].to_numpy()
        strata = np.array_split(order, self.bins)
        quota = np.full(self.bins, k // self.bins) + (np.arange(self.bins) < k % self.bins)
        rng = np.random.default_rng(seed)
        chosen, stratum_of = [], []
        for b, (members, q) in enumerate(zip(strata, quota)):
            picked = np.sort(rng.choice(members, size=min(int(q), len(members)), replace=False))
            chosen += picked.tolist()
            stratum_of += [b] * len(picked)
        return self._make(chosen, score=self.score, seed=seed, bins=self.bins, stratum_of=stratum_of,
                          stratum_sizes=[len(m) for m in strata], population=len(pool))


@STRATEGIES.register("learned")
class Learned(Strategy):
    """Rank unscreened inputs by a model fitted on a screening campaign's per-input rates.

    ``screening`` maps input id -> critical rate (the screened inputs are the training set); the
    features are ``features`` scores (default: every logit score). The chosen inputs are the ``k``
    unscreened candidates with the highest predicted rate.
    """

    name = "learned"

    def __init__(self, screening: pd.Series | None = None, features=None, only_correct: bool = True):
        super().__init__(only_correct)
        if screening is None:
            raise ConfigError("Strategy `learned` needs screening results; pass a screening campaign's per-input rates.")
        self.screening = screening
        self.features = list(features or logit_score_names())

    def select(self, profile: pd.DataFrame, k: int, seed: int = 0) -> InputSet:
        pool = self.candidates(profile, k)
        screened = pool["input_id"].isin(self.screening.index)
        train, rest = pool[screened], pool[~screened]
        if len(train) < 2 or len(rest) < k:
            raise ConfigError(f"Expected at least 2 screened and `k` ({k}) unscreened candidates, "
                              f"got {len(train)} and {len(rest)}.")
        model = fit_vulnerability_model(profile_scores(train, self.features),
                                        self.screening.loc[train["input_id"]].to_numpy(), seed)
        predicted = model.predict(profile_scores(rest, self.features))
        ranked = rest.assign(_pred=predicted).sort_values(["_pred", "input_id"], ascending=[False, True],
                                                          kind="stable")
        return self._make(ranked["input_id"].to_numpy()[:k], features=self.features, seed=seed,
                          trained_on=len(train))


def fit_vulnerability_model(features: pd.DataFrame, rates, seed: int = 0):
    """A small gradient-boosted regressor of per-input critical rate on scores (scikit-learn).

    >>> m = fit_vulnerability_model(pd.DataFrame({"margin": [0.0, 0.5, 1.0]}), [0.3, 0.1, 0.0])
    >>> bool(m.predict(pd.DataFrame({"margin": [0.0]}))[0] > m.predict(pd.DataFrame({"margin": [1.0]}))[0])
    True
    """
    from sklearn.ensemble import GradientBoostingRegressor

    model = GradientBoostingRegressor(n_estimators=100, max_depth=2, learning_rate=0.05, random_state=seed)
    return model.fit(features, np.asarray(rates, dtype=np.float64))


def get_strategy(name: str, **kwargs) -> Strategy:
    """Instantiate a registered strategy by name; an option it does not take is a ConfigError."""
    import inspect

    cls = STRATEGIES.get(name)
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigError(f"Strategy `{name}` does not take `{unknown[0]}`; it takes: {', '.join(accepted) or 'nothing'}.")
    return cls(**kwargs)


def read_sets_file(path: Path) -> list[dict]:
    """The sets of a JSON sets file written by ``faultsift select`` (one dict per set)."""
    try:
        sets = json.loads(Path(path).read_text())
        assert isinstance(sets, list) and all({"name", "strategy", "input_ids"} <= set(s) for s in sets)
    except (OSError, ValueError, AssertionError, TypeError):
        raise ConfigError(f"{path} is not a sets file from `faultsift select`; remove it or choose another `--out`.") from None
    return sets
