"""Tiny built-in models: a timm ViT, a timm Swin and a small CNN, all for 8x8 digits.

Their micro-ops are the real timm classes (``Block``/``Attention``/``Mlp`` for the ViT,
``SwinTransformerBlock``/``WindowAttention``/``Mlp`` for the Swin), so faults land where they
land in the full-size models of the study. Weights ship as safetensors next to this file.

Example::

    model = load_zoo_model("digits-vit")   # eval mode, shipped weights, no training
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from timm.models.swin_transformer import SwinTransformer
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from faultsift.errors import LoadError
from faultsift.registry import Registry

WEIGHTS_DIR = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class ZooModel:
    """A built-in architecture, its default fault sites and its beam-table rows."""

    name: str
    build: Callable[[], nn.Module]
    site_classes: tuple[str, ...]
    beam_table_model: str
    beam_microops: dict[str, str] = field(default_factory=dict)  # site class -> table micro-op

    @property
    def weights_path(self) -> Path:
        return WEIGHTS_DIR / f"{self.name}.safetensors"

    @property
    def card_path(self) -> Path:
        return WEIGHTS_DIR / f"{self.name}.json"


class DigitsCNN(nn.Module):
    """Three 3x3 convolutions and a linear head; no normalisation layers."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.relu(self.conv3(x))
        return self.head(x.mean(dim=(2, 3)))


def _vit() -> nn.Module:
    return VisionTransformer(
        img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=32, depth=4, num_heads=2, mlp_ratio=2.0
    )


def _swin() -> nn.Module:
    return SwinTransformer(
        img_size=8,
        patch_size=1,
        in_chans=1,
        num_classes=10,
        embed_dim=24,
        depths=(2, 2),
        num_heads=(2, 4),
        window_size=4,
        mlp_ratio=2.0,
    )


ZOO_MODELS: Registry[ZooModel] = Registry("built-in model")
for _entry in (
    ZooModel(
        "digits-vit",
        _vit,
        ("Attention", "Block", "Mlp"),
        "vit_base_patch16_224",
        {"Attention": "Attention", "Block": "Block", "Mlp": "Mlp"},
    ),
    ZooModel(
        "digits-swin",
        _swin,
        ("WindowAttention", "SwinTransformerBlock", "Mlp"),
        "swin_base_patch4_window7_224",
        {"WindowAttention": "WindowAttention", "SwinTransformerBlock": "SwinTransformerBlock", "Mlp": "Mlp"},
    ),
    # The CNN has no transformer micro-ops; its convolutions run as GEMMs like an Mlp's linear
    # layers, so its Conv2d outputs use the ViT `Mlp` rows of the beam table.
    ZooModel("digits-cnn", DigitsCNN, ("Conv2d",), "vit_base_patch16_224", {"Conv2d": "Mlp"}),
):
    ZOO_MODELS.register(_entry.name)(_entry)


def load_zoo_model(name: str) -> nn.Module:
    """Build a built-in model and load its shipped weights (never retrains)."""
    entry = ZOO_MODELS.get(name)
    path = entry.weights_path
    if not path.is_file():
        raise LoadError(f"Weights file {path} for `{name}` is missing; rebuild it with `faultsift zoo train`.")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise LoadError(
            f"Weights file {path} for `{name}` is corrupt ({exc}); rebuild it with `faultsift zoo train`."
        ) from None
    model = entry.build()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = " ".join(str(exc).split())[:300]
        raise LoadError(
            f"Weights file {path} does not match `{name}` ({first}); rebuild it with `faultsift zoo train`."
        ) from None
    return model.eval()


def model_card(name: str) -> dict:
    """Training record of a built-in model (accuracy, seed, epochs), or {} if absent."""
    path = ZOO_MODELS.get(name).card_path
    return json.loads(path.read_text()) if path.is_file() else {}
