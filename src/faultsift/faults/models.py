"""Fault models: what a fault does to values.

One verb pair: ``draw(site, rng, fault_id) -> Fault`` makes a concrete, serialisable draw at
planning time (which elements, by the model's pattern, and what happens to each);
``corrupt(values, fault) -> values`` applies it to per-input flat values ``[R, numel]``
(every row the same way). A :class:`Fault` is self-describing (an operation and its
per-element arrays), so replaying it needs no fault model.

Every fault model is registered by name and has typed, validated parameters (a frozen
pydantic model), plus two shared ones: ``pattern`` (see :mod:`faultsift.faults.patterns`;
default: the model's own) and ``restrict`` (``clamp`` or ``zero`` the touched values that fall
outside the site's golden range widened by 10%, NaN included; a clamped NaN becomes 0).

Example::

    fm = make_fault_model("multi-bitflip", k=2, mode="adjacent", pattern="row")
    fault = fm.draw(site, np.random.default_rng(0), fault_id=0)
    out = fm.corrupt(values, fault)
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field, fields
from typing import ClassVar, Literal, Optional

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from faultsift.errors import ConfigError
from faultsift.faults.beam_table import BeamRow, beam_row
from faultsift.faults.bits import BIT_OPS, apply_masks, bit_width, dtype_from_name
from faultsift.faults.patterns import Fraction, Pattern, Single, parse_pattern
from faultsift.faults.sites import Site
from faultsift.registry import Registry

OPS = BIT_OPS + ("assign", "scale")
RESTRICT = ("none", "clamp", "zero")
RANGE_MARGIN = 0.1


def _empty(dtype) -> np.ndarray:
    return np.empty(0, dtype)


@dataclass(frozen=True, eq=False)
class Fault:
    """One concrete draw.

    ``indices``: int64 element indices in the site's flat per-input view (or flat parameter).
    ``op``: ``flip``/``set1``/``set0`` with int64 bit ``masks`` per index; ``assign`` with new
    ``values``; ``scale`` with relative errors r in ``values`` (x *= 1 + r; a non-finite r sets
    the value to r). ``restrict``/``low``/``high``: optional post-step on the touched values.
    ``part``: position in a fault of several parts (one trial, several faults).
    """

    fault_id: int
    fault_model: str
    site: Site
    indices: np.ndarray
    op: str = "flip"
    masks: np.ndarray = field(default_factory=lambda: _empty(np.int64))
    values: np.ndarray = field(default_factory=lambda: _empty(np.float64))
    restrict: str = "none"
    low: float = float("-inf")
    high: float = float("inf")
    part: int = 0

    def __eq__(self, other) -> bool:
        if not isinstance(other, Fault):
            return NotImplemented
        arrays = ("indices", "masks", "values")
        return all(getattr(self, f.name) == getattr(other, f.name) for f in fields(self) if f.name not in arrays) and all(
            np.array_equal(getattr(self, a), getattr(other, a), equal_nan=a == "values") for a in arrays)

    def element_bits(self) -> list[list[int]]:
        """Bit positions set in each element's mask."""
        present = (self.masks.astype(np.uint64)[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)
        return [np.flatnonzero(row).tolist() for row in present]

    @property
    def bits(self) -> np.ndarray:
        """int16 bit positions of every mask, flattened: one per element for single-bit models."""
        return np.array([b for bits in self.element_bits() for b in bits], np.int16)


def _cast(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Float64 values in ``dtype``: rounded to nearest for floats; rounded and saturated for integers."""
    if dtype.is_floating_point:
        return values.to(dtype)
    info = torch.iinfo(dtype)
    return values.nan_to_num(0.0, posinf=info.max, neginf=info.min).round().clamp(info.min, info.max).to(dtype)


def apply_fault(values: torch.Tensor, fault: Fault) -> torch.Tensor:
    """Apply ``fault`` to every row of ``values`` [R, numel] in place; returns ``values``."""
    idx = torch.from_numpy(fault.indices).to(values.device)
    x = values[:, idx]
    if fault.op in BIT_OPS:
        x = apply_masks(x, torch.from_numpy(fault.masks), fault.op)
    elif fault.op == "assign":
        x = _cast(torch.from_numpy(fault.values).to(values.device), values.dtype).expand_as(x)
    elif fault.op == "scale":
        r64 = torch.from_numpy(fault.values).to(values.device)
        if values.dtype.is_floating_point:
            r = r64.to(values.dtype)
            x = torch.where(torch.isfinite(r), x * (1 + r), r)
        else:
            x = _cast(torch.where(torch.isfinite(r64), x.double() * (1 + r64), r64), values.dtype)
    else:
        raise ConfigError(f"Expected a fault operation among {', '.join(OPS)}, got {fault.op}.")
    if fault.restrict != "none":
        outside = ~((x >= fault.low) & (x <= fault.high))  # NaN is outside too (clamped to 0)
        if fault.restrict == "clamp":
            bounded = _cast(x.double().clamp(fault.low, fault.high), x.dtype) if not x.dtype.is_floating_point else (
                x.clamp(fault.low, fault.high).nan_to_num(0.0))
            x = torch.where(outside, bounded, x)
        else:
            x = torch.where(outside, torch.zeros_like(x), x)
    values[:, idx] = x
    return values


def widened_range(low: float, high: float) -> tuple[float, float]:
    """The golden range ``[low, high]`` widened by 10% of each bound's magnitude (1.1 x min/max)."""
    return low - RANGE_MARGIN * abs(low), high + RANGE_MARGIN * abs(high)


class FaultModel(BaseModel):
    """Base class: parameters are validated fields, stored unchanged."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: ClassVar[str] = ""
    default_pattern: ClassVar[str] = "single"

    pattern: Optional[str] = None
    restrict: Literal["none", "clamp", "zero"] = "none"

    @field_validator("pattern")
    @classmethod
    def _valid_pattern(cls, value):
        if value is not None:
            parse_pattern(value)
        return value

    def pattern_for(self, site: Site) -> Pattern:
        """The pattern placing this model's elements at ``site``."""
        return parse_pattern(self.pattern or self.default_pattern)

    def check_site(self, site: Site) -> None:
        """Raise a one-line error if this model cannot fault ``site`` (bits outside its format, ...)."""
        self.pattern_for(site).check(site.shape, site.name)
        if self.restrict != "none" and (site.golden_min is None or site.golden_max is None):
            raise ConfigError(f"Expected a golden range at {site.name} for `restrict={self.restrict}`; "
                              f"record it with faultsift.faults.sites.with_golden_ranges.")

    def draw(self, site: Site, rng: np.random.Generator, fault_id: int) -> Fault:
        """A concrete fault at ``site``, from ``rng`` only."""
        self.check_site(site)
        indices = self.pattern_for(site).indices(site.shape, rng)
        op, masks, values = self.effect(site, indices, rng)
        low, high = float("-inf"), float("inf")
        if self.restrict != "none":
            low, high = widened_range(site.golden_min, site.golden_max)
        return Fault(fault_id, self.name, site, indices, op, masks, values, self.restrict, low, high)

    def effect(self, site: Site, indices: np.ndarray, rng: np.random.Generator) -> tuple[str, np.ndarray, np.ndarray]:
        """The operation and its per-element masks and values for the chosen ``indices``."""
        raise NotImplementedError

    def corrupt(self, values: torch.Tensor, fault: Fault) -> torch.Tensor:
        """Corrupted ``values`` [R, numel] (``fault`` applied to every row, in place)."""
        return apply_fault(values, fault)

    def params(self) -> dict:
        return self.model_dump()


FAULT_MODELS: Registry[type[FaultModel]] = Registry("fault model")


class BitModel(FaultModel):
    """Shared bit range ``bit_low..bit_high`` (default: every bit of the site's format)."""

    bit_low: int = 0
    bit_high: Optional[int] = None

    @model_validator(mode="after")
    def _order(self):
        if self.bit_low < 0:
            raise ValueError(f"Expected `bit_low` >= 0, got {self.bit_low}.")
        if self.bit_high is not None and self.bit_low > self.bit_high:
            raise ValueError(f"Expected `bit_low` <= `bit_high`, got {self.bit_low} > {self.bit_high}.")
        return self

    def bit_range(self, site: Site) -> tuple[int, int]:
        width = bit_width(dtype_from_name(site.dtype))
        high = width - 1 if self.bit_high is None else self.bit_high
        if high >= width:
            raise ConfigError(f"Expected `bit` in [0, {width - 1}] for {site.dtype}, got {high}.")
        return self.bit_low, high

    def check_site(self, site):
        super().check_site(site)
        self.bit_range(site)


def _masks(bits: np.ndarray) -> np.ndarray:
    """int64 masks from bit positions [n, k] (OR over k; bit 63 wraps to the sign bit)."""
    return np.bitwise_or.reduce(np.left_shift(np.int64(1), bits.astype(np.int64)), axis=1)


@FAULT_MODELS.register("bitflip")
class BitFlip(BitModel):
    """Single bit flip per element in the value's real encoding; bit uniform in [bit_low, bit_high]."""

    name: ClassVar[str] = "bitflip"

    def effect(self, site, indices, rng):
        low, high = self.bit_range(site)
        bits = rng.integers(low, high + 1, size=len(indices))
        return "flip", _masks(bits[:, None]), _empty(np.float64)


@FAULT_MODELS.register("multi-bitflip")
class MultiBitFlip(BitModel):
    """k bits flipped per element: ``adjacent`` (a run of k bits) or ``random`` (k distinct bits)."""

    name: ClassVar[str] = "multi-bitflip"
    k: int = 2
    mode: Literal["adjacent", "random"] = "random"

    @field_validator("k")
    @classmethod
    def _k(cls, value):
        if value < 1:
            raise ValueError(f"Expected `k` >= 1, got {value}.")
        return value

    def bit_range(self, site):
        low, high = super().bit_range(site)
        if self.k > high - low + 1:
            raise ConfigError(f"Expected `k` <= {high - low + 1} (bits {low}..{high} of {site.dtype}), got {self.k}.")
        return low, high

    def effect(self, site, indices, rng):
        low, high = self.bit_range(site)
        n = len(indices)
        if self.mode == "adjacent":
            start = rng.integers(low, high - self.k + 2, size=n)
            bits = start[:, None] + np.arange(self.k)
        else:
            bits = low + np.argsort(rng.random((n, high - low + 1)), axis=1)[:, : self.k]
        return "flip", _masks(bits), _empty(np.float64)


@FAULT_MODELS.register("stuck-at")
class StuckAt(BitModel):
    """One bit per element forced to ``value`` (0 or 1); bit uniform in [bit_low, bit_high]."""

    name: ClassVar[str] = "stuck-at"
    value: Literal[0, 1] = 1

    def effect(self, site, indices, rng):
        low, high = self.bit_range(site)
        bits = rng.integers(low, high + 1, size=len(indices))
        return f"set{self.value}", _masks(bits[:, None]), _empty(np.float64)


@FAULT_MODELS.register("zero")
class Zero(FaultModel):
    """Touched elements become zero."""

    name: ClassVar[str] = "zero"

    def effect(self, site, indices, rng):
        return "assign", _empty(np.int64), np.zeros(len(indices))


def _finite_values(dtype: str, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` values uniform over the finite encodings of ``dtype`` (random bit patterns, non-finite redrawn)."""
    width = bit_width(dtype_from_name(dtype))
    out = np.empty(n)
    todo = np.arange(n)
    with np.errstate(invalid="ignore"):
        return _fill_finite(dtype, width, rng, out, todo)


def _fill_finite(dtype, width, rng, out, todo):
    while len(todo):
        pattern = rng.integers(0, 2**width, size=len(todo), dtype=np.uint64)
        if dtype in ("fp32", "fp64", "fp16"):
            value = pattern.astype({"fp32": np.uint32, "fp64": np.uint64, "fp16": np.uint16}[dtype]).view(
                {"fp32": np.float32, "fp64": np.float64, "fp16": np.float16}[dtype]).astype(np.float64)
        elif dtype == "bf16":
            value = (pattern.astype(np.uint32) << np.uint32(16)).view(np.float32).astype(np.float64)
        elif dtype in ("int8", "qint8"):
            value = pattern.astype(np.uint8).view(np.int8).astype(np.float64)
        else:
            value = pattern.astype(np.float64)
        ok = np.isfinite(value)
        out[todo[ok]] = value[ok]
        todo = todo[~ok]
    return out


@FAULT_MODELS.register("random-value")
class RandomValue(FaultModel):
    """Touched elements become random values: ``uniform`` in [low, high], or ``finite``: uniform
    over the format's finite encodings (every bit pattern but inf/NaN)."""

    name: ClassVar[str] = "random-value"
    mode: Literal["uniform", "finite"] = "finite"
    low: float = -1.0
    high: float = 1.0

    @model_validator(mode="after")
    def _range(self):
        if not (np.isfinite(self.low) and np.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"Expected finite `low` < `high`, got {self.low} and {self.high}.")
        return self

    def effect(self, site, indices, rng):
        if self.mode == "uniform":
            values = rng.uniform(self.low, self.high, size=len(indices))
        else:
            values = _finite_values(site.dtype, rng, len(indices))
        return "assign", _empty(np.int64), values


@FAULT_MODELS.register("power-law")
class PowerLaw(FaultModel):
    """RTL-derived relative error: each touched value v becomes ``v * xmin * (1-u)^(-1/(alpha-1))``
    (a Pareto multiplier >= xmin), u uniform in [0, 1)."""

    name: ClassVar[str] = "power-law"
    xmin: float = 1.0
    alpha: float = 2.5

    @model_validator(mode="after")
    def _params(self):
        if not (np.isfinite(self.xmin) and self.xmin > 0):
            raise ValueError(f"Expected `xmin` > 0, got {self.xmin}.")
        if not (np.isfinite(self.alpha) and self.alpha > 1):
            raise ValueError(f"Expected `alpha` > 1, got {self.alpha}.")
        return self

    def multipliers(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.xmin * (1.0 - rng.random(n)) ** (-1.0 / (self.alpha - 1.0))

    def effect(self, site, indices, rng):
        return "scale", _empty(np.int64), self.multipliers(rng, len(indices)) - 1.0


class BeamRelativeError(FaultModel):
    """The study's beam-derived model: alter the table's fraction of elements as x *= 1 + r.

    The row is chosen by the site's module class through ``microops`` (class -> table
    micro-op; default: the class name itself) in the ``table_model`` rows of the shipped table
    or of the user's CSV at ``table``. Default pattern: the row's altered fraction.
    """

    variant: ClassVar[str] = ""
    table_model: str = "vit_base_patch16_224"
    microops: dict[str, str] = {}
    precision: str = "fp32"
    threshold: float = 1e-4
    table: Optional[str] = None

    @field_validator("microops", mode="before")
    @classmethod
    def _no_microops(cls, value):
        return {} if value is None else value

    @model_validator(mode="after")
    def _rows(self):
        for microop in self.microops.values():
            beam_row(self.table_model, microop, self.precision, self.threshold, self.table)  # validate early
        return self

    def params(self) -> dict:
        out = self.model_dump()
        if out["table"] is None:  # the study's stored params stay as they were
            del out["table"]
        return out

    def row(self, site: Site) -> BeamRow:
        return beam_row(self.table_model, self.microops.get(site.module_class, site.module_class),
                        self.precision, self.threshold, self.table)

    def pattern_for(self, site):
        return parse_pattern(self.pattern) if self.pattern else Fraction(self.row(site).altered_fraction)

    def effect(self, site, indices, rng):
        factors = self.row(site).sample(rng, len(indices), self.variant).astype(np.float32)
        return "scale", _empty(np.int64), factors.astype(np.float64)


@FAULT_MODELS.register("beam-body")
class BeamBody(BeamRelativeError):
    """Beam relative error with r within Q5..Q95 (as the study's own injector)."""

    name: ClassVar[str] = "beam-body"
    variant: ClassVar[str] = "body"


@FAULT_MODELS.register("beam-full")
class BeamFull(BeamRelativeError):
    """Beam relative error with the Q0..Q100 tails and the table's +inf/-inf/NaN fractions."""

    name: ClassVar[str] = "beam-full"
    variant: ClassVar[str] = "full"


def _one_line(exc: ValidationError, name: str) -> str:
    err = exc.errors()[0]
    field_name = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"Unknown parameter `{field_name}` of fault model `{name}`; parameters: {', '.join(describe(name))}."
    msg = str(err.get("ctx", {}).get("error", "")) or f"{err['msg']}, got {err.get('input')!r}."
    return msg if not field_name else f"Invalid `{field_name}` of fault model `{name}`: {msg}"


def make_fault_model(name: str, **params) -> FaultModel:
    """Instantiate a registered fault model; bad parameters get a one-line error."""
    cls = FAULT_MODELS.get(name)
    try:
        return cls(**params)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, name)) from None


def describe(name: str) -> list[str]:
    """``name: type = default`` for each parameter of a registered fault model."""
    out = []
    for field_name, info in FAULT_MODELS.get(name).model_fields.items():
        annotation = info.annotation.__name__ if isinstance(info.annotation, type) else str(info.annotation)
        annotation = annotation.replace("typing.", "")
        default = "required" if info.is_required() else repr(info.default)
        out.append(f"{field_name}: {annotation} = {default}")
    return out


def summary(name: str) -> str:
    """First paragraph of a fault model's docstring, on one line."""
    return " ".join(inspect.getdoc(FAULT_MODELS.get(name)).split("\n\n")[0].split())
