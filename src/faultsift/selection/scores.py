"""Per-input scores: from the golden logits alone, or from the model (backward or MC-dropout passes).

Each registered :class:`Score` knows what it needs (``logits`` or ``model``) and which end
marks the inputs likely to fail under faults (``vulnerable="low"``: small margins; ``"high"``:
large entropy). :meth:`Score.oriented` flips the sign so that larger always means "more
exposed", which is how metrics and strategies rank.

Example::

    margin(torch.tensor([[2.0, 1.0, 0.0]]))            # tensor([0.4205]) = p1 - p2
    SCORES.get("entropy").compute(logits=logits)        # one value per input
    score_frame(["margin", "grad_norm"], logits=logits, model=model, inputs=x)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from faultsift.errors import ConfigError
from faultsift.registry import Registry

MC_PASSES = 20
DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


@dataclass(frozen=True)
class Score:
    """A registered score: ``fn(logits)`` or ``fn(model, inputs, batch_size, seed)`` -> [N]."""

    name: str
    fn: Callable[..., torch.Tensor]
    needs: str  # "logits" or "model"
    vulnerable: str  # "low" or "high": the end of the score where inputs fail more often

    def compute(self, logits: torch.Tensor | None = None, model: nn.Module | None = None,
                inputs: torch.Tensor | None = None, batch_size: int = 256, seed: int = 0) -> torch.Tensor:
        """Score values [N] (float32, CPU); a model score needs ``model`` and ``inputs``."""
        if self.needs == "logits":
            if logits is None:
                raise ConfigError(f"Score `{self.name}` needs the golden logits; pass `logits`.")
            return self.fn(torch.as_tensor(logits)).float().cpu()
        if model is None or inputs is None:
            raise ConfigError(f"Score `{self.name}` needs the model and its inputs (a backward or MC-dropout pass).")
        return torch.cat([self.fn(model, inputs[i : i + batch_size], seed).float().cpu()
                          for i in range(0, len(inputs), batch_size)])

    def oriented(self, values):
        """Values ordered so that larger means more exposed (``-values`` for low-is-vulnerable)."""
        return -values if self.vulnerable == "low" else values


SCORES: Registry[Score] = Registry("score")


def _register(name: str, needs: str, vulnerable: str):
    def decorator(fn):
        SCORES.register(name)(Score(name, fn, needs, vulnerable))
        return fn

    return decorator


# ---------------------------------------------------------------- one forward pass (logits)


@_register("margin", "logits", "low")
def margin(logits: torch.Tensor) -> torch.Tensor:
    """Top-1 softmax probability minus top-2 (the study's confidence measure)."""
    top = logits.float().softmax(dim=1).topk(2, dim=1).values
    return top[:, 0] - top[:, 1]


@_register("max_softmax", "logits", "low")
def max_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Largest softmax probability."""
    return logits.float().softmax(dim=1).max(dim=1).values


@_register("entropy", "logits", "high")
def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy of the softmax distribution, in nats."""
    logp = logits.float().log_softmax(dim=1)
    return -(logp.exp() * logp).sum(dim=1)


@_register("logit_margin", "logits", "low")
def logit_margin(logits: torch.Tensor) -> torch.Tensor:
    """Top-1 logit minus top-2 logit (the gap a fault must close to change the class)."""
    top = logits.float().topk(2, dim=1).values
    return top[:, 0] - top[:, 1]


@_register("gini", "logits", "high")
def gini(logits: torch.Tensor) -> torch.Tensor:
    """Gini impurity ``1 - sum p^2`` of the softmax distribution."""
    return 1.0 - logits.float().softmax(dim=1).square().sum(dim=1)


@_register("energy", "logits", "high")
def energy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Energy ``-T logsumexp(z / T)`` (higher: less confident)."""
    return -temperature * torch.logsumexp(logits.float() / temperature, dim=1)


# ---------------------------------------------------------------- backward pass


def _last_linear_input(model: nn.Module, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, nn.Linear]:
    """Logits and the input of the last ``nn.Linear`` run, checked to be the model's output layer."""
    seen: list = []

    def hook(mod, args, out):
        seen.append((mod, args[0].detach(), out.detach()))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Linear)]
    try:
        with torch.no_grad():
            logits = model(inputs).float()
    finally:
        for h in handles:
            h.remove()
    if not seen or seen[-1][2].shape != logits.shape or not torch.allclose(seen[-1][2].float(), logits, atol=1e-5):
        raise ConfigError("Score `grad_norm` needs a model whose output is its last `nn.Linear`; use `input_grad_norm`.")
    module, h, _ = seen[-1]
    return logits, h.reshape(len(inputs), -1).float(), module


