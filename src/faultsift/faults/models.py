"""Fault models: what a fault does to values.

One verb pair: ``draw(site, rng) -> Fault`` makes a concrete, serialisable draw at planning
time; ``corrupt(values, fault) -> values`` applies it to per-input flat values [B, numel]
(the same fault to every row, which gives the paired design across input sets).

Example::

    fm = make_fault_model("bitflip", bit_low=23, bit_high=30)
    fault = fm.draw(site, np.random.default_rng(0), fault_id=0)
    out = fm.corrupt(values, fault)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch

from faultsift.errors import ConfigError
from faultsift.faults.beam_table import BeamRow, beam_row
from faultsift.faults.bits import bit_width, flip_bits
from faultsift.faults.sites import Site
from faultsift.registry import Registry


@dataclass(frozen=True)
class Fault:
    """One concrete draw: site, element indices (per input) and per-element parameters."""

    fault_id: int
    fault_model: str
    site: Site
    indices: np.ndarray  # int64 element indices in the site's flat per-input view
    bits: np.ndarray  # int16 bit per index (bit-level models), else empty
    factors: np.ndarray  # float32 relative error r per index (x *= 1 + r; +-inf/nan set the value)


class FaultModel(ABC):
    """Base class: parameters given to the constructor, stored unchanged."""

    name: str = ""

    @abstractmethod
    def draw(self, site: Site, rng: np.random.Generator, fault_id: int) -> Fault:
        """A concrete fault at ``site``."""

    @abstractmethod
    def corrupt(self, values: torch.Tensor, fault: Fault) -> torch.Tensor:
        """Corrupted copy of ``values`` [B, numel] (``fault`` applied to every row)."""

    def params(self) -> dict:
        return {}


FAULT_MODELS: Registry[type[FaultModel]] = Registry("fault model")


@FAULT_MODELS.register("bitflip")
class BitFlip(FaultModel):
    """Single bit flip in the value's real encoding; bit uniform in [bit_low, bit_high]."""

    name = "bitflip"

    def __init__(self, bit_low: int = 0, bit_high: int | None = None):
        if bit_high is not None and bit_low > bit_high:
            raise ConfigError(f"Expected `bit_low` <= `bit_high`, got {bit_low} > {bit_high}.")
        self.bit_low, self.bit_high = bit_low, bit_high

    def params(self) -> dict:
        return {"bit_low": self.bit_low, "bit_high": self.bit_high}

    def draw(self, site: Site, rng: np.random.Generator, fault_id: int) -> Fault:
        width = bit_width(_torch_dtype(site.dtype))
        high = width - 1 if self.bit_high is None else self.bit_high
        if not 0 <= self.bit_low <= high < width:
            bad = self.bit_low if self.bit_low < 0 else high
            raise ConfigError(f"Expected `bit` in [0, {width - 1}] for {site.dtype}, got {bad}.")
        index = rng.integers(site.numel, size=1)
        bit = rng.integers(self.bit_low, high + 1, size=1).astype(np.int16)
        return Fault(fault_id, self.name, site, index.astype(np.int64), bit, np.empty(0, np.float32))

    def corrupt(self, values: torch.Tensor, fault: Fault) -> torch.Tensor:
        idx = torch.from_numpy(fault.indices).to(values.device)
        bits = torch.from_numpy(fault.bits.astype(np.int64)).to(values.device)
        values[:, idx] = flip_bits(values[:, idx], bits)
        return values


class BeamRelativeError(FaultModel):
    """The study's beam-derived model: alter the table's fraction of elements as x *= 1 + r.

    The row is chosen by the site's module class through ``microops`` (class -> table
    micro-op; default: the class name itself) in the table's ``table_model`` rows.
    """

    variant = ""

    def __init__(self, table_model: str = "vit_base_patch16_224", microops: dict[str, str] | None = None,
                 precision: str = "fp32", threshold: float = 1e-4):
        self.table_model, self.microops = table_model, dict(microops or {})
        self.precision, self.threshold = precision, threshold
        for microop in self.microops.values():
            beam_row(table_model, microop, precision, threshold)  # validate early

    def params(self) -> dict:
        return {"table_model": self.table_model, "microops": self.microops, "precision": self.precision,
                "threshold": self.threshold}

    def row(self, site: Site) -> BeamRow:
        return beam_row(self.table_model, self.microops.get(site.module_class, site.module_class),
                        self.precision, self.threshold)

    def draw(self, site: Site, rng: np.random.Generator, fault_id: int) -> Fault:
        row = self.row(site)
        count = max(1, int(round(row.altered_fraction * site.numel)))
        indices = np.sort(rng.choice(site.numel, size=count, replace=False)).astype(np.int64)
        factors = row.sample(rng, count, self.variant).astype(np.float32)
        return Fault(fault_id, self.name, site, indices, np.empty(0, np.int16), factors)

    def corrupt(self, values: torch.Tensor, fault: Fault) -> torch.Tensor:
        idx = torch.from_numpy(fault.indices).to(values.device)
        r = torch.from_numpy(fault.factors).to(device=values.device, dtype=values.dtype)
        finite = torch.isfinite(r)
        values[:, idx] = torch.where(finite, values[:, idx] * (1 + r), r)
        return values


@FAULT_MODELS.register("beam-body")
class BeamBody(BeamRelativeError):
    """Beam relative error with r within Q5..Q95 (as the study's own injector)."""

    name, variant = "beam-body", "body"


@FAULT_MODELS.register("beam-full")
class BeamFull(BeamRelativeError):
    """Beam relative error with the Q0..Q100 tails and the table's +inf/-inf/NaN fractions."""

    name, variant = "beam-full", "full"


def _torch_dtype(name: str) -> torch.dtype:
    from faultsift.faults.bits import DTYPE_NAMES

    for dtype, dtype_name in DTYPE_NAMES.items():
        if dtype_name == name:
            return dtype
    raise ConfigError(f"Expected a dtype among {', '.join(DTYPE_NAMES.values())}, got {name}.")


def make_fault_model(name: str, **params) -> FaultModel:
    """Instantiate a registered fault model; unknown parameters get a one-line error."""
    cls = FAULT_MODELS.get(name)
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"Bad parameters for fault model `{name}`: {exc}.") from None
