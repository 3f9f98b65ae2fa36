"""Deterministic training of the built-in models (``faultsift zoo train``).

Example::

    card = train_zoo_model("digits-cnn", epochs=60)   # writes weights/digits-cnn.safetensors
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from faultsift.zoo.data import digits_split, hard_pool
from faultsift.zoo.models import ZOO_MODELS

log = logging.getLogger(__name__)

TRAIN_SEED = 0
EPOCHS = 100
BATCH_SIZE = 64
LEARNING_RATE = 2e-3
WEIGHT_DECAY = 0.05
AUGMENT_NOISE_STD = 0.1


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random one-pixel shifts and mild noise, so the models see some variation."""
    shifts = torch.randint(-1, 2, (2,), generator=generator).tolist()
    x = torch.roll(x, shifts=shifts, dims=(2, 3))
    return (x + AUGMENT_NOISE_STD * 2 * torch.randn(x.shape, generator=generator)).clamp(-1.0, 1.0)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of ``model`` in eval mode."""
    model.eval()
    return float((model(x).argmax(dim=1) == y).float().mean())


def train_zoo_model(name: str, out_dir: Path | None = None, epochs: int = EPOCHS, seed: int = TRAIN_SEED) -> dict:
    """Train one built-in model from scratch, deterministically, and save weights + card."""
    entry = ZOO_MODELS.get(name)
    out_dir = Path(out_dir) if out_dir is not None else entry.weights_path.parent
    x_train, y_train = digits_split("train")
    x_test, y_test = digits_split("test")
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # timm initialises weights from the global generator
        model = entry.build()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    steps_per_epoch = -(-len(x_train) // BATCH_SIZE)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, LEARNING_RATE, total_steps=epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        for start in range(0, len(order), BATCH_SIZE):
            idx = order[start : start + BATCH_SIZE]
            loss = loss_fn(model(_augment(x_train[idx], generator)), y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        log.info("%s epoch %d loss %.4f", name, epoch, loss.item())
    model.eval()
    hx, hy = hard_pool()
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    card = {
        "model": name,
        "seed": seed,
        "epochs": epochs,
        "train_size": len(x_train),
        "test_accuracy": round(accuracy(model, x_test, y_test), 4),
        "hard_pool_accuracy": round(accuracy(model, hx, hy), 4),
        "parameters": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__.split("+")[0],
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
    }
    (out_dir / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
    return card
