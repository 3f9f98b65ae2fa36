"""Contract of every registered strategy (parametrized over the registry)."""

import json

import numpy as np
import pandas as pd
import pytest

from faultsift.errors import ConfigError
from faultsift.profile import profile
from faultsift.selection.strategies import STRATEGIES, InputSet, get_strategy


@pytest.fixture(scope="module")
def cnn_profile(zoo_models, hard_pool):
    return profile(zoo_models["digits-cnn"], hard_pool)


def _kwargs(name: str, prof: pd.DataFrame) -> dict:
    """Extra constructor arguments a strategy needs (screening rates for half the inputs)."""
    if name in ("fi-ranked", "learned"):
        ids = prof["input_id"].to_numpy()
        screened = ids if name == "fi-ranked" else ids[ids % 2 == 0]
        rates = pd.Series(np.random.default_rng(0).random(len(screened)) * (prof.set_index("input_id").loc[screened, "margin"] < 0.3),
                          index=screened)
        return {"screening": rates}
    return {}


@pytest.mark.parametrize("name", STRATEGIES.names())
@pytest.mark.parametrize("only_correct", [True, False])
def test_every_strategy_contract(name, only_correct, cnn_profile):
    strategy = get_strategy(name, only_correct=only_correct, **_kwargs(name, cnn_profile))
    chosen = strategy.select(cnn_profile, 24, seed=7)
    assert isinstance(chosen, InputSet) and chosen.strategy == name
    assert len(chosen.input_ids) == 24 == len(set(chosen.input_ids))
    assert set(chosen.input_ids) <= set(cnn_profile["input_id"])
    if only_correct:
        assert cnn_profile.set_index("input_id").loc[list(chosen.input_ids), "correct"].all()
    assert chosen == get_strategy(name, only_correct=only_correct, **_kwargs(name, cnn_profile)).select(cnn_profile, 24, seed=7)
    assert InputSet.from_dict(json.loads(json.dumps(chosen.to_dict()))) == chosen
    pool = int(cnn_profile["correct"].sum()) if only_correct else len(cnn_profile)
    with pytest.raises(ConfigError, match=rf"Expected `k` in \[1, {pool}\]"):
        strategy.select(cnn_profile, pool + 1)
