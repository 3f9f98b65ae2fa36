import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import softmax
from scipy.stats import entropy as scipy_entropy

from faultsift.errors import ConfigError, UnknownNameError
from faultsift.profile import profile, profile_logits, read_profile, write_profile
from faultsift.selection.strategies import get_strategy


@pytest.fixture(scope="module")
def vit_profile(zoo_models, hard_pool):
    return profile(zoo_models["digits-vit"], hard_pool)


def test_profile_columns_match_numpy(tmp_path):
    logits = torch.randn(50, 10, generator=torch.Generator().manual_seed(0)) * 3
    labels = torch.randint(0, 10, (50,), generator=torch.Generator().manual_seed(1))
    prof = profile_logits(logits, labels)
    p = softmax(logits.numpy().astype(np.float64), axis=1)
    top2 = np.sort(p, axis=1)[:, ::-1][:, :2]
    assert np.allclose(prof["margin"], top2[:, 0] - top2[:, 1], atol=1e-6)
    assert np.allclose(prof["max_softmax"], top2[:, 0], atol=1e-6)
    assert np.allclose(prof["entropy"], scipy_entropy(p, axis=1), atol=1e-5)
    assert np.array_equal(prof["correct"], p.argmax(1) == labels.numpy())
    write_profile(prof, tmp_path / "p.parquet")
    back = read_profile(tmp_path / "p.parquet")
    assert np.array_equal(np.stack(back["logits"]), logits.numpy())


def test_profile_of_a_zoo_model_matches_its_card(vit_profile):
    from faultsift.zoo.models import model_card

    assert len(vit_profile) == 2160
    assert vit_profile["correct"].mean() == pytest.approx(model_card("digits-vit")["hard_pool_accuracy"], abs=1e-4)


def test_low_and_high_confidence_are_the_extremes_among_correct(vit_profile):
    correct = vit_profile[vit_profile["correct"]]
    order = np.lexsort((correct["input_id"].to_numpy(), correct["margin"].to_numpy()))
    low = get_strategy("low-confidence").select(vit_profile, 32)
    high = get_strategy("high-confidence").select(vit_profile, 32)
    assert list(low.input_ids) == list(correct["input_id"].to_numpy()[order[:32]])
    margins = vit_profile.set_index("input_id")["margin"]
    assert margins[list(low.input_ids)].max() <= correct["margin"].nsmallest(33).iloc[-1]
    assert margins[list(high.input_ids)].min() >= correct["margin"].nlargest(32).iloc[-1]
    assert vit_profile.set_index("input_id").loc[list(high.input_ids), "correct"].all()


def test_random_is_seeded_and_from_the_whole_pool(vit_profile):
    a = get_strategy("random").select(vit_profile, 32, seed=0)
    assert a == get_strategy("random").select(vit_profile, 32, seed=0)
    assert a.input_ids != get_strategy("random").select(vit_profile, 32, seed=1).input_ids
    assert len(set(a.input_ids)) == 32
    draws = np.concatenate([get_strategy("random").select(vit_profile, 32, seed=s).input_ids for s in range(30)])
    assert not vit_profile.set_index("input_id").loc[draws, "correct"].all()  # incorrect inputs can be drawn


def test_fi_ranked_orders_by_rate_then_margin():
    prof = pd.DataFrame({"input_id": range(6), "margin": [0.5, 0.1, 0.3, 0.01, 0.2, 0.9],
                         "correct": [True, True, True, True, True, False]})
    rates = pd.Series([0.0, 0.2, 0.2, 0.0, 0.5, 0.9], index=range(6))
    chosen = get_strategy("fi-ranked", screening=rates).select(prof, 4)
    assert chosen.input_ids == (4, 1, 2, 3)  # 5 is incorrect; tie 1/2 by margin; tie 0/3 -> margin 0.01 first
    assert chosen.params["nonzero_screening_inputs"] == 3
    with pytest.raises(ConfigError, match="screening"):
        get_strategy("fi-ranked")


def test_bad_k_and_unknown_strategy(vit_profile):
    n_correct = int(vit_profile["correct"].sum())
    with pytest.raises(ConfigError, match=rf"Expected `k` in \[1, {n_correct}\] \(correctly classified inputs"):
        get_strategy("low-confidence").select(vit_profile, 5000)
    with pytest.raises(UnknownNameError, match="Did you mean `low-confidence`"):
        get_strategy("low-confidance")
