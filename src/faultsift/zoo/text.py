"""A tiny built-in text classifier and the synthetic task it is trained on (the text path).

Task ``keywords``: sequences of 16 token ids over a vocabulary of 24; tokens 1..4 are keywords,
token 5 negates the keyword right after it, the others are filler. The label is the keyword
that occurs most often not negated (2..4 times, each other keyword fewer times); up to two
negated keywords are decoys. The model embeds tokens, runs two timm ``Block``s (``Attention``,
``Mlp``: the ViT micro-ops, so the same sites and beam rows apply) and classifies the mean
token. Its weights ship as safetensors; ``python -m faultsift.zoo.text`` retrains them
deterministically.

Example::

    tokens, labels = keyword_task(512, seed=1)      # int64 [512, 16], int64 [512]
    model = text_classifier()                        # shipped weights, eval mode
    # faultsift study --models py:faultsift.zoo.text:text_classifier --data tensors:tokens.pt --sites Attention,Block,Mlp
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from timm.models.vision_transformer import Block
from torch import nn

from faultsift.errors import LoadError

VOCAB, LENGTH, KEYWORDS = 24, 16, 4
NOT = KEYWORDS + 1  # a keyword right after this token does not count
WEIGHTS = Path(__file__).parent / "weights" / "text-keywords.safetensors"
TRAIN_SEED, POOL_SEED = 0, 1


def keyword_task(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` token sequences and their labels (the most frequent keyword not negated), seeded."""
    rng = np.random.default_rng(seed)
    tokens = np.empty((n, LENGTH), dtype=np.int64)
    labels = rng.integers(0, KEYWORDS, size=n)
    for row, label in enumerate(labels):
        top = rng.integers(2, 5)
        units = [[k + 1] for k in range(KEYWORDS) for _ in range(top if k == label else rng.integers(0, top))]
        decoys = rng.integers(0, min(2, (LENGTH - len(units)) // 2) + 1)
        units += [[NOT, int(k) + 1] for k in rng.integers(0, KEYWORDS, size=decoys)]
        units += [[int(t)] for t in rng.integers(NOT + 1, VOCAB, size=LENGTH - sum(map(len, units)))]
        tokens[row] = np.concatenate([units[i] for i in rng.permutation(len(units))])
    return torch.from_numpy(tokens), torch.from_numpy(labels).long()


class TextClassifier(nn.Module):
    """Token and position embeddings, two timm ViT blocks, mean pooling, a linear head."""

    def __init__(self, dim: int = 32, depth: int = 2, heads: int = 2):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, dim)
        self.pos = nn.Parameter(torch.zeros(1, LENGTH, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio=2.0) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, KEYWORDS)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.embed(tokens) + self.pos)
        return self.head(self.norm(x).mean(dim=1))


def text_classifier() -> nn.Module:
    """The built-in text model with its shipped weights (a ``py:`` factory)."""
    model = TextClassifier()
    try:
        model.load_state_dict(load_file(str(WEIGHTS)))
    except (OSError, RuntimeError, ValueError) as exc:
        raise LoadError(f"Text model weights {WEIGHTS} are missing or do not fit ({type(exc).__name__}); "
                        f"rebuild them with `python -m faultsift.zoo.text`.") from None
    return model.eval()


def write_keyword_pool(path: Path, n: int = 512, seed: int = POOL_SEED) -> Path:
    """Write an evaluation pool of the task as a ``tensors:`` file (``inputs``, ``labels``)."""
    tokens, labels = keyword_task(n, seed)
    torch.save({"inputs": tokens, "labels": labels}, Path(path))
    return Path(path)


def train_text_classifier(out: Path = WEIGHTS, epochs: int = 10, n: int = 2000) -> dict:
    """Train deterministically (AdamW, seed 0; about a minute on a CPU) and write the weights and a JSON card."""
    torch.manual_seed(TRAIN_SEED)
    model = TextClassifier()
    tokens, labels = keyword_task(n, TRAIN_SEED)
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    order = torch.Generator().manual_seed(TRAIN_SEED)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(n, generator=order).split(128):
            optim.zero_grad()
            nn.functional.cross_entropy(model(tokens[batch]), labels[batch]).backward()
            optim.step()
    model.eval()
    pool_tokens, pool_labels = keyword_task(512, POOL_SEED)
    with torch.inference_mode():
        accuracy = float((model(pool_tokens).argmax(1) == pool_labels).float().mean())
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out))
    card = {"task": "keywords", "epochs": epochs, "train_size": n, "seed": TRAIN_SEED, "pool_accuracy": round(accuracy, 4),
            "sha256": hashlib.sha256(Path(out).read_bytes()).hexdigest()}
    Path(out).with_suffix(".json").write_text(json.dumps(card, indent=1) + "\n")
    return card


if __name__ == "__main__":
    print(train_text_classifier())
