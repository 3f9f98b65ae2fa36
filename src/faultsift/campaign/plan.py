"""Fault lists: seeded draws with stable ids, so any fault can be replayed alone.

Fault ``i`` of a campaign is drawn from its own generator seeded with ``(seed, i)``: the
same seed gives the same faults whatever the list length, chunking or backend.

Example::

    faults = plan_faults(sites, make_fault_model("bitflip"), n_faults=1000, seed=1)
    faults_frame(faults).head()
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from faultsift.errors import ConfigError
from faultsift.faults.models import Fault, FaultModel
from faultsift.faults.sites import Site


def _check(sites: list[Site], fault_model: FaultModel) -> None:
    if not sites:
        raise ConfigError("Expected at least one fault site, got none; check the site names.")
    for site in sites:
        fault_model.check_site(site)


def draw_fault(sites: list[Site], fault_model: FaultModel, seed: int, fault_id: int) -> Fault:
    """Fault ``fault_id`` of the campaign with ``seed``: a uniform site, then the model's draw."""
    rng = np.random.default_rng([seed, fault_id])
    site = sites[int(rng.integers(len(sites)))]
    return fault_model.draw(site, rng, fault_id)


def draw_multi_fault(parts: list[tuple[list[Site], FaultModel]], seed: int, fault_id: int) -> tuple[Fault, ...]:
    """Fault ``fault_id`` made of one draw per ``(sites, fault_model)`` part, all in one trial.

    The parts come from one generator seeded with ``(seed, fault_id)``, in order: a one-part
    fault equals :func:`draw_fault`.
    """
    rng = np.random.default_rng([seed, fault_id])
    out = []
    for part, (sites, fault_model) in enumerate(parts):
        site = sites[int(rng.integers(len(sites)))]
        out.append(replace(fault_model.draw(site, rng, fault_id), part=part))
    return tuple(out)


def plan_faults(sites: list[Site], fault_model: FaultModel, n_faults: int, seed: int, start: int = 0) -> list[Fault]:
    """Faults ``start .. start + n_faults - 1`` of the campaign with ``seed``."""
    _check(sites, fault_model)
    if n_faults < 1:
        raise ConfigError(f"Expected `n_faults` >= 1, got {n_faults}.")
    return [draw_fault(sites, fault_model, seed, i) for i in range(start, start + n_faults)]


def plan_multi_faults(parts: list[tuple[list[Site], FaultModel]], n_faults: int, seed: int,
                      start: int = 0) -> list[tuple[Fault, ...]]:
    """Faults of several parts each (e.g. a weight fault and an activation fault per trial)."""
    for sites, fault_model in parts:
        _check(sites, fault_model)
    if n_faults < 1:
        raise ConfigError(f"Expected `n_faults` >= 1, got {n_faults}.")
    return [draw_multi_fault(parts, seed, i) for i in range(start, start + n_faults)]




def faults_frame(faults: list[Fault] | list[tuple[Fault, ...]]) -> pd.DataFrame:
    """One row per fault part (site fields flattened; locations as list columns) for Parquet."""
    flat = [f for item in faults for f in ((item,) if isinstance(item, Fault) else item)]
    return pd.DataFrame(
        {
            "fault_id": [f.fault_id for f in flat],
            "part": [f.part for f in flat],
            "fault_model": [f.fault_model for f in flat],
            "site": [f.site.name for f in flat],
            "module": [f.site.module for f in flat],
            "module_class": [f.site.module_class for f in flat],
            "kind": [f.site.kind for f in flat],
            "call": [f.site.call for f in flat],
            "site_shape": [list(f.site.shape) for f in flat],
            "site_numel": [f.site.numel for f in flat],
            "dtype": [f.site.dtype for f in flat],
            "batch_dim": [f.site.batch_dim for f in flat],
            "fold": [f.site.fold for f in flat],
            "fold_order": [f.site.fold_order for f in flat],
            "golden_min": [f.site.golden_min for f in flat],
            "golden_max": [f.site.golden_max for f in flat],
            "op": [f.op for f in flat],
            "n_elements": [len(f.indices) for f in flat],
            "indices": [f.indices for f in flat],
            "masks": [f.masks for f in flat],
            "bits": [f.bits for f in flat],  # readable: set bits, flattened
            "values": [f.values for f in flat],
            "restrict": [f.restrict for f in flat],
            "low": [f.low for f in flat],
            "high": [f.high for f in flat],
        }
    )


def _optional(value) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def faults_from_frame(df: pd.DataFrame) -> list[Fault]:
    """Inverse of :func:`faults_frame` (one Fault per part; group by ``fault_id`` for multi-part faults)."""
    out = []
    for row in df.itertuples(index=False):
        site = Site(row.module, row.module_class, row.kind, int(row.call), tuple(int(s) for s in row.site_shape),
                    int(row.site_numel), row.dtype, int(row.batch_dim), int(row.fold), row.fold_order,
                    _optional(row.golden_min), _optional(row.golden_max))
        out.append(Fault(int(row.fault_id), row.fault_model, site, np.asarray(row.indices, np.int64), row.op,
                         np.asarray(row.masks, np.int64), np.asarray(row.values, np.float64), row.restrict,
                         float(row.low), float(row.high), int(row.part)))
    return out
