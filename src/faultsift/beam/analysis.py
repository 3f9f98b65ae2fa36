"""Cross sections from beam logs and flux: Garwood intervals, FIT, exact comparisons.

For each configuration (model, input set) found in the logs' headers:

- errors: SDC (``#SDC`` lines, plus ``#ERR`` lines left without one), critical SDC (an SDC
  with an ``#ERR critical ...`` line), DUE (watchdog ``#SERVER_DUE`` episodes: one episode
  is every escalation step until the device logs progress again; ``system`` when it needed
  an OS reboot or a power cycle),
- exposure: kernel time (largest AccTime of each log, never the last ``#SDC``'s), wall time
  the device was running (log start to its last line), and fluence: the flux integrated over
  that running time (``exposure="wall"``), beam-off and device-down gaps excluded because no
  log runs there or the flux is 0; or the mean flux while running times the kernel time
  (``exposure="kernel"``),
- cross section sigma = errors / fluence with the exact Poisson (Garwood) interval
  ``[chi2.ppf(a/2, 2k)/2, chi2.ppf(1-a/2, 2k+2)/2] / fluence`` and FIT = sigma x 13 x 1e9;
  without flux, errors per kernel second with the same interval.

Example::

    result = analyze_logs([Path("logs/")], flux=read_flux([Path("chipir.txt")], factor=1.2e5))
    result.table[["model", "set", "sdc", "sigma_sdc", "fit_critical"]]
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
from scipy.stats import chi2

from faultsift.beam.flux import FluxSeries
from faultsift.beam.logformat import ParsedLog, find_logs, parse_log
from faultsift.errors import ConfigError, LoadError

log = logging.getLogger(__name__)

NYC_FLUX = 13.0  # n/(cm^2 h), JESD89A sea level, New York City
EXPOSURES = ("wall", "kernel")
SET_KEYS = ("set", "input_set", "inputset", "img_list", "image_list", "dataset")
MODEL_KEYS = ("model", "benchmark", "bench", "network", "net")
OUR_HEADER_KEYS = {
    "tool", "version", "model", "data", "set", "strategy", "n_inputs", "input_ids", "golden", "golden_sha256",
    "threshold", "it_every", "max_errors", "max_repeat", "device", "dtype", "torch", "host", "ecc", "pid",
    "rotation", "window_s", "config_index", "configs", "emulate", "emulate_crash", "emulate_hang", "emulate_fault",
    "emulate_target", "emulate_seed", "attempt", "iterations", "duration_s", "seed", "benchmark", "it_seconds",
    "max_err_lines", "threads",
}


def garwood_interval(k: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact Poisson interval for a count ``k`` (in counts): k = 0 gives (0, 3.689) at 95%."""
    if k < 0 or int(k) != k:
        raise ConfigError(f"Expected a count >= 0, got {k}.")
    if not 0 < confidence < 1:
        raise ConfigError(f"Expected `confidence` in (0, 1), got {confidence}.")
    alpha = 1 - confidence
    low = 0.0 if k == 0 else float(chi2.ppf(alpha / 2, 2 * k) / 2)
    high = float(chi2.ppf(1 - alpha / 2, 2 * k + 2) / 2)
    return low, high


def rate_with_interval(k: int, exposure: float, confidence: float = 0.95) -> tuple[float, float, float]:
    """``k / exposure`` with its Garwood interval; NaNs when the exposure is 0."""
    if not exposure or exposure <= 0 or not math.isfinite(exposure):
        return float("nan"), float("nan"), float("nan")
    low, high = garwood_interval(k, confidence)
    return k / exposure, low / exposure, high / exposure


def fit_rate(sigma: float, flux_per_hour: float = NYC_FLUX) -> float:
    """Failures in time (per 1e9 device hours) at ``flux_per_hour`` n/(cm^2 h)."""
    return sigma * flux_per_hour * 1e9


def compare_rates(k1: int, exposure1: float, k2: int, exposure2: float) -> tuple[float, float]:
    """Rate ratio and the two-sided p-value of the exact conditional test
    (k1 | k1+k2 ~ Binomial(k1+k2, E1/(E1+E2)), statsmodels ``test_poisson_2indep`` ``exact-cond``)."""
    from statsmodels.stats.rates import test_poisson_2indep

    if exposure1 <= 0 or exposure2 <= 0:
        return float("nan"), float("nan")
    ratio = (k1 / exposure1) / (k2 / exposure2) if k2 else (float("inf") if k1 else float("nan"))
    if k1 + k2 == 0:
        return ratio, 1.0
    with np.errstate(divide="ignore", invalid="ignore"):  # statsmodels also divides by a zero count
        return ratio, float(test_poisson_2indep(k1, exposure1, k2, exposure2, method="exact-cond").pvalue)


