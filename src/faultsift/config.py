"""Validated configuration objects (pydantic) with one-line errors.

Example::

    cfg = validated(StudyConfig, k=32, n_faults=500)
    validated(StudyConfig, k=0)   # ConfigError: Invalid `k`: Input should be greater than or equal to 1, got 0.
"""

from __future__ import annotations

from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from faultsift.engine.outcome import DEFAULT_THRESHOLD
from faultsift.errors import ConfigError

M = TypeVar("M", bound=BaseModel)

DEFAULT_MODELS = ("zoo:digits-vit", "zoo:digits-swin", "zoo:digits-cnn")
DEFAULT_FAULT_MODELS = ("bitflip", "beam-body", "beam-full")
DEFAULT_STRATEGIES = ("random", "low-confidence", "high-confidence", "fi-ranked")


class StudyConfig(BaseModel):
    """Everything the main job needs; stored with the results."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    models: tuple[str, ...] = DEFAULT_MODELS
    data: str = "zoo:digits-hard"
    fault_models: tuple[str, ...] = DEFAULT_FAULT_MODELS
    strategies: tuple[str, ...] = DEFAULT_STRATEGIES
    sites: tuple[str, ...] = Field(default=(), description="module classes/names/globs; empty: the zoo model's micro-ops")
    k: int = Field(default=32, ge=1)
    n_faults: int = Field(default=2000, ge=1)
    n_screen_faults: int = Field(default=200, ge=1)
    selection_seed: int = Field(default=0, ge=0)
    fault_seed: int = Field(default=1, ge=0)
    screen_seed: int = Field(default=2, ge=0)
    bit_low: int = Field(default=0, ge=0)
    bit_high: int | None = Field(default=None, ge=0)
    beam_threshold: float = 1e-4
    threshold: float = Field(default=DEFAULT_THRESHOLD, gt=0)
    n_boot: int = Field(default=2000, ge=100)
    batch_size: int = Field(default=512, ge=1)
    device: str = "cpu"
    engine: Literal["fast", "reference"] = "fast"
    report: bool = Field(default=True, description="write report.html, report.md and report/*.csv")
    weights: tuple[str, ...] = Field(default=(), description="one state-dict file per model ('' for none); empty: none")
    num_classes: int | None = Field(default=None, ge=1)
    dtype: Literal["fp32", "fp16", "bf16"] = "fp32"
    labels: str | None = Field(default=None, description="labels file of an imagenet-val: pool")
    limit: int | None = Field(default=None, ge=1)
    subset: int | None = Field(default=None, ge=1)
    preprocess: str | None = Field(default=None, description="image preprocessing overrides, e.g. size=224,crop_pct=0.9")
    preset: str | None = None


def validated(cls: type[M], **values) -> M:
    """Build ``cls`` from ``values``; the first validation problem becomes a one-line ConfigError."""
    try:
        return cls(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or cls.__name__
        raise ConfigError(f"Invalid `{field}`: {err['msg']}, got {err.get('input')!r}.") from None
