"""Fault lists: seeded draws with stable ids, so any fault can be replayed alone.

Fault ``i`` of a campaign is drawn from its own generator seeded with ``(seed, i)``: the
same seed gives the same faults whatever the list length, chunking or backend.

Example::

    faults = plan_faults(sites, make_fault_model("bitflip"), n_faults=1000, seed=1)
    faults_frame(faults).head()
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from faultsift.errors import ConfigError
from faultsift.faults.models import Fault, FaultModel
from faultsift.faults.sites import Site


def draw_fault(sites: list[Site], fault_model: FaultModel, seed: int, fault_id: int) -> Fault:
    """Fault ``fault_id`` of the campaign with ``seed``: a uniform site, then the model's draw."""
    rng = np.random.default_rng([seed, fault_id])
    site = sites[int(rng.integers(len(sites)))]
    return fault_model.draw(site, rng, fault_id)


def plan_faults(sites: list[Site], fault_model: FaultModel, n_faults: int, seed: int, start: int = 0) -> list[Fault]:
    """Faults ``start .. start + n_faults - 1`` of the campaign with ``seed``."""
    if not sites:
        raise ConfigError("Expected at least one fault site, got none; check the site names.")
    if n_faults < 1:
        raise ConfigError(f"Expected `n_faults` >= 1, got {n_faults}.")
    return [draw_fault(sites, fault_model, seed, i) for i in range(start, start + n_faults)]


def faults_frame(faults: list[Fault]) -> pd.DataFrame:
    """One row per fault (site fields flattened; locations as list columns) for Parquet."""
    return pd.DataFrame(
        {
            "fault_id": [f.fault_id for f in faults],
            "fault_model": [f.fault_model for f in faults],
            "site": [f.site.name for f in faults],
            "module": [f.site.module for f in faults],
            "module_class": [f.site.module_class for f in faults],
            "kind": [f.site.kind for f in faults],
            "call": [f.site.call for f in faults],
            "site_shape": [list(f.site.shape) for f in faults],
            "site_numel": [f.site.numel for f in faults],
            "dtype": [f.site.dtype for f in faults],
            "n_elements": [len(f.indices) for f in faults],
            "indices": [f.indices for f in faults],
            "bits": [f.bits for f in faults],
            "factors": [f.factors for f in faults],
        }
    )


def faults_from_frame(df: pd.DataFrame) -> list[Fault]:
    """Inverse of :func:`faults_frame`."""
    out = []
    for row in df.itertuples(index=False):
        site = Site(row.module, row.module_class, row.kind, int(row.call), tuple(int(s) for s in row.site_shape),
                    int(row.site_numel), row.dtype)
        out.append(Fault(int(row.fault_id), row.fault_model, site, np.asarray(row.indices, np.int64),
                         np.asarray(row.bits, np.int16), np.asarray(row.factors, np.float32)))
    return out