# ---------------------------------------------------------------------------- per-log records


@dataclass
class LogRecord:
    """One device log reduced to what the analysis needs."""

    log: ParsedLog
    model: str
    set: str
    start: datetime | None
    end: datetime | None
    acc_time: float
    wall_s: float
    fluence: float = float("nan")
    covered_s: float = 0.0
    beam_on_s: float = 0.0
    due: int = 0
    due_system: int = 0
    due_actions: int = 0

    @property
    def config(self) -> tuple[str, str]:
        return self.model, self.set


def _lookup(header: dict[str, str], keys: Iterable[str]) -> str | None:
    lowered = {k.lower(): v for k, v in header.items()}
    for key in keys:
        if lowered.get(key):
            return lowered[key]
    return None


def config_of(parsed: ParsedLog) -> tuple[str, str]:
    """(model, input set) from the header; the file name's benchmark when the header lacks them."""
    model = _lookup(parsed.header, MODEL_KEYS) or (parsed.name.benchmark if parsed.name else parsed.label)
    input_set = _lookup(parsed.header, SET_KEYS) or ""
    return model, input_set


@dataclass
class BeamAnalysis:
    """Per-configuration table, pairwise tests, per-log records and every message."""

    table: pd.DataFrame
    tests: pd.DataFrame
    logs: list[LogRecord]
    warnings: list[str] = field(default_factory=list)
    exposure: str = "wall"
    has_flux: bool = False

    def to_json(self) -> dict:
        def clean(records):
            return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
                    for r in records]

        return {
            "exposure": self.exposure,
            "has_flux": self.has_flux,
            "configs": clean(self.table.to_dict("records")),
            "tests": clean(self.tests.to_dict("records")),
            "logs": [{"file": r.log.label, "model": r.model, "set": r.set,
                      "start": r.start.isoformat() if r.start else None, "end": r.end.isoformat() if r.end else None,
                      "acc_time": r.acc_time, "wall_s": r.wall_s,
                      "fluence": r.fluence if math.isfinite(r.fluence) else None, "covered_s": r.covered_s,
                      "sdc": r.log.sdc_count, "critical": r.log.critical_count, "due": r.due,
                      "ended": r.log.ended, "aborts": len(r.log.aborts)} for r in self.logs],
            "warnings": self.warnings,
        }


def _due_episodes(server_logs: list[ParsedLog], records: list[LogRecord], warnings: list[str]) -> None:
    """Give every ``#SERVER_DUE`` episode to the device log it happened in.

    The watchdog's lines name the log (``log:FILE``) and the step in the escalation streak
    (``streak:N``; 1 starts a new episode). Lines of other servers without them: the log that
    started last before the event (same host when the server log's name gives one), and
    every line is its own episode.
    """
    by_name = {r.log.label: r for r in records}
    timed = sorted((r for r in records if r.start is not None), key=lambda r: r.start)
    for server in server_logs:
        host = server.name.host if server.name else None
        current: LogRecord | None = None
        for event in server.server:
            if event.kind != "due":
                continue
            target = by_name.get(event.fields.get("log", ""))
            if target is None and event.time is not None:
                candidates = [r for r in timed if r.start <= event.time and
                              (not host or not r.log.name or r.log.name.host == host)] or \
                             [r for r in timed if r.start <= event.time]
                target = candidates[-1] if candidates else None
            if target is None:
                warnings.append(f"{server.label}:{event.line}: DUE `{event.message}` matches no device log "
                                "(no log named and none started before it); not counted.")
                continue
            streak = event.fields.get("streak")
            new_episode = streak is None or streak == "1" or current is None
            target.due_actions += 1
            if new_episode:
                target.due += 1
                current = target
                current_system = False
            if event.due_kind in ("os", "power") and (new_episode or not current_system):
                current.due_system += 1
                current_system = True


def _record(parsed: ParsedLog, flux: FluxSeries | None, exposure: str, warnings: list[str]) -> LogRecord:
    model, input_set = config_of(parsed)
    start, end = parsed.start, parsed.end
    wall = max((end - start).total_seconds(), 0.0) if start and end else 0.0
    rec = LogRecord(parsed, model, input_set, start, end, parsed.acc_time, wall)
    if start is None:
        warnings.append(f"{parsed.label}: no start time (no #BEGIN, no dated file name); no fluence.")
        return rec
    if not parsed.has_line_times and parsed.acc_time > 0:
        warnings.append(f"{parsed.label}: no line times (no server prefix, no .jsonl twin); the running time is "
                        "taken as #BEGIN + AccTime, a lower bound.")
    if end is not None and end < start:
        warnings.append(f"{parsed.label}: last line ({end}) is earlier than the start ({start}); no fluence.")
        return rec
    if flux is not None:
        fluence, covered, beam_on = flux.fluence(start, end)
        rec.covered_s, rec.beam_on_s = covered, beam_on
        if wall > 0 and covered < wall - 1e-6:
            span = flux.span
            where = f"flux covers {span[0]} to {span[1]}" if span else "no flux data"
            warnings.append(f"{parsed.label}: the flux log covers {covered:.0f} s of the {wall:.0f} s the device ran "
                            f"({start} to {end}; {where}); fluence counts the covered part only.")
        if exposure == "kernel":
            rec.fluence = fluence / covered * parsed.acc_time if covered > 0 else 0.0
        else:
            rec.fluence = fluence
    return rec


