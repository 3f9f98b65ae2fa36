"""Run a campaign from its spec: chunked, resumable, statistically stopped.

Each fault model's fault list is cut into chunks of ``run.chunk_faults`` faults; a chunk is
the unit of work (any backend) and of storage (one shard). Chunks are evaluated in order and
the stopping rule is checked at every chunk boundary, so the same spec and seed give the same
trial rows on every backend and after any number of interruptions.

Example::

    result = run_campaign(load_spec(Path("campaign.toml")), Path("runs/c1"))
    df = load_results(Path("runs/c1"))
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from faultsift import stats
from faultsift.campaign.plan import draw_fault
from faultsift.campaign.spec import CampaignSpec, FaultSpec
from faultsift.campaign.store import CampaignStore, read_parquet, write_json_atomic, write_parquet_atomic
from faultsift.data import Dataset, load_data
from faultsift.engine import make_engine
from faultsift.errors import ConfigError, LoadError
from faultsift.faults.models import Fault, FaultModel, make_fault_model
from faultsift.faults.sites import Site, discover_sites
from faultsift.models import load_model, zoo_entry
from faultsift.profile import profile, write_profile
from faultsift.selection.strategies import InputSet, get_strategy, read_sets_file
from faultsift.study import run_trials

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Chunk:
    """Faults ``start .. stop - 1`` of fault model number ``fault_index``."""

    fault_index: int
    fault_model: str
    index: int
    start: int
    stop: int


def fault_seed(spec: CampaignSpec, fault_index: int) -> int:
    """Seed of one fault model's list: independent lists for each [[faults]] entry."""
    return int(np.random.SeedSequence([spec.run.seed, fault_index]).generate_state(1)[0])


def build_fault_model(fault: FaultSpec, model_spec: str) -> FaultModel:
    """The fault model of a spec entry; beam models default to the built-in model's table rows."""
    params = dict(fault.params)
    entry = zoo_entry(model_spec)
    if fault.model.startswith("beam-") and entry is not None:
        params.setdefault("table_model", entry.beam_table_model)
        params.setdefault("microops", entry.beam_microops)
    return make_fault_model(fault.model, **params)


class CampaignContext:
    """What evaluating a chunk needs: model, data, input ids, sites and fault models.

    Built once per process (the main one and each worker) from the spec and the input ids.
    """

    def __init__(self, spec: CampaignSpec, input_ids: np.ndarray):
        self.spec = spec
        self.model = load_model(spec.model)
        self.data = load_data(spec.data)
        self.input_ids = np.asarray(input_ids, dtype=np.int64)
        example = self.data.inputs[:2]
        entry = zoo_entry(spec.model)
        self.fault_models: list[tuple[FaultModel, list[Site]]] = []
        for fault in spec.faults:
            patterns = list(fault.sites) or (list(entry.site_classes) if entry else [])
            if not patterns:
                raise ConfigError(f"Expected `sites` for fault model `{fault.model}` on non-built-in model `{spec.model}`.")
            self.fault_models.append((build_fault_model(fault, spec.model), discover_sites(self.model, example, patterns)))

    def faults(self, chunk: Chunk) -> list[Fault]:
        fault_model, sites = self.fault_models[chunk.fault_index]
        seed = fault_seed(self.spec, chunk.fault_index)
        return [draw_fault(sites, fault_model, seed, i) for i in range(chunk.start, chunk.stop)]

    def evaluate(self, chunk: Chunk) -> pd.DataFrame:
        """Trial rows of one chunk (every fault on every input)."""
        fault_model, _ = self.fault_models[chunk.fault_index]
        engine = make_engine(self.spec.run.engine, self.model, fault_model, self.spec.threshold, self.spec.run.device)
        return run_trials(engine, self.data, self.input_ids, self.faults(chunk), self.spec.run.batch_size,
                          lambda n: None)


def crash_rows(chunk: Chunk, input_ids: np.ndarray, kind: str) -> pd.DataFrame:
    """DUE rows for a chunk whose worker died on every try."""
    faults = np.repeat(np.arange(chunk.start, chunk.stop), len(input_ids))
    n = len(faults)
    from faultsift.engine.outcome import OUTCOMES

    return pd.DataFrame({
        "fault_id": faults.astype(np.int64),
        "input_id": np.tile(input_ids, chunk.stop - chunk.start).astype(np.int64),
        "outcome": pd.Categorical(["due"] * n, categories=list(OUTCOMES)),
        "golden_top1": np.full(n, -1, np.int16),
        "faulty_top1": np.full(n, -1, np.int16),
        "max_abs_diff": np.full(n, np.inf, np.float32),
        "due_kind": kind,
    })


def select_sets(spec: CampaignSpec, out_dir: Path) -> list[InputSet]:
    """The campaign's input sets (profiled and selected once, then read back from the folder)."""
    path = out_dir / "sets.json"
    if path.exists():
        return [InputSet.from_dict(s) for s in json.loads(path.read_text())]
    if spec.selection.sets_file:
        sets = [InputSet.from_dict(s) for s in read_sets_file(Path(spec.selection.sets_file))]
    else:
        prof = profile(load_model(spec.model), load_data(spec.data), device=spec.run.device)
        write_profile(prof, out_dir / "profile.parquet")
        sets = [get_strategy(name).select(prof, spec.selection.k, seed=spec.selection.seed)
                for name in spec.selection.strategies]
    write_json_atomic([s.to_dict() for s in sets], path)
    return sets


