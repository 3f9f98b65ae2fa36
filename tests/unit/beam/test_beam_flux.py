"""Facility flux logs: ChipIR, LANSCE and CSV, file boundaries, resets, beam-off."""

from datetime import datetime, timedelta

import numpy as np
import pytest

from faultsift.beam.flux import (detect_format, lansce_distance_factor, read_chipir, read_csv_flux, read_flux,
                                 read_lansce)
from faultsift.errors import ConfigError, LoadError

T0 = datetime(2024, 11, 5, 14, 0, 0)


def chipir_text(start: datetime, counts: list, step: float = 3.0, na_at: int | None = None) -> bytes:
    """A ChipIR counter log as it comes: header, ``\\r\\r\\n`` line ends, zero-padded counters."""
    lines = ["Data From ChipIR"]
    for i, c in enumerate(counts):
        t = start + timedelta(seconds=step * i)
        current = "0.00" if i and c == counts[i - 1] else "40.12"
        fission = "N/A" if i == na_at else f"{c:08d}"
        lines.append(f"{t:%d/%m/%Y %H:%M:%S} .{t.microsecond // 1000:03d} {100 + i:08d} {200 + i:08d} "
                     f"{300 + i:08d} {fission} {12.5 + i * 0.01:.2f} {current}")
    return ("\r\r\n".join(lines) + "\r\r\n").encode()


def test_chipir_flux_beam_off_and_na(tmp_path):
    # 10 counts per 3 s, then beam off for 3 intervals, then 10 per 3 s again
    counts = [0, 10, 20, 30, 30, 30, 30, 40, 50]
    path = tmp_path / "counter.txt"
    path.write_bytes(chipir_text(T0, counts, na_at=None))
    series = read_chipir(path, factor=1e5, distance_factor=0.5)
    assert len(series.t0) == 8 and detect_format(path) == "chipir"
    np.testing.assert_allclose(series.flux, [10 * 1e5 * 0.5 / 3] * 3 + [0] * 3 + [10 * 1e5 * 0.5 / 3] * 2)
    fluence, covered, beam_on = series.fluence(T0, T0 + timedelta(seconds=24))
    assert fluence == pytest.approx(50 * 1e5 * 0.5) and covered == 24 and beam_on == 15
    half = series.fluence(T0 + timedelta(seconds=1.5), T0 + timedelta(seconds=4.5))[0]
    assert half == pytest.approx(10 * 1e5 * 0.5)  # a partial segment counts its share
    # an N/A fission counter drops that reading; the delta spans the two neighbours
    path.write_bytes(chipir_text(T0, counts, na_at=2))
    na = read_chipir(path, factor=1e5)
    assert len(na.t0) == 7 and any("N/A" in w for w in na.warnings)
    assert na.fluence(T0, T0 + timedelta(seconds=24))[0] == pytest.approx(50 * 1e5)


def test_chipir_never_differences_across_files(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_bytes(chipir_text(T0, [1000, 1010, 1020]))
    # the counters reset in the next file, which starts 60 s after the last line of the first
    b.write_bytes(chipir_text(T0 + timedelta(seconds=66), [0, 10, 20]))
    series = read_flux([a, b], factor=1.0)
    fluence, covered, _ = series.fluence(T0, T0 + timedelta(seconds=72))
    assert fluence == pytest.approx(40) and covered == pytest.approx(12)  # the 60 s gap is not covered
    assert not any(series.flux < 0)


def test_counter_reset_inside_a_file_and_bad_lines(tmp_path):
    path = tmp_path / "c.txt"
    text = chipir_text(T0, [0, 10, 20, 5, 15]).decode() + "garbage line\r\r\n"
    path.write_text(text)
    series = read_chipir(path, factor=1.0)
    assert len(series.t0) == 3 and series.fluence(T0, T0 + timedelta(seconds=12))[0] == pytest.approx(30)
    joined = " ".join(series.warnings)
    assert "reset" in joined and "unreadable ChipIR line" in joined


def test_lansce_pulses_and_distance(tmp_path):
    lines = [f"{T0 + timedelta(seconds=i):%Y-%m-%d %H:%M:%S},{500:03d} {1000 + 7 * i}" for i in range(11)]
    path = tmp_path / "lansce.log"
    path.write_text("\n".join(lines) + "\n")
    assert detect_format(path) == "lansce"
    factor = lansce_distance_factor(2.0)
    assert factor == pytest.approx(400 / 484)
    series = read_lansce(path, factor=3.0, distance_factor=factor)
    fluence = series.fluence(T0, T0 + timedelta(seconds=20))[0]
    assert fluence == pytest.approx(70 * 3.0 * factor)
    with pytest.raises(ConfigError, match="distance"):
        lansce_distance_factor(-1)


def test_csv_counter_and_flux_columns(tmp_path):
    counter = tmp_path / "counter.csv"
    counter.write_text("timestamp,counter\n" + "".join(
        f"{(T0 + timedelta(seconds=10 * i)).isoformat()},{100 * i}\n" for i in range(4)))
    s = read_flux([counter], factor=2.0)
    assert s.fluence(T0, T0 + timedelta(seconds=30))[0] == pytest.approx(600)
    flux = tmp_path / "flux.csv"
    epoch = datetime(2024, 1, 1).timestamp()
    flux.write_text("time,flux\n" + f"{epoch},1e6\n{epoch + 10},0\n{epoch + 20},2e6\n{epoch + 30},2e6\nbad,row\n")
    f = read_csv_flux(flux, distance_factor=0.5)
    start = datetime.fromtimestamp(epoch)
    fluence, covered, beam_on = f.fluence(start, start + timedelta(seconds=30))
    assert fluence == pytest.approx(0.5 * (1e6 * 10 + 2e6 * 10)) and covered == 30 and beam_on == 20
    assert any("unreadable row" in w for w in f.warnings)
    assert detect_format(flux) == "csv"


def test_flux_errors_are_one_line(tmp_path):
    with pytest.raises(LoadError, match="does not exist"):
        read_flux([tmp_path / "missing.txt"], factor=1.0)
    chipir = tmp_path / "c.txt"
    chipir.write_bytes(chipir_text(T0, [0, 1]))
    with pytest.raises(ConfigError, match="--factor"):
        read_flux([chipir])
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(LoadError, match="header"):
        read_flux([bad])
    with pytest.raises(ConfigError, match="flux format"):
        read_flux([bad], fmt="isis")


def test_time_offset_moves_the_flux(tmp_path):
    path = tmp_path / "c.txt"
    path.write_bytes(chipir_text(T0, [0, 30]))
    shifted = read_chipir(path, factor=1.0, time_offset=3600)
    assert shifted.fluence(T0, T0 + timedelta(seconds=3))[0] == 0
    assert shifted.fluence(T0 + timedelta(hours=1), T0 + timedelta(hours=1, seconds=3))[0] == pytest.approx(30)