def _unknown_keys(parsed: ParsedLog, warnings: list[str]) -> None:
    if parsed.header.get("tool") == "faultsift":
        unknown = sorted(set(parsed.header) - OUR_HEADER_KEYS - {"_text"})
        if unknown:
            warnings.append(f"{parsed.label}: unknown header keys {', '.join(unknown)} (a newer faultsift?); kept, "
                            "not used.")


def analyze(parsed_logs: list[ParsedLog], flux: FluxSeries | None = None, exposure: str = "wall",
            confidence: float = 0.95, flux_per_hour: float = NYC_FLUX) -> BeamAnalysis:
    """Cross sections per (model, input set) from parsed logs (device and server logs)."""
    if exposure not in EXPOSURES:
        raise ConfigError(f"Expected `exposure` among {', '.join(EXPOSURES)}, got `{exposure}`.")
    warnings: list[str] = []
    for p in parsed_logs:
        warnings += p.warnings
        _unknown_keys(p, warnings)
    if flux is not None:
        warnings += flux.warnings
    device_logs = [p for p in parsed_logs if p.header_text or p.iterations or p.sdcs or not p.server]
    server_logs = [p for p in parsed_logs if p.server]
    records = [_record(p, flux, exposure, warnings) for p in device_logs]
    _due_episodes(server_logs, records, warnings)
    table = _config_table(records, flux is not None, confidence, flux_per_hour)
    tests = _pairwise_tests(table, flux is not None)
    return BeamAnalysis(table, tests, records, warnings, exposure, flux is not None)


def _config_table(records: list[LogRecord], has_flux: bool, confidence: float, flux_per_hour: float) -> pd.DataFrame:
    rows = []
    for (model, input_set), group in itertools.groupby(sorted(records, key=lambda r: r.config), key=lambda r: r.config):
        group = list(group)
        sdc = sum(r.log.sdc_count for r in group)
        critical = sum(r.log.critical_count for r in group)
        due = sum(r.due for r in group)
        acc = sum(r.acc_time for r in group)
        row = {
            "model": model, "set": input_set, "logs": len(group),
            "iterations": sum(r.log.last_ite for r in group),
            "kernel_s": acc, "wall_s": sum(r.wall_s for r in group),
            "sdc": sdc, "critical": critical, "due": due, "due_system": sum(r.due_system for r in group),
            "aborts": sum(len(r.log.aborts) for r in group),
            "unfinished_logs": sum(not r.log.ended for r in group),
            "critical_share": critical / sdc if sdc else float("nan"),
        }
        if has_flux:
            fluence = float(sum(r.fluence for r in group if math.isfinite(r.fluence)))
            covered, wall = sum(r.covered_s for r in group), row["wall_s"]
            row.update(fluence=fluence, flux_coverage=covered / wall if wall else float("nan"),
                       beam_on_s=sum(r.beam_on_s for r in group))
            for what, k in (("sdc", sdc), ("critical", critical), ("due", due)):
                sigma, low, high = rate_with_interval(k, fluence, confidence)
                row.update({f"sigma_{what}": sigma, f"sigma_{what}_low": low, f"sigma_{what}_high": high,
                            f"fit_{what}": fit_rate(sigma, flux_per_hour),
                            f"fit_{what}_low": fit_rate(low, flux_per_hour),
                            f"fit_{what}_high": fit_rate(high, flux_per_hour)})
        for what, k in (("sdc", sdc), ("critical", critical), ("due", due)):
            rate, low, high = rate_with_interval(k, acc, confidence)
            row.update({f"{what}_per_kernel_s": rate, f"{what}_per_kernel_s_low": low,
                        f"{what}_per_kernel_s_high": high})
        rows.append(row)
    return pd.DataFrame(rows)


