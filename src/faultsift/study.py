"""The main job: profile, select input sets, inject faults, compare the sets.

For each model: one golden pass over the pool, the four input sets (random, low- and
high-confidence, fi-ranked from a screening campaign with its own seed), then for each fault
model one campaign whose fault list is applied to every set (paired design), and the
statistics per set. Results go to ``out_dir``: profiles, faults and trials as Parquet,
``summary.json``, ``results.md`` and ``margins.png``.

Example::

    summary = run_study(validated(StudyConfig, n_faults=500), Path("runs/quick"))
"""

from __future__ import annotations

import logging
import platform
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import pandas as pd
import torch
from torch import nn

from faultsift import __version__
from faultsift.analysis import analyse_sets
from faultsift.campaign.plan import faults_frame, plan_faults
from faultsift.campaign.store import write_json_atomic, write_parquet_atomic, write_text_atomic
from faultsift.config import StudyConfig
from faultsift.data import Dataset, image_preprocess, load_data
from faultsift.engine.outcome import OUTCOMES
from faultsift.engine import make_engine
from faultsift.engine.reference import ReferenceEngine
from faultsift.errors import ConfigError
from faultsift.faults.models import FaultModel, make_fault_model
from faultsift.faults.sites import Site, discover_sites
from faultsift.models import check_hookable, init_note, load_model, zoo_entry
from faultsift.profile import profile, write_profile
from faultsift.selection.strategies import InputSet, get_strategy

log = logging.getLogger(__name__)


class Progress(Protocol):
    """Receives progress: ``task(description, total)`` returns an ``advance(n)`` callable."""

    def task(self, description: str, total: int) -> Callable[[int], None]: ...


class SilentProgress:
    def task(self, description: str, total: int) -> Callable[[int], None]:
        return lambda n: None


def model_label(spec: str) -> str:
    """Short name of a model spec for folders and tables (``zoo:digits-vit`` -> ``digits-vit``)."""
    return spec.split(":", 1)[1].split(":", 1)[0].replace("/", "_")


def build_fault_model(name: str, config: StudyConfig, model_spec: str) -> FaultModel:
    """A fault model configured for one model (beam rows follow the zoo model's table mapping)."""
    if name == "bitflip":
        return make_fault_model(name, bit_low=config.bit_low, bit_high=config.bit_high)
    if name.startswith("beam-"):
        entry = zoo_entry(model_spec)
        table_model = entry.beam_table_model if entry else "vit_base_patch16_224"
        microops = entry.beam_microops if entry else None
        if config.dtype == "bf16":
            raise ConfigError(f"Expected `dtype` fp32 or fp16 for `{name}` (the beam table has no bf16 rows), got bf16.")
        return make_fault_model(name, table_model=table_model, microops=microops, threshold=config.beam_threshold,
                                precision=config.dtype)
    return make_fault_model(name)


def run_trials(engine: ReferenceEngine, data: Dataset, input_ids: np.ndarray, faults, batch_size: int,
               advance: Callable[[int], None]) -> pd.DataFrame:
    """Every fault on every input of ``input_ids``, in input chunks of ``batch_size``."""
    parts = []
    chunks = [np.array(input_ids[i : i + batch_size], dtype=np.int64) for i in range(0, len(input_ids), batch_size)]
    for chunk in chunks:
        parts.append(engine.run(data.inputs[chunk], chunk, faults, on_fault=lambda n: advance(n * len(chunk))))
    return pd.concat(parts, ignore_index=True)


def screening_rates(trials: pd.DataFrame) -> pd.Series:
    """Per-input critical-SDC rate of a screening campaign (input id -> rate)."""
    critical = trials["outcome"] == "sdc_critical"
    return critical.groupby(trials["input_id"]).mean()


def select_sets(prof: pd.DataFrame, config: StudyConfig, screening: pd.Series | None) -> list[InputSet]:
    sets = []
    for name in config.strategies:
        kwargs = {"screening": screening} if name in ("fi-ranked", "learned") else {}
        sets.append(get_strategy(name, **kwargs).select(prof, config.k, seed=config.selection_seed))
    return sets


