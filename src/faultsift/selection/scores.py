"""Per-input confidence scores, pure functions of logits [N, C] -> [N].

Example::

    margin(torch.tensor([[2.0, 1.0, 0.0]]))   # tensor([0.4223]) = p1 - p2
"""

from __future__ import annotations

from typing import Callable

import torch

from faultsift.registry import Registry

SCORES: Registry[Callable[[torch.Tensor], torch.Tensor]] = Registry("score")


@SCORES.register("margin")
def margin(logits: torch.Tensor) -> torch.Tensor:
    """Top-1 softmax probability minus top-2 (the study's confidence measure)."""
    top = logits.float().softmax(dim=1).topk(2, dim=1).values
    return top[:, 0] - top[:, 1]


@SCORES.register("max_softmax")
def max_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Largest softmax probability."""
    return logits.float().softmax(dim=1).max(dim=1).values


@SCORES.register("entropy")
def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy of the softmax distribution, in nats."""
    logp = logits.float().log_softmax(dim=1)
    return -(logp.exp() * logp).sum(dim=1)
