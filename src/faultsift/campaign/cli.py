"""``faultsift campaign ...`` and ``faultsift replay``: spec-driven, resumable campaigns."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from faultsift.errors import ConfigError

campaign_app = typer.Typer(no_args_is_help=True, help="Spec-driven campaigns: init, plan, run (resumable), status.")
console = Console()
err_console = Console(stderr=True)


def _rates_text(rule) -> str:
    return ", ".join(f"{name} {100 * rate:.2f}%" for name, rate in rule.rates().items() if not math.isnan(rate))


@campaign_app.command("init")
def init(path: Path = typer.Argument(Path("campaign.toml"), help="Where to write the example spec.")) -> None:
    """Write a commented example spec (TOML)."""
    from faultsift.campaign.spec import EXAMPLE_SPEC

    if path.exists():
        raise ConfigError(f"{path} already exists; give another path.")
    path.write_text(EXAMPLE_SPEC)
    console.print(f"Example spec written to {path}; run it with `faultsift campaign run {path} --out DIR`.")


@campaign_app.command("run")
def run(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="Campaign spec (.toml, .yaml)."),
    out: Path = typer.Option(..., help="Campaign folder; an existing one made by the same spec is resumed."),
    backend: Optional[str] = typer.Option(None, help="local, processes or dask (overrides the spec)."),
    workers: Optional[int] = typer.Option(None, help="Worker processes (processes, dask LocalCluster)."),
    scheduler: Optional[str] = typer.Option(None, help="Dask scheduler address, e.g. tcp://host:8786."),
    engine: Optional[str] = typer.Option(None, help="fast or reference (overrides the spec; same outcomes)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="One plain line per chunk instead of a progress bar."),
) -> None:
    """Run or resume a campaign; progress shows trials/s, ETA and the running critical rate per set."""
    from faultsift.campaign.runner import plan_chunks, run_campaign
    from faultsift.campaign.spec import load_spec

    spec = load_spec(spec_path).with_run(backend=backend, workers=workers, scheduler=scheduler, engine=engine)
    plain = quiet or not err_console.is_terminal
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[speed]} trials/s"),
                        TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[rates]}"),
                        console=err_console, disable=plain)
    tasks = {}
    totals = {chunks[0].fault_model: len(chunks) for chunks in plan_chunks(spec)}

    def report(name, chunk, rule, rows, seconds):
        speed = f"{rows / seconds:,.0f}" if seconds > 0 else "-"
        if plain:
            state = "done" if seconds > 0 else "already stored"
            print(f"{name} chunk {chunk.index + 1}/{totals[name]} ({state}): {rows:,} trials, {speed} trials/s; "
                  f"critical: {_rates_text(rule)}", file=sys.stderr, flush=True)
            return
        if name not in tasks:
            tasks[name] = progress.add_task(name, total=totals[name], speed="-", rates="")
        progress.update(tasks[name], advance=1, speed=speed, rates=_rates_text(rule))

    with progress:
        stopped = run_campaign(spec, out, report)
    for name, info in stopped.items():
        console.print(f"{name}: stopped after {info['faults']:,} faults ({info['reason']})")
    console.print(f"Results in {out} (load with faultsift.load_results).")


@campaign_app.command("status")
def status(out: Path = typer.Argument(..., metavar="DIR", help="Campaign folder.")) -> None:
    """Progress and running estimates of a campaign folder."""
    import json

    from faultsift import stats
    from faultsift.campaign.runner import load_results, plan_chunks
    from faultsift.campaign.spec import CampaignSpec
    from faultsift.selection.strategies import InputSet

    try:
        stored = json.loads((out / "spec.json").read_text())
        spec = CampaignSpec.model_validate(stored["spec"])
        sets = [InputSet.from_dict(s) for s in json.loads((out / "sets.json").read_text())]
    except (OSError, ValueError, KeyError):
        raise ConfigError(f"{out} holds no readable campaign (spec.json, sets.json); run `faultsift campaign run`.") from None
    manifest = json.loads((out / "manifest.json").read_text())
    rows = load_results(out)
    table = Table("fault model", "chunks", "faults", "set", "trials", "critical", "rate % [Wilson 95%]", "state")
    for chunks in plan_chunks(spec):
        name = chunks[0].fault_model
        done = sum(f"{name}/{c.index:05d}" in manifest["chunks"] for c in chunks)
        mine = rows[rows["fault_model"] == name] if len(rows) else rows
        stop = manifest.get("stopped", {}).get(name)
        state = f"stopped ({stop['reason']})" if stop else "running or interrupted"
        for s in sets:
            trials = mine[mine["input_id"].isin(s.input_ids)] if len(mine) else mine
            k, n = int((trials["outcome"] == "sdc_critical").sum()) if len(trials) else 0, len(trials)
            low, high = stats.wilson_interval(k, n) if n else (float("nan"), float("nan"))
            rate = f"{100 * k / n:.2f} [{100 * low:.2f}, {100 * high:.2f}]" if n else "-"
            faults = mine["fault_id"].nunique() if len(mine) else 0
            table.add_row(name, f"{done}/{len(chunks)}", f"{faults:,}", s.name, f"{n:,}", f"{k:,}", rate, state)
    console.print(table)


@campaign_app.command("plan")
def plan(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="Campaign spec."),
    margin: float = typer.Option(0.01, help="Target error margin e of a rate."),
    confidence: float = typer.Option(0.95, help="Confidence level."),
) -> None:
    """How many faults the spec needs (Leveugle et al., DATE 2009) for each fault model."""
    from faultsift import stats
    from faultsift.campaign.runner import build_fault_model
    from faultsift.campaign.spec import load_spec
    from faultsift.data import load_data
    from faultsift.faults.sites import discover_sites
    from faultsift.models import load_model, zoo_entry

    spec = load_spec(spec_path)
    model, data, entry = load_model(spec.model), load_data(spec.data), zoo_entry(spec.model)
    table = Table("fault model", "fault population N", f"faults needed (e={margin}, {confidence:.0%})", "spec max_faults")
    for fault in spec.faults:
        sites = discover_sites(model, data.inputs[:2], list(fault.sites) or list(entry.site_classes if entry else []))
        fm = build_fault_model(fault, spec.model)
        if fault.model == "bitflip":
            population: float = sum(s.numel * (_top_bit(fm, s) - fm.bit_low + 1) for s in sites)
        else:
            population = math.inf  # continuous parameters: an unbounded population
        needed = stats.leveugle_sample_size(population, margin, confidence)
        table.add_row(fault.model, f"{population:,.0f}" if math.isfinite(population) else "unbounded",
                      f"{needed:,}", f"{spec.stopping.max_faults:,}")
    console.print(table)


def _top_bit(fault_model, site) -> int:
    from faultsift.faults.bits import bit_width, dtype_from_name

    width = bit_width(dtype_from_name(site.dtype))
    return width - 1 if fault_model.bit_high is None else fault_model.bit_high


def replay(
    out: Path = typer.Argument(..., metavar="DIR", help="Campaign folder."),
    fault_id: int = typer.Argument(..., help="The fault to replay."),
    fault_model: Optional[str] = typer.Option(None, help="Fault model name (default: the first of the spec)."),
) -> None:
    """Replay one fault of a campaign alone and compare with the stored trial rows."""
    import json

    import numpy as np

    from faultsift.campaign.runner import CampaignContext, Chunk, load_results, plan_chunks
    from faultsift.campaign.spec import CampaignSpec
    from faultsift.selection.strategies import InputSet

    spec = CampaignSpec.model_validate(json.loads((out / "spec.json").read_text())["spec"])
    sets = [InputSet.from_dict(s) for s in json.loads((out / "sets.json").read_text())]
    names = [chunks[0].fault_model for chunks in plan_chunks(spec)]
    name = fault_model or names[0]
    if name not in names:
        raise ConfigError(f"Expected `--fault-model` among {', '.join(names)}, got {name}.")
    if not 0 <= fault_id < spec.stopping.max_faults:
        raise ConfigError(f"Expected `FAULT_ID` in [0, {spec.stopping.max_faults - 1}], got {fault_id}.")
    input_ids = np.unique(np.concatenate([np.asarray(s.input_ids, np.int64) for s in sets]))
    context = CampaignContext(spec, input_ids)
    chunk = Chunk(names.index(name), name, fault_id // spec.run.chunk_faults, fault_id, fault_id + 1)
    fault = context.faults(chunk)[0]
    replayed = context.evaluate(chunk)
    stored = load_results(out)
    stored = stored[(stored["fault_model"] == name) & (stored["fault_id"] == fault_id)]
    console.print(f"fault {fault_id} of {name}: site {fault.site.name}, {len(fault.indices)} element(s)")
    console.print(replayed["outcome"].value_counts().to_string())
    if stored.empty:
        console.print("not stored yet in this folder")
        return
    same = (replayed.sort_values("input_id")["outcome"].astype(str).to_numpy()
            == stored.sort_values("input_id")["outcome"].astype(str).to_numpy()).all()
    console.print(f"matches the stored rows: {'yes' if same else 'NO'}")
    if not same:
        raise typer.Exit(1)