def versions() -> dict:
    """Versions and machine facts stored with every result."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    import timm

    return {
        "faultsift": __version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else (platform.processor() or "cpu"),
        "git_commit": commit,
    }


def pool_margins(prof: pd.DataFrame) -> dict:
    """Margin distribution facts of a profiled pool."""
    m = prof["margin"].to_numpy()
    return {
        "inputs": len(prof),
        "accuracy": float(prof["correct"].mean()),
        "margin_below_0.01": float((m < 0.01).mean()),
        "margin_below_0.1": float((m < 0.1).mean()),
        "margin_quantiles": {q: float(np.quantile(m, float(q))) for q in ("0.05", "0.25", "0.5", "0.75")},
    }


def check_out_dir(out_dir: Path) -> None:
    """Refuse to write into a folder that already holds results."""
    if (out_dir / "summary.json").exists():
        raise ConfigError(f"Output folder {out_dir} already holds study results; choose a new `--out` folder.")


def run_study(config: StudyConfig, out_dir: Path, progress: Progress | None = None) -> dict:
    """Run the whole main job and write its results to ``out_dir``; returns the summary."""
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    progress = progress or SilentProgress()
    torch.manual_seed(0)  # nothing here draws from it; fixed so third-party code is reproducible too
    loaded: dict = {}
    reference_pool = load_data("zoo:digits") if config.data == "zoo:digits-hard" else None
    summary: dict = {
        "config": config.model_dump(mode="json"),
        "versions": versions(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "models": {},
    }
    margins: dict[str, dict[str, np.ndarray]] = {}
    for model_spec, weights in zip(config.models, model_weights(config)):
        label = model_label(model_spec)
        model = load_model(model_spec, weights, dtype=config.dtype, num_classes=config.num_classes)
        data = _pool(config, model, loaded)
        model_dir = out_dir / label
        prof = profile(model, data, config.batch_size, config.device)
        check_k(prof, config, f"`{model_spec}` ({init_note(model_spec, weights)}) on `{config.data}`")
        write_profile(prof, model_dir / "profile.parquet")
        pools = {config.data: pool_margins(prof)}
        margins[label] = {config.data: prof["margin"].to_numpy()}
        if reference_pool is not None:
            ref_prof = profile(model, reference_pool, config.batch_size, config.device)
            pools[reference_pool.name] = pool_margins(ref_prof)
            margins[label][reference_pool.name] = ref_prof["margin"].to_numpy()
        sites = _sites(model, model_spec, data, config)
        summary["models"][label] = {"spec": model_spec, "pools": pools, "sites": [s.name for s in sites],
                                    "init": init_note(model_spec, weights), "dtype": config.dtype,
                                    "skipped_inputs": [list(item) for item in data.skipped], "fault_models": {}}
        for fm_name in config.fault_models:
            result = _campaign(model, model_spec, label, fm_name, sites, prof, data, config, model_dir, progress)
            summary["models"][label]["fault_models"][fm_name] = result
    summary["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    from faultsift.report.figures import margin_figure
    from faultsift.report.tables import markdown_report

    margin_figure(margins, out_dir / "margins.png")
    write_text_atomic(markdown_report(summary), out_dir / "results.md")
    write_json_atomic(_json_safe(summary), out_dir / "summary.json")
    if config.report:
        from faultsift.report.html import write_report

        write_report(out_dir, n_boot=min(config.n_boot, 400), seed=config.fault_seed)
    return summary


def model_weights(config: StudyConfig) -> list[str | None]:
    """The weights file of each model (None: the model's own or random init)."""
    if config.weights and len(config.weights) != len(config.models):
        raise ConfigError(f"Expected one weights file per model ({len(config.models)}), got {len(config.weights)}.")
    return [w or None for w in config.weights] or [None] * len(config.models)


def _pool(config: StudyConfig, model: nn.Module, loaded: dict) -> Dataset:
    """The pool for one model: images are preprocessed as the model expects, decoded once per preprocessing."""
    preprocess = image_preprocess(config.data, model, config.preprocess)
    if preprocess not in loaded:
        loaded[preprocess] = load_data(config.data, preprocess=preprocess, labels=config.labels, limit=config.limit,
                                       subset=config.subset, seed=config.selection_seed)
    return loaded[preprocess]


def check_k(prof: pd.DataFrame, config: StudyConfig, what: str) -> None:
    """Margin-based and fi-ranked sets take correctly classified inputs: say plainly when too few are."""
    correct = int(prof["correct"].sum())
    if any(s != "random" for s in config.strategies) and correct < config.k <= len(prof):
        raise ConfigError(
            f"Expected `k` <= {correct}, the correctly classified inputs of {what} ({len(prof)} inputs); "
            f"lower `-k`, give trained `--weights`, or use a larger pool."
        )


def _sites(model: nn.Module, model_spec: str, data: Dataset, config: StudyConfig) -> list[Site]:
    check_hookable(model, model_spec)
    entry = zoo_entry(model_spec)
    patterns = list(config.sites) or (list(entry.site_classes) if entry else [])
    if not patterns:
        raise ConfigError(f"Expected `sites` for non-built-in model `{model_spec}`; give module class or qualified names.")
    return discover_sites(model, data.inputs[:2], patterns)


def _campaign(model, model_spec, label, fm_name, sites, prof, data, config, model_dir, progress) -> dict:
    started = time.perf_counter()
    fault_model = build_fault_model(fm_name, config, model_spec)
    engine = make_engine(config.engine, model, fault_model, config.threshold, config.device)
    camp_dir = model_dir / fm_name
    screening, screen_info = None, None
    if "fi-ranked" in config.strategies:
        candidates = prof.loc[prof["correct"], "input_id"].to_numpy()
        screen_faults = plan_faults(sites, fault_model, config.n_screen_faults, config.screen_seed)
        advance = progress.task(f"{label} {fm_name} screening", len(candidates) * len(screen_faults))
        screen_trials = run_trials(engine, data, candidates, screen_faults, config.batch_size, advance)
        write_parquet_atomic(screen_trials, camp_dir / "screening_trials.parquet")
        screening = screening_rates(screen_trials)
        screen_info = {"inputs": len(candidates), "faults": len(screen_faults), "seed": config.screen_seed,
                       "inputs_with_critical": int((screening > 0).sum())}
    sets = select_sets(prof, config, screening)
    faults = plan_faults(sites, fault_model, config.n_faults, config.fault_seed)
    union = np.unique(np.concatenate([np.asarray(s.input_ids) for s in sets]))
    advance = progress.task(f"{label} {fm_name} campaign", len(union) * len(faults))
    trials = run_trials(engine, data, union, faults, config.batch_size, advance)
    write_parquet_atomic(faults_frame(faults), camp_dir / "faults.parquet")
    write_parquet_atomic(trials, camp_dir / "trials.parquet")
    rows = analyse_sets(trials, sets, n_boot=config.n_boot, seed=config.fault_seed)
    for row in rows:
        ids = list(row["input_ids"])
        row["margin_median"] = float(prof.set_index("input_id").loc[ids, "margin"].median())
    counts = trials["outcome"].value_counts().reindex(list(OUTCOMES), fill_value=0)
    return {"fault_model": fm_name, "params": fault_model.params(), "n_faults": len(faults), "seed": config.fault_seed,
            "outcomes": {k: int(v) for k, v in counts.items()}, "screening": screen_info, "sets": rows,
            "seconds": round(time.perf_counter() - started, 1)}


def _json_safe(obj):
    """NaN -> null, +-inf -> "inf"/"-inf", numpy scalars -> Python (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        if np.isnan(value):
            return None
        if np.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj
