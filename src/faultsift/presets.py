"""Presets: the study's configuration by name, and default micro-op sites of timm families.

``study-vit`` and ``study-swin`` reproduce the NSREC 2025 study's setup on the user's ImageNet
data and weights: timm ``vit_base_patch16_224`` / ``swin_base_patch4_window7_224`` in fp32,
sets of 32 images (margin-based among correctly classified ones, random, fi-ranked), faults on
the outputs of the timm micro-ops, the beam relative-error rows (threshold 1e-4) and single
bit flips among bits 14..23 (the study's later ``SINGLE`` injection), SDC threshold 1e-5.

Example::

    values = preset_values("study-vit")   # StudyConfig fields; explicit options override them
    timm_family("vit_tiny_patch16_224").site_classes   # ('Attention', 'Block', 'Mlp')
"""

from __future__ import annotations

from dataclasses import dataclass, field

from faultsift.registry import Registry


@dataclass(frozen=True)
class Family:
    """Default fault sites of a model family and the beam-table rows for them."""

    site_classes: tuple[str, ...]
    beam_table_model: str
    beam_microops: dict[str, str] = field(default_factory=dict)  # site class -> table micro-op


VIT = Family(("Attention", "Block", "Mlp"), "vit_base_patch16_224", {c: c for c in ("Attention", "Block", "Mlp")})
SWIN = Family(("WindowAttention", "SwinTransformerBlock", "Mlp"), "swin_base_patch4_window7_224",
              {c: c for c in ("WindowAttention", "SwinTransformerBlock", "Mlp")})


def timm_family(name: str) -> Family | None:
    """The study's micro-ops for timm ViT/DeiT (``vit_*``, ``deit*``) and Swin v1 (``swin_*``) models."""
    if name.startswith(("vit_", "deit_", "deit3_")):
        return VIT
    if name.startswith("swin_"):
        return SWIN
    return None


PRESETS: Registry[dict] = Registry("preset")

_STUDY = {
    "fault_models": ("beam-body", "beam-full", "bitflip"),
    "strategies": ("random", "low-confidence", "high-confidence", "fi-ranked"),
    "k": 32,
    "n_faults": 2000,
    "n_screen_faults": 200,
    "selection_seed": 0,
    "bit_low": 14,
    "bit_high": 23,
    "beam_threshold": 1e-4,
    "threshold": 1e-5,
    "dtype": "fp32",
}
PRESETS.register("study-vit")({**_STUDY, "models": ("timm:vit_base_patch16_224",), "sites": VIT.site_classes})
PRESETS.register("study-swin")({**_STUDY, "models": ("timm:swin_base_patch4_window7_224",), "sites": SWIN.site_classes})


def preset_values(name: str) -> dict:
    """StudyConfig fields of a preset (unknown names suggest the closest)."""
    return {**PRESETS.get(name), "preset": name}