def plan_chunks(spec: CampaignSpec) -> list[list[Chunk]]:
    """Chunks of every fault model, in order, up to the cap."""
    size, cap = spec.run.chunk_faults, spec.stopping.max_faults
    return [[Chunk(i, f.model if _unique(spec, f) else f"{f.model}-{i}", j, start, min(start + size, cap))
             for j, start in enumerate(range(0, cap, size))] for i, f in enumerate(spec.faults)]


def _unique(spec: CampaignSpec, fault: FaultSpec) -> bool:
    return sum(f.model == fault.model for f in spec.faults) == 1


class StoppingRule:
    """Running per-set counts and the stop test at chunk boundaries."""

    def __init__(self, spec: CampaignSpec, sets: list[InputSet]):
        self.spec, self.sets = spec, sets
        self.critical = {s.name: 0 for s in sets}
        self.trials = {s.name: 0 for s in sets}

    def add(self, rows: pd.DataFrame) -> None:
        crit = rows["outcome"] == "sdc_critical"
        for s in self.sets:
            mine = rows["input_id"].isin(s.input_ids)
            self.critical[s.name] += int((crit & mine).sum())
            self.trials[s.name] += int(mine.sum())

    def half_widths(self) -> dict[str, float]:
        interval = stats.wilson_interval if self.spec.stopping.interval == "wilson" else stats.clopper_pearson_interval
        out = {}
        for name in self.critical:
            low, high = interval(self.critical[name], self.trials[name], self.spec.stopping.confidence)
            out[name] = (high - low) / 2
        return out

    def targets(self) -> dict[str, float]:
        """Target half-width per set that has one."""
        target = self.spec.stopping.target_half_width
        if target is None:
            return {}
        if not isinstance(target, dict):
            return {name: target for name in self.critical}
        unknown = sorted(set(target) - set(self.critical))
        if unknown:
            raise ConfigError(f"Expected `stopping.target_half_width` keys among {', '.join(self.critical)}, got {', '.join(unknown)}.")
        return dict(target)

    def met(self) -> bool:
        targets, widths = self.targets(), self.half_widths()
        return bool(targets) and all(widths[name] <= t for name, t in targets.items())

    def rates(self) -> dict[str, float]:
        return {n: self.critical[n] / self.trials[n] if self.trials[n] else float("nan") for n in self.critical}


Reporter = Callable[[str, Chunk, StoppingRule, int, float], None]


def run_campaign(spec: CampaignSpec, out_dir: Path, report: Reporter | None = None, backend=None) -> dict:
    """Run (or resume) the campaign in ``out_dir``; returns the manifest's stopping records."""
    from faultsift.campaign.backends import make_backend
    from faultsift.study import versions

    out_dir = Path(out_dir)
    store = CampaignStore(out_dir)
    store.open(spec.model_dump(mode="json"), spec.results_hash(), versions())
    sets = select_sets(spec, out_dir)
    input_ids = np.unique(np.concatenate([np.asarray(s.input_ids, np.int64) for s in sets]))
    backend = backend or make_backend(spec, input_ids)
    try:
        for chunks in plan_chunks(spec):
            _run_fault_model(spec, chunks, store, sets, input_ids, backend, report)
    finally:
        backend.close()
    return store.manifest["stopped"]


def _run_fault_model(spec, chunks, store, sets, input_ids, backend, report) -> None:
    rule = StoppingRule(spec, sets)
    rule.targets()  # unknown set names fail before any work
    name = chunks[0].fault_model
    expected = {c.index: (c.stop - c.start) * len(input_ids) for c in chunks}
    position = 0
    while position < len(chunks):
        chunk = chunks[position]
        if store.finished(name, chunk.index, expected[chunk.index]) is None:
            wave = [c for c in chunks[position : position + backend.parallelism]
                    if store.finished(name, c.index, expected[c.index]) is None]
            started = time.perf_counter()
            for c, rows in zip(wave, backend.evaluate(wave)):
                store.write_shard(name, c.index, rows)
            seconds = time.perf_counter() - started
        else:
            seconds = 0.0
        rows = read_parquet(store.shard_path(name, chunk.index))
        rule.add(rows)
        if report is not None:
            report(name, chunk, rule, len(rows), seconds)
        position += 1
        if rule.met():
            store.set_stopped(name, {"faults": chunk.stop, "reason": "target_half_width",
                                     "half_widths": rule.half_widths()})
            return
    store.set_stopped(name, {"faults": chunks[-1].stop, "reason": "max_faults", "half_widths": rule.half_widths()})


def load_results(out_dir: Path) -> pd.DataFrame:
    """All trial rows of a campaign folder as one DataFrame (only chunks within the stopping point)."""
    out_dir = Path(out_dir)
    manifest_path = out_dir / "manifest.json"
    if not manifest_path.exists():
        raise LoadError(f"{out_dir} holds no campaign (no manifest.json); run `faultsift campaign run` first.")
    manifest = json.loads(manifest_path.read_text())
    parts = []
    for key in sorted(manifest["chunks"]):
        fault_model, chunk = key.rsplit("/", 1)
        stop = manifest.get("stopped", {}).get(fault_model, {}).get("faults")
        rows = read_parquet(out_dir / "trials" / f"fault_model={fault_model}" / f"chunk-{chunk}.parquet")
        rows.insert(0, "fault_model", fault_model)
        parts.append(rows if stop is None else rows[rows["fault_id"] < stop])
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
