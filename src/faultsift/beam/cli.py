"""``faultsift beam``: golden file, harness, watchdog and cross-section analysis.

Example::

    faultsift beam golden zoo:digits-vit zoo:digits-hard --sets sets.json --out vit.golden.safetensors
    faultsift beam supervise --log-dir logs --timeout 10 -- faultsift beam run vit.golden.safetensors --log-dir logs
    faultsift beam analyze logs --flux chipir.txt --factor 1.2e5 --out results
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import List, Optional

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from faultsift.errors import ConfigError

beam_app = typer.Typer(no_args_is_help=True, help="Beam experiments: golden file, harness, watchdog, cross sections.")
console = Console()
err_console = Console(stderr=True)


def _split(values: Optional[str]) -> tuple[str, ...]:
    return tuple(v.strip() for v in values.split(",") if v.strip()) if values else ()


@beam_app.command("golden")
def golden_cmd(
    model: str = typer.Argument(..., help="Model spec, e.g. zoo:digits-vit."),
    data: str = typer.Argument(..., help="Data spec of the pool the sets index, e.g. zoo:digits-hard."),
    sets: Path = typer.Option(..., help="Sets file from `faultsift select`."),
    names: Optional[str] = typer.Option(None, "--set", help="Comma-separated set names (default: every set)."),
    out: Path = typer.Option(..., help="Golden file to write (.safetensors)."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
    threshold: float = typer.Option(1e-5, help="Absolute output difference that counts as an error."),
) -> None:
    """Run the model on each input set and write the golden file the harness loads."""
    from faultsift.beam.harness import make_golden
    from faultsift.selection.strategies import read_sets_file
    from faultsift.selection.strategies import InputSet

    all_sets = [InputSet.from_dict(s) for s in read_sets_file(sets)]
    wanted = _split(names)
    chosen = [s for s in all_sets if not wanted or s.name in wanted]
    missing = sorted(set(wanted) - {s.name for s in all_sets})
    if missing:
        raise ConfigError(f"{sets} has no set(s) {', '.join(missing)}; it has {', '.join(s.name for s in all_sets)}.")
    meta = make_golden(model, data, chosen, out, device, threshold)
    for s in meta["sets"]:
        console.print(f"{s['name']}: {s['n_inputs']} inputs")
    console.print(f"golden file -> {out}")


@beam_app.command("run")
def run_cmd(
    goldens: List[Path] = typer.Argument(..., metavar="GOLDEN...", help="Golden files from `faultsift beam golden`."),
    log_dir: Path = typer.Option(Path("logs"), help="Folder for the logs (and rotation.json)."),
    sets: Optional[str] = typer.Option(None, help="Comma-separated set names (default: every set of every file)."),
    iterations: int = typer.Option(0, help="Stop after this many iterations (0: no limit)."),
    duration: float = typer.Option(0.0, help="Stop after this many seconds (0: no limit)."),
    it_every: int = typer.Option(1000, help="Log #IT every N iterations ..."),
    it_seconds: float = typer.Option(1.0, help="... and at least every S seconds (the watchdog's heartbeat)."),
    threshold: Optional[float] = typer.Option(None, help="Absolute difference counted as an error (default: the golden file's)."),
    max_errors: int = typer.Option(500, help="#ABORT when one iteration has more wrong output values than this."),
    max_repeat: int = typer.Option(2, help="#ABORT when this many iterations in a row have the same error count (0: never)."),
    rotate: float = typer.Option(0.0, help="Cycle through the configurations in windows of this many seconds."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
    host: Optional[str] = typer.Option(None, help="Host name in the log names (default: this machine's)."),
    ecc: str = typer.Option("auto", help="ECC in the log names: auto, on or off."),
    threads: int = typer.Option(1, help="CPU threads for torch (0: torch's default)."),
    emulate: Optional[float] = typer.Option(None, help="Emulated beam: fault events per second (testing without a beam)."),
    emulate_crash: float = typer.Option(0.0, help="Probability that an emulated event crashes the process."),
    emulate_hang: float = typer.Option(0.0, help="Probability that an emulated event hangs the process."),
    emulate_fault: str = typer.Option("bitflip", help="Fault model of emulated faults: bitflip, beam-body, beam-full."),
    emulate_target: str = typer.Option("activations", help="activations, weights or both."),
    emulate_seed: int = typer.Option(0, help="Seed of the emulator (combined with the watchdog's attempt number)."),
    emulate_record: Optional[Path] = typer.Option(None, help="Ground-truth record (default: <log-dir>/emulator.jsonl)."),
) -> None:
    """The device-under-test loop: infer, compare with golden, log every error; see the README."""
    import sys

    from faultsift.beam.emulator import EmulatorConfig
    from faultsift.beam.harness import HarnessConfig, run_harness

    emulator = None
    if emulate is not None:
        emulator = EmulatorConfig(rate=emulate, record=emulate_record or log_dir / "emulator.jsonl",
                                  p_crash=emulate_crash, p_hang=emulate_hang, fault_model=emulate_fault,
                                  target=emulate_target, seed=emulate_seed).check()
    cfg = HarnessConfig(goldens=tuple(goldens), log_dir=log_dir, sets=_split(sets), iterations=iterations,
                        duration=duration, it_every=it_every, it_seconds=it_seconds, threshold=threshold,
                        max_errors=max_errors, max_repeat=max_repeat, rotate=rotate, device=device, host=host,
                        ecc=ecc.lower(), threads=threads, emulate=emulator)
    sys.exit(run_harness(cfg))


@beam_app.command("supervise", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def supervise_cmd(
    ctx: typer.Context,
    log_dir: Path = typer.Option(Path("logs"), help="Folder whose *.log growth is the heartbeat."),
    server_log: Optional[Path] = typer.Option(None, help="Server log (default: <log-dir>/<date>_server_<host>.log)."),
    timeout: float = typer.Option(10.0, help="Seconds without log progress that count as a hang."),
    startup_timeout: float = typer.Option(120.0, help="Seconds allowed before a fresh child writes its first line."),
    max_app_restarts: int = typer.Option(3, help="App restarts in a row before the reboot hook."),
    reboot_cmd: Optional[str] = typer.Option(None, help="Shell command for the `soft OS reboot` step."),
    power_cycle_cmd: Optional[str] = typer.Option(None, help="Shell command for the `power cycle` step."),
    max_power_cycles: int = typer.Option(3, help="Power cycles in a row before giving up."),
    duration: float = typer.Option(0.0, help="Stop after this many seconds (0: until the child exits 0)."),
    host: Optional[str] = typer.Option(None, help="Host name in the server log name."),
    kill_grace: float = typer.Option(10.0, help="Seconds between SIGTERM and SIGKILL when the supervision ends."),
) -> None:
    """Run `-- CMD...` and restart it after crashes and hangs (no log progress for --timeout s)."""
    import sys

    from faultsift.beam.watchdog import Watchdog, WatchdogConfig

    command = [a for a in ctx.args if a != "--"] if ctx.args[:1] == ["--"] else list(ctx.args)
    cfg = WatchdogConfig(command=tuple(command), log_dir=log_dir, server_log=server_log, timeout=timeout,
                         startup_timeout=startup_timeout, max_app_restarts=max_app_restarts, reboot_cmd=reboot_cmd,
                         power_cycle_cmd=power_cycle_cmd, max_power_cycles=max_power_cycles, duration=duration,
                         host=host, kill_grace=kill_grace)
    watchdog = Watchdog(cfg)
    err_console.print(f"supervising {' '.join(command)}; server log {watchdog.server_log}", markup=False)
    sys.exit(watchdog.run())


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if value != 0 else "0"
    return str(value)


def _interval(row, key: str) -> str:
    return f"{_fmt(row[key])} [{_fmt(row[key + '_low'])}, {_fmt(row[key + '_high'])}]"


@beam_app.command("analyze")
def analyze_cmd(
    logs: List[Path] = typer.Argument(..., metavar="LOGS...", help="Log files or folders (device and server logs)."),
    flux: Optional[List[Path]] = typer.Option(None, help="Facility flux file(s); repeat for several."),
    flux_format: str = typer.Option("auto", help="auto, chipir, lansce or csv."),
    factor: Optional[float] = typer.Option(None, help="n/cm^2 per counter count at the reference position (counter logs)."),
    distance_factor: Optional[float] = typer.Option(None, help="Attenuation for the board's position (default 1)."),
    lansce_distance: Optional[float] = typer.Option(None, help="LANSCE: metres behind the reference (sets the distance factor)."),
    time_offset: float = typer.Option(0.0, help="Seconds added to flux times to put them on the device's clock."),
    exposure: str = typer.Option("wall", help="wall: flux over the running time; kernel: mean flux x kernel time."),
    campaign: Optional[Path] = typer.Option(None, help="Fault-injection folder (inject or study) to compare with."),
    host: Optional[List[str]] = typer.Option(None, help="Known host names (older log names are ambiguous)."),
    out: Optional[Path] = typer.Option(None, help="Folder for beam_configs.csv, beam_tests.csv, beam_analysis.json."),
) -> None:
    """Cross sections (Garwood 95%), FIT, exact tests between sets, from logs and a flux file."""
    from faultsift.beam.analysis import analyze_logs, compare_with_software, read_campaign_rates
    from faultsift.beam.flux import lansce_distance_factor, read_flux

    if lansce_distance is not None and distance_factor is not None:
        raise ConfigError("Give `--distance-factor` or `--lansce-distance`, not both.")
    dist = lansce_distance_factor(lansce_distance) if lansce_distance is not None else (distance_factor or 1.0)
    series = read_flux(flux, flux_format, factor, dist, time_offset) if flux else None
    result = analyze_logs(logs, series, exposure, hosts=host or ())
    for message in result.warnings:
        err_console.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)
    table = result.table
    if table.empty:
        raise ConfigError("No device log found among the inputs (only server logs or unreadable files).")
    wide = Console(width=200) if not console.is_terminal else console
    t = Table(title=f"Beam results ({'fluence: ' + result.exposure if result.has_flux else 'no flux: per kernel second'})",
              title_justify="left", box=box.SIMPLE_HEAD)
    cols = ["model", "set", "logs", "kernel s", "SDC", "critical", "DUE", "crit. share"]
    if result.has_flux:
        cols += ["fluence n/cm2", "sigma SDC cm2 [95%]", "sigma critical cm2 [95%]", "sigma DUE cm2 [95%]",
                 "FIT critical [95%]"]
    else:
        cols += ["SDC / kernel s [95%]", "critical / kernel s [95%]", "DUE / kernel s [95%]"]
    for c in cols:
        t.add_column(c)
    for _, row in table.iterrows():
        cells = [str(row["model"]), str(row["set"]), str(row["logs"]), _fmt(row["kernel_s"]), str(row["sdc"]),
                 str(row["critical"]), str(row["due"]), _fmt(row["critical_share"], 2)]
        if result.has_flux:
            cells += [_fmt(row["fluence"]), _interval(row, "sigma_sdc"), _interval(row, "sigma_critical"),
                      _interval(row, "sigma_due"), _interval(row, "fit_critical")]
        else:
            cells += [_interval(row, "sdc_per_kernel_s"), _interval(row, "critical_per_kernel_s"),
                      _interval(row, "due_per_kernel_s")]
        t.add_row(*cells)
    wide.print(t)
    tests = result.tests
    if not tests.empty:
        tt = Table(title="Exact conditional tests between input sets", title_justify="left", box=box.SIMPLE_HEAD)
        for c in ("model", "set A", "set B", "errors", "k A", "k B", "rate ratio A/B", "p"):
            tt.add_column(c)
        for _, r in tests.iterrows():
            tt.add_row(str(r["model"]), str(r["set_a"]), str(r["set_b"]), str(r["errors"]), str(r["k_a"]),
                       str(r["k_b"]), _fmt(r["ratio"]), _fmt(r["p_value"]))
        wide.print(tt)
    payload = result.to_json()
    if campaign is not None:
        side, agreement = compare_with_software(table, read_campaign_rates(campaign), result.has_flux)
        st = Table(title="Software fault injection vs beam (critical SDC)", title_justify="left", box=box.SIMPLE_HEAD)
        for c in ("model", "fault model", "set", "beam rate [95%]", "beam k", "software rate [95%]", "software k/n"):
            st.add_column(c)
        for _, r in side.iterrows():
            st.add_row(str(r["model"]), str(r["fault_model"]), str(r["set"]),
                       f"{_fmt(r['beam_rate'])} [{_fmt(r['beam_low'])}, {_fmt(r['beam_high'])}]", str(r["beam_critical"]),
                       f"{_fmt(r['sw_rate'])} [{_fmt(r['sw_ci_low'])}, {_fmt(r['sw_ci_high'])}]",
                       f"{r['sw_critical']}/{r['sw_trials']}")
        wide.print(st)
        for _, a in agreement.iterrows():
            wide.print(f"{a['model']} / {a['fault_model']}: {a['sets']} sets, Spearman {_fmt(a['spearman'])}, "
                       f"Kendall tau-b {_fmt(a['kendall_tau_b'])}, same top set: {a['same_top_set']}")
        payload["software"] = {"sets": side.to_dict("records"), "agreement": agreement.to_dict("records")}
    if out is not None:
        from faultsift.campaign.store import write_json_atomic, write_text_atomic
        from faultsift.study import _json_safe

        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(table.to_csv(index=False), out / "beam_configs.csv")
        write_text_atomic(tests.to_csv(index=False), out / "beam_tests.csv")
        write_json_atomic(_json_safe(payload), out / "beam_analysis.json")
        console.print(f"Results: {out}/beam_configs.csv, {out}/beam_tests.csv, {out}/beam_analysis.json")
