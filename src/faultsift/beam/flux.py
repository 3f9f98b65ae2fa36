"""Facility flux logs and fluence over the time a device was running.

Formats (STUDY.md §2), read as they come:

- ChipIR (ISIS) counter log: ``Data From ChipIR`` then ``DD/MM/YYYY HH:MM:SS .mmm D40 D20 D30
  FISSION IntCurrent_uAh Current_uA`` every ~3 s (cumulative, zero-padded counters; ``\\r\\r\\n``
  line ends; ``N/A`` fields). Flux = delta(FISSION) x factor / seconds x distance factor.
- LANSCE pulse log: ``YYYY-MM-DD HH:MM:SS,mmm <cumulative count>``; flux = delta x factor /
  seconds x 20^2/(x+20)^2 for a board x metres behind the reference (:func:`lansce_distance_factor`).
- CSV: a time column (ISO date-time or Unix seconds) and either a cumulative counter column
  (``counter``/``count``/``counts``/``fission``) or a ``flux`` column (n/(cm^2 s), held until
  the next row).

Each file becomes segments ``[t0, t1)`` with a constant flux; counters are differenced only
between two lines of the same file (they reset between files), a counter that goes down
(a reset inside a file) drops that segment, and a segment with no counts is beam-off.
Times are the facility's local clock as naive date-times; ``time_offset`` (seconds) moves
them onto the device's clock.

Example::

    series = read_flux(Path("chipir_counter.txt"), factor=1.2e5)
    fluence, covered_s, beam_on_s = series.fluence(start, stop)
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterable

import numpy as np

from faultsift.errors import ConfigError, LoadError

EPOCH = datetime(1970, 1, 1)
FLUX_FORMATS = ("auto", "chipir", "lansce", "csv")
_LANSCE = re.compile(r"^(\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?)\s+([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*$")
_CHIPIR_TIME = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")
COUNTER_COLUMNS = ("counter", "count", "counts", "fission", "pulses")
FLUX_COLUMNS = ("flux",)


def seconds(t: datetime) -> float:
    """A naive date-time as seconds on one common axis (no time zone arithmetic)."""
    return (t - EPOCH).total_seconds()


def from_seconds(s: float) -> datetime:
    return EPOCH + timedelta(seconds=float(s))


def lansce_distance_factor(metres_behind: float) -> float:
    """LANSCE flux attenuation for a board ``metres_behind`` the reference position: 20^2/(x+20)^2."""
    if metres_behind < 0:
        raise ConfigError(f"Expected a distance behind the reference >= 0 m, got {metres_behind}.")
    return 20.0**2 / (metres_behind + 20.0) ** 2


@dataclass
class FluxSeries:
    """Piecewise-constant flux: segment ``i`` covers ``[t0[i], t1[i])`` with ``flux[i]`` n/(cm^2 s)."""

    t0: np.ndarray
    t1: np.ndarray
    flux: np.ndarray
    sources: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def empty(cls) -> "FluxSeries":
        return cls(np.empty(0), np.empty(0), np.empty(0))

    @classmethod
    def combine(cls, parts: Iterable["FluxSeries"]) -> "FluxSeries":
        parts = list(parts)
        if not parts:
            return cls.empty()
        t0 = np.concatenate([p.t0 for p in parts])
        t1 = np.concatenate([p.t1 for p in parts])
        flux = np.concatenate([p.flux for p in parts])
        order = np.argsort(t0, kind="stable")
        series = cls(t0[order], t1[order], flux[order], [s for p in parts for s in p.sources],
                     [w for p in parts for w in p.warnings])
        if len(order) > 1 and np.any(series.t0[1:] < series.t1[:-1] - 1e-9):
            series.warnings.append("Flux files overlap in time; overlapping periods count once per file.")
        return series

    @property
    def beam_on(self) -> np.ndarray:
        return self.flux > 0

    @property
    def span(self) -> tuple[datetime, datetime] | None:
        if not len(self.t0):
            return None
        return from_seconds(self.t0.min()), from_seconds(self.t1.max())

    def fluence(self, start: datetime, stop: datetime) -> tuple[float, float, float]:
        """Fluence (n/cm^2) over ``[start, stop]``, seconds of it covered by the flux log, seconds with beam on."""
        a, b = seconds(start), seconds(stop)
        if b <= a or not len(self.t0):
            return 0.0, 0.0, 0.0
        overlap = np.clip(np.minimum(self.t1, b) - np.maximum(self.t0, a), 0.0, None)
        return (float(np.sum(overlap * self.flux)), float(np.sum(overlap)), float(np.sum(overlap[self.beam_on])))

    def scaled(self, factor: float) -> "FluxSeries":
        return FluxSeries(self.t0, self.t1, self.flux * factor, self.sources, self.warnings)


def _segments_from_counter(times: list[float], counts: list[float], factor: float, source: str,
                           warnings: list[str], max_gap: float) -> FluxSeries:
    t = np.asarray(times, float)
    c = np.asarray(counts, float)
    if len(t) < 2:
        warnings.append(f"{source}: fewer than two readable counter lines; no flux from this file.")
        return FluxSeries(np.empty(0), np.empty(0), np.empty(0), [source], warnings)
    dt, dc = np.diff(t), np.diff(c)
    keep = dt > 0
    back = int(np.sum(dt < 0))
    if back:
        warnings.append(f"{source}: {back} readings earlier than the one before; those intervals are skipped.")
    resets = keep & (dc < 0)
    if resets.any():
        warnings.append(f"{source}: counter went down {int(resets.sum())} times (reset); those intervals are skipped.")
    keep &= dc >= 0
    gaps = keep & (dt > max_gap)
    if gaps.any():
        warnings.append(f"{source}: {int(gaps.sum())} gaps longer than {max_gap:g} s between readings; the counts "
                        "across a gap are spread evenly over it.")
    flux = np.where(keep, dc * factor / np.where(dt > 0, dt, 1.0), 0.0)
    return FluxSeries(t[:-1][keep], t[1:][keep], flux[keep], [source], warnings)


def _open_text(path: Path) -> str:
    if not Path(path).is_file():
        raise LoadError(f"Flux file {path} does not exist.")
    return Path(path).read_bytes().replace(b"\x00", b"").decode("utf-8", errors="replace")


def read_chipir(path: Path, factor: float, distance_factor: float = 1.0, time_offset: float = 0.0,
                max_gap: float = 60.0) -> FluxSeries:
    """A ChipIR counter log: flux from the FISSION counter (see the module docstring)."""
    text = _open_text(path)
    warnings: list[str] = []
    times, counts = [], []
    bad = na = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if not tokens or line.strip().lower().startswith("data from chipir"):
            continue
        m = _CHIPIR_TIME.match(tokens[0])
        try:
            if not m or len(tokens) < 2:
                raise ValueError
            when = datetime.strptime(f"{tokens[0]} {tokens[1]}", "%d/%m/%Y %H:%M:%S")
            rest = tokens[2:]
            if rest and rest[0].startswith("."):
                when += timedelta(seconds=float("0" + rest[0]))
                rest = rest[1:]
            if len(rest) < 4:
                raise ValueError
            if rest[3].upper() == "N/A":
                na += 1
                continue
            counts.append(float(rest[3]))
            times.append(seconds(when) + time_offset)
        except ValueError:
            bad += 1
            if bad <= 3:
                warnings.append(f"{Path(path).name}:{lineno}: unreadable ChipIR line {line.strip()[:60]!r}; ignored.")
    if bad > 3:
        warnings.append(f"{Path(path).name}: {bad} unreadable lines in all.")
    if na:
        warnings.append(f"{Path(path).name}: {na} lines with N/A in the fission counter; ignored.")
    return _segments_from_counter(times, counts, factor * distance_factor, Path(path).name, warnings, max_gap)


def read_lansce(path: Path, factor: float, distance_factor: float = 1.0, time_offset: float = 0.0,
                max_gap: float = 60.0) -> FluxSeries:
    """A LANSCE pulse log: ``YYYY-MM-DD HH:MM:SS,mmm <cumulative count>`` per line."""
    text = _open_text(path)
    warnings: list[str] = []
    times, counts = [], []
    bad = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _LANSCE.match(line.strip())
        if not m:
            bad += 1
            if bad <= 3:
                warnings.append(f"{Path(path).name}:{lineno}: unreadable LANSCE line {line.strip()[:60]!r}; ignored.")
            continue
        times.append(seconds(datetime.fromisoformat(m[1].replace(",", ".").replace(" ", "T"))) + time_offset)
        counts.append(float(m[2]))
    if bad > 3:
        warnings.append(f"{Path(path).name}: {bad} unreadable lines in all.")
    return _segments_from_counter(times, counts, factor * distance_factor, Path(path).name, warnings, max_gap)


def _csv_time(text: str) -> float:
    text = text.strip()
    try:
        return seconds(datetime.fromtimestamp(float(text)))
    except ValueError:
        return seconds(datetime.fromisoformat(text.replace(",", ".").replace(" ", "T") if "T" not in text else text))


def read_csv_flux(path: Path, factor: float = 1.0, distance_factor: float = 1.0, time_offset: float = 0.0,
                  max_gap: float = 60.0) -> FluxSeries:
    """A CSV of (time, counter) or (time, flux); see the module docstring."""
    text = _open_text(path)
    rows = list(csv.reader(io.StringIO(text)))
    rows = [r for r in rows if any(c.strip() for c in r)]
    name = Path(path).name
    if not rows:
        raise LoadError(f"Flux file {path} is empty.")
    header = [c.strip().lower() for c in rows[0]]
    value_col = next((i for i, c in enumerate(header) if c in COUNTER_COLUMNS + FLUX_COLUMNS), None)
    if value_col is None:
        raise LoadError(f"Flux CSV {path} needs a header with a time column and one of "
                        f"{', '.join(COUNTER_COLUMNS + FLUX_COLUMNS)}; got {', '.join(header)}.")
    time_col = 0 if value_col != 0 else 1
    is_flux = header[value_col] in FLUX_COLUMNS
    warnings: list[str] = []
    times, values = [], []
    bad = 0
    for lineno, row in enumerate(rows[1:], 2):
        try:
            t = _csv_time(row[time_col]) + time_offset
            v = float(row[value_col])
            if not np.isfinite(v):
                raise ValueError
        except (ValueError, IndexError):
            bad += 1
            if bad <= 3:
                warnings.append(f"{name}:{lineno}: unreadable row {','.join(row)[:60]!r}; ignored.")
            continue
        times.append(t)
        values.append(v)
    if bad > 3:
        warnings.append(f"{name}: {bad} unreadable rows in all.")
    if not is_flux:
        return _segments_from_counter(times, values, factor * distance_factor, name, warnings, max_gap)
    t, v = np.asarray(times), np.asarray(values)
    if len(t) < 2:
        warnings.append(f"{name}: fewer than two readable rows; no flux from this file.")
        return FluxSeries(np.empty(0), np.empty(0), np.empty(0), [name], warnings)
    dt = np.diff(t)
    keep = dt > 0
    if (dt < 0).any():
        warnings.append(f"{name}: {int((dt < 0).sum())} rows earlier than the row before; those intervals are skipped.")
    if (v < 0).any():
        warnings.append(f"{name}: negative flux values set to 0.")
    flux = np.clip(v[:-1], 0, None) * factor * distance_factor
    return FluxSeries(t[:-1][keep], t[1:][keep], flux[keep], [name], warnings)


def detect_format(path: Path) -> str:
    """``chipir``, ``lansce`` or ``csv`` from the first non-blank line of ``path``."""
    text = _open_text(path)
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.strip().lower().startswith("data from chipir") or _CHIPIR_TIME.match(line.split()[0]):
            return "chipir"
        if _LANSCE.match(line.strip()):
            return "lansce"
        if "," in line:
            return "csv"
        break
    raise LoadError(f"Cannot tell the format of flux file {path}; pass `--flux-format chipir|lansce|csv`.")


def read_flux(paths: Iterable[Path], fmt: str = "auto", factor: float | None = None, distance_factor: float = 1.0,
              time_offset: float = 0.0) -> FluxSeries:
    """Read one or more flux files (each differenced on its own) into one series.

    ``factor`` converts counter deltas to n/cm^2 (required for counter logs) and scales
    flux columns (default 1); ``distance_factor`` is the board position's attenuation.
    """
    if fmt not in FLUX_FORMATS:
        raise ConfigError(f"Expected a flux format among {', '.join(FLUX_FORMATS)}, got `{fmt}`.")
    if distance_factor <= 0:
        raise ConfigError(f"Expected a distance factor > 0, got {distance_factor}.")
    parts = []
    for path in map(Path, paths):
        kind = detect_format(path) if fmt == "auto" else fmt
        if kind in ("chipir", "lansce") and factor is None:
            raise ConfigError(f"{path.name} is a {kind} counter log: give `--factor` (n/cm^2 per count at the "
                              "reference position) to turn counts into fluence.")
        if kind == "chipir":
            parts.append(read_chipir(path, factor, distance_factor, time_offset))
        elif kind == "lansce":
            parts.append(read_lansce(path, factor, distance_factor, time_offset))
        else:
            parts.append(read_csv_flux(path, 1.0 if factor is None else factor, distance_factor, time_offset))
    return FluxSeries.combine(parts)
