"""Scores: each compared with an independent computation (numpy/scipy, per-sample autograd)."""

import numpy as np
import pytest
import torch
from scipy.special import logsumexp, softmax
from scipy.stats import entropy as scipy_entropy
from torch import nn
from torch.nn import functional as F

from faultsift.errors import ConfigError
from faultsift.profile import profile_logits
from faultsift.selection.scores import SCORES, mc_dropout_probs, profile_scores, score_frame


def dropout_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 10)).eval()


@pytest.fixture(scope="module")
def logits():
    return torch.randn(200, 10, generator=torch.Generator().manual_seed(0)) * 4


@pytest.fixture(scope="module")
def few_inputs(hard_pool):
    return hard_pool.inputs[:24]


def test_logit_scores_match_numpy(logits):
    z = logits.numpy().astype(np.float64)
    p = softmax(z, axis=1)
    ps, zs = np.sort(p, axis=1)[:, ::-1], np.sort(z, axis=1)[:, ::-1]
    expected = {"margin": ps[:, 0] - ps[:, 1], "max_softmax": ps[:, 0], "entropy": scipy_entropy(p, axis=1),
                "logit_margin": zs[:, 0] - zs[:, 1], "gini": 1 - (p ** 2).sum(axis=1), "energy": -logsumexp(z, axis=1)}
    frame = score_frame(list(expected), logits=logits)
    for name, values in expected.items():
        np.testing.assert_allclose(frame[name], values, rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("name", SCORES.names())
def test_every_score_contract(name, logits, few_inputs):
    """Shape, finiteness, determinism and orientation for every registered score."""
    score = SCORES.get(name)
    assert score.needs in ("logits", "model") and score.vulnerable in ("low", "high")
    kwargs = {"logits": logits} if score.needs == "logits" else {"model": dropout_net(), "inputs": few_inputs}
    values = score.compute(**kwargs, seed=3)
    n = len(logits) if score.needs == "logits" else len(few_inputs)
    assert values.shape == (n,) and values.dtype == torch.float32 and torch.isfinite(values).all()
    assert torch.equal(values, score.compute(**kwargs, seed=3))
    if score.needs == "logits":  # a confident input must rank as less exposed than a near-tie
        confident_and_tie = torch.tensor([[12.0] + [0.0] * 9, [1.0, 0.99] + [0.0] * 8])
        oriented = score.oriented(score.compute(logits=confident_and_tie))
        assert oriented[1] > oriented[0]
    else:
        with pytest.raises(ConfigError, match="needs the model"):
            score.compute(logits=logits)


@pytest.mark.parametrize("model_name", ["digits-cnn", "digits-vit"])
def test_grad_norm_matches_per_sample_autograd(model_name, zoo_models, few_inputs):
    model = zoo_models[model_name].eval()
    head = model.head if isinstance(model.head, nn.Linear) else model.head.fc
    expected = []
    for x in few_inputs[:8]:
        out = model(x[None])
        loss = F.cross_entropy(out, out.argmax(1))
        grads = torch.autograd.grad(loss, [head.weight, head.bias])
        expected.append(torch.sqrt(sum(g.square().sum() for g in grads)).item())
    got = SCORES.get("grad_norm").compute(model=model, inputs=few_inputs[:8])
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-6)


def test_input_grad_norm_matches_per_sample_autograd(zoo_models, few_inputs):
    model = zoo_models["digits-cnn"].eval()
    expected = []
    for x in few_inputs[:8]:
        x = x[None].clone().requires_grad_(True)
        out = model(x)
        (g,) = torch.autograd.grad(F.cross_entropy(out, out.argmax(1)), x)
        expected.append(g.norm().item())
    got = SCORES.get("input_grad_norm").compute(model=model, inputs=few_inputs[:8], batch_size=3)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-7)


def test_mc_dropout_scores(few_inputs):
    model = dropout_net()
    before = torch.random.get_rng_state()
    probs = mc_dropout_probs(model, few_inputs, seed=5).numpy().astype(np.float64)
    assert torch.equal(before, torch.random.get_rng_state())  # the caller's RNG is untouched
    assert not any(m.training for m in model.modules())
    assert not np.allclose(probs[0], probs[1])  # the passes differ: dropout was active
    mean = probs.mean(axis=0)
    h_mean = scipy_entropy(mean, axis=1)
    got_h = SCORES.get("mc_entropy").compute(model=model, inputs=few_inputs, seed=5).numpy()
    got_mi = SCORES.get("mc_mutual_info").compute(model=model, inputs=few_inputs, seed=5).numpy()
    np.testing.assert_allclose(got_h, h_mean, rtol=1e-4)
    np.testing.assert_allclose(got_mi, h_mean - scipy_entropy(probs, axis=2).mean(axis=0), atol=1e-5)
    assert (got_mi > -1e-6).all()
    other = SCORES.get("mc_entropy").compute(model=model, inputs=few_inputs, seed=6).numpy()
    assert not np.allclose(other, got_h)


def test_mc_dropout_without_dropout_is_a_clear_error(zoo_models, few_inputs):
    with pytest.raises(ConfigError, match="need a dropout layer with p > 0, and VisionTransformer has none"):
        SCORES.get("mc_entropy").compute(model=zoo_models["digits-vit"], inputs=few_inputs)


def test_profile_scores_from_logits_and_missing_model_scores(logits):
    prof = profile_logits(logits, torch.zeros(len(logits), dtype=torch.long))
    frame = profile_scores(prof, ["margin", "gini"])
    np.testing.assert_allclose(frame["margin"], prof["margin"])
    np.testing.assert_allclose(frame["gini"], score_frame(["gini"], logits=logits)["gini"])
    with pytest.raises(ConfigError, match="no `grad_norm` column"):
        profile_scores(prof, ["grad_norm"])