def _pairwise_tests(table: pd.DataFrame, has_flux: bool) -> pd.DataFrame:
    """Exact conditional tests between the input sets of each model (SDC and critical SDC)."""
    rows = []
    if table.empty:
        return pd.DataFrame(rows)
    exposure_col = "fluence" if has_flux else "kernel_s"
    for model, group in table.groupby("model", sort=True):
        for (_, a), (_, b) in itertools.combinations(group.iterrows(), 2):
            for what in ("critical", "sdc", "due"):
                ratio, p = compare_rates(int(a[what]), float(a[exposure_col]), int(b[what]), float(b[exposure_col]))
                rows.append({"model": model, "set_a": a["set"], "set_b": b["set"], "errors": what,
                             "k_a": int(a[what]), "k_b": int(b[what]), "exposure": exposure_col,
                             "ratio": ratio, "p_value": p})
    return pd.DataFrame(rows)


def analyze_logs(paths: Iterable[Path], flux: FluxSeries | None = None, exposure: str = "wall",
                 confidence: float = 0.95, hosts: Iterable[str] = ()) -> BeamAnalysis:
    """Parse every log under ``paths`` (files or folders) and :func:`analyze` them."""
    paths = [Path(p) for p in paths]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise LoadError(f"No such log file or folder: {', '.join(missing)}.")
    files = find_logs(paths)
    if not files:
        raise LoadError(f"No log files found in {', '.join(str(p) for p in paths)}.")
    parsed, unreadable = [], []
    for path in files:
        try:
            parsed.append(parse_log(path, hosts))
        except OSError as exc:
            unreadable.append(f"{path}: cannot read ({exc}); skipped.")
    result = analyze(parsed, flux, exposure, confidence)
    result.warnings[:0] = unreadable
    return result


# ---------------------------------------------------------------------------- software vs beam


def read_campaign_rates(folder: Path) -> pd.DataFrame:
    """Per-set software critical rates from a ``faultsift inject`` or ``faultsift study`` folder."""
    path = Path(folder) / "summary.json"
    if not path.is_file():
        raise LoadError(f"{folder} has no summary.json; give a folder written by `faultsift inject` or `faultsift study`.")
    try:
        summary = json.loads(path.read_text())
    except ValueError as exc:
        raise LoadError(f"{path} is not valid JSON ({exc}).") from None
    rows = []

    def add(model: str, campaign: dict) -> None:
        for s in campaign.get("sets", []):
            rows.append({"model": model, "fault_model": campaign.get("fault_model", ""), "set": s["set"],
                         "sw_trials": s.get("trials"), "sw_critical": s.get("critical"), "sw_rate": s.get("rate"),
                         "sw_ci_low": s.get("ci_low"), "sw_ci_high": s.get("ci_high")})

    if "campaign" in summary:
        models = summary.get("config", {}).get("models", ["?"])
        add(models[0], summary["campaign"])
    for label, info in summary.get("models", {}).items():
        for campaign in info.get("fault_models", {}).values():
            add(info.get("spec", label), campaign)
    if not rows:
        raise LoadError(f"{path} holds no per-set results.")
    return pd.DataFrame(rows)


def _model_key(spec: str) -> str:
    return spec.split(":", 1)[1].split(":", 1)[0] if ":" in spec else spec


def compare_with_software(table: pd.DataFrame, software: pd.DataFrame, has_flux: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Beam and software critical rates side by side per set, and rank agreement between sets
    (Spearman and Kendall tau-b over the sets both measured, per model and fault model)."""
    from scipy.stats import kendalltau, spearmanr

    beam_col = "sigma_critical" if has_flux else "critical_per_kernel_s"
    beam = table.assign(model_key=table["model"].map(_model_key))
    sw = software.assign(model_key=software["model"].map(_model_key))
    merged = beam.merge(sw, on=["model_key", "set"], suffixes=("", "_sw"))
    side = merged[["model", "fault_model", "set", "critical", beam_col, f"{beam_col}_low", f"{beam_col}_high",
                   "sw_critical", "sw_trials", "sw_rate", "sw_ci_low", "sw_ci_high"]].rename(
        columns={beam_col: "beam_rate", f"{beam_col}_low": "beam_low", f"{beam_col}_high": "beam_high",
                 "critical": "beam_critical"})
    agreement = []
    for (model, fm), group in side.groupby(["model", "fault_model"], sort=True):
        n = len(group)
        rho = tau = float("nan")
        if n >= 3:
            rho = float(spearmanr(group["beam_rate"], group["sw_rate"]).statistic)
            tau = float(kendalltau(group["beam_rate"], group["sw_rate"]).statistic)
        agreement.append({"model": model, "fault_model": fm, "sets": n, "spearman": rho, "kendall_tau_b": tau,
                          "same_top_set": bool(n and group["beam_rate"].idxmax() == group["sw_rate"].idxmax())})
    return side.reset_index(drop=True), pd.DataFrame(agreement)