def grad_norm(model: nn.Module, inputs: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Norm of the gradient of the cross-entropy to the predicted class w.r.t. the last layer.

    For the output layer ``z = W h + b`` that gradient is ``(p - e_pred) h^T`` (and ``p - e_pred``
    for the bias), so its Frobenius norm is ``|p - e_pred| * sqrt(|h|^2 + 1)``.
    """
    model.eval()
    logits, h, module = _last_linear_input(model, inputs)
    p = logits.softmax(dim=1)
    residual = p - F.one_hot(logits.argmax(dim=1), logits.shape[1]).float()
    squared = h.square().sum(dim=1) + (1.0 if module.bias is not None else 0.0)
    return residual.norm(dim=1) * squared.sqrt()


def input_grad_norm(model: nn.Module, inputs: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """L2 norm of the gradient of the cross-entropy to the predicted class w.r.t. the input."""
    model.eval()
    with torch.inference_mode(False), torch.enable_grad():
        x = inputs.detach().clone().requires_grad_(True)
        logits = model(x).float()
        loss = F.cross_entropy(logits, logits.argmax(dim=1).detach(), reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad.reshape(len(inputs), -1).norm(dim=1)


SCORES.register("grad_norm")(Score("grad_norm", grad_norm, "model", "high"))
SCORES.register("input_grad_norm")(Score("input_grad_norm", input_grad_norm, "model", "high"))


# ---------------------------------------------------------------- MC dropout


def mc_dropout_probs(model: nn.Module, inputs: torch.Tensor, seed: int = 0, passes: int = MC_PASSES) -> torch.Tensor:
    """Softmax outputs [passes, N, C] with only the dropout layers in training mode.

    The dropout masks come from a forked RNG seeded with ``seed``; the caller's RNG state is
    untouched. A model without a dropout layer of ``p > 0`` gets a ConfigError.
    """
    dropouts = [m for m in model.modules() if isinstance(m, DROPOUT_TYPES) and m.p > 0]
    if not dropouts:
        raise ConfigError(f"MC-dropout scores need a dropout layer with p > 0, and {type(model).__name__} has none; "
                          "choose another score (see `faultsift list scores`).")
    model.eval()
    try:
        for m in dropouts:
            m.train()
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            return torch.stack([model(inputs).float().softmax(dim=1) for _ in range(passes)])
    finally:
        model.eval()


def _entropy_of(p: torch.Tensor) -> torch.Tensor:
    return -(p * p.clamp_min(1e-30).log()).sum(dim=-1)


def mc_entropy(model: nn.Module, inputs: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Entropy of the mean MC-dropout softmax (predictive entropy, nats)."""
    return _entropy_of(mc_dropout_probs(model, inputs, seed).mean(dim=0))


def mc_mutual_info(model: nn.Module, inputs: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Mutual information between prediction and dropout mask (BALD), nats."""
    probs = mc_dropout_probs(model, inputs, seed)
    return _entropy_of(probs.mean(dim=0)) - _entropy_of(probs).mean(dim=0)


SCORES.register("mc_entropy")(Score("mc_entropy", mc_entropy, "model", "high"))
SCORES.register("mc_mutual_info")(Score("mc_mutual_info", mc_mutual_info, "model", "high"))


# ---------------------------------------------------------------- tables of scores


def logit_score_names() -> list[str]:
    """Names of the scores computed from the golden logits alone."""
    return [n for n in SCORES.names() if SCORES.get(n).needs == "logits"]


def score_frame(names, logits: torch.Tensor | None = None, model: nn.Module | None = None,
                inputs: torch.Tensor | None = None, batch_size: int = 256, seed: int = 0) -> pd.DataFrame:
    """One column per score name, one row per input.

    >>> score_frame(["margin", "gini"], logits=torch.tensor([[2.0, 1.0, 0.0]])).round(3).values.tolist()
    [[0.421, 0.489]]
    """
    columns = {}
    for name in names:
        values = SCORES.get(name).compute(logits, model, inputs, batch_size, seed)
        columns[name] = values.numpy().astype(np.float64)
    return pd.DataFrame(columns)


def profile_scores(profile: pd.DataFrame, names) -> pd.DataFrame:
    """Score columns for a profile: stored columns, or computed from its ``logits`` column."""
    out = {}
    logits = None
    for name in names:
        score = SCORES.get(name)
        if name in profile.columns:
            out[name] = profile[name].to_numpy(np.float64)
        elif score.needs == "logits" and "logits" in profile.columns:
            if logits is None:
                logits = torch.from_numpy(np.stack(profile["logits"].to_numpy()).astype(np.float32))
            out[name] = score.compute(logits=logits).numpy().astype(np.float64)
        else:
            raise ConfigError(f"The profile has no `{name}` column; add it with `add_model_scores` "
                              f"(a `{score.needs}` score needs the model).")
    return pd.DataFrame(out, index=profile.index)


def add_model_scores(profile: pd.DataFrame, names, model: nn.Module, inputs: torch.Tensor,
                     batch_size: int = 256, seed: int = 0) -> pd.DataFrame:
    """``profile`` with one more column per model score (``inputs`` indexed by ``input_id``)."""
    ids = torch.from_numpy(profile["input_id"].to_numpy(np.int64).copy())
    frame = score_frame(names, model=model, inputs=inputs[ids], batch_size=batch_size, seed=seed)
    return profile.assign(**{n: frame[n].to_numpy() for n in names})
