"""The whole beam chain without a beam: watchdog -> harness with the emulator -> analysis.

Real processes as on a beam line: ``faultsift beam supervise -- faultsift beam run --emulate``.
The emulator injects faults at Poisson times and crashes or hangs the harness; the watchdog
must bring it back every time, and the analysis of the logs must count exactly what the
emulator's ground-truth record says: every fault that produced an error (per log), every
critical one, and every crash and hang as a DUE of the right log.
"""

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta

import pytest

from faultsift.beam.analysis import analyze_logs
from faultsift.beam.emulator import read_ground_truth
from faultsift.beam.flux import read_flux
from faultsift.beam.logformat import parse_log, parse_log_text

FAULTSIFT = [sys.executable, "-m", "faultsift"]


@pytest.fixture(scope="module")
def golden(tmp_path_factory, hard_pool, zoo_models):
    """Two input sets of the ViT chosen as `faultsift select` does, and their golden file."""
    from faultsift.beam.harness import make_golden
    from faultsift.profile import profile
    from faultsift.selection.strategies import get_strategy

    folder = tmp_path_factory.mktemp("beam")
    prof = profile(zoo_models["digits-vit"], hard_pool)
    sets = [get_strategy(name).select(prof, 16, seed=0) for name in ("low-confidence", "random")]
    (folder / "sets.json").write_text(json.dumps([s.to_dict() for s in sets]))
    make_golden("zoo:digits-vit", "zoo:digits-hard", sets, folder / "vit.golden.safetensors")
    return folder / "vit.golden.safetensors"


def run_campaign(folder, golden, duration: float, rotate: float, seed: int, rate: float = 2.0):
    logs = folder / "logs"
    harness = [*FAULTSIFT, "beam", "run", str(golden), "--log-dir", str(logs), "--rotate", str(rotate),
               "--emulate", str(rate), "--emulate-crash", "0.07", "--emulate-hang", "0.07",
               "--emulate-seed", str(seed), "--it-seconds", "0.5", "--host", "dut-1"]
    command = [*FAULTSIFT, "beam", "supervise", "--log-dir", str(logs), "--timeout", "5", "--startup-timeout", "90",
               "--duration", str(duration), "--kill-grace", "3", "--host", "dut-1", "--", *harness]
    started = datetime.now()
    result = subprocess.run(command, capture_output=True, text=True, timeout=duration + 180,
                            env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr[-3000:]
    return logs, started, datetime.now()


def check_against_ground_truth(logs, started, ended, expect_both_kinds: bool):
    (server_path,) = logs.glob("*_server_dut-1.log")
    server = parse_log_text(server_path.read_text(), server_path)
    dues = [e for e in server.server if e.kind == "due"]
    starts = [e for e in server.server if e.kind == "other" and e.message.startswith("#SERVER_START")]
    truth = read_ground_truth(logs / "emulator.jsonl")
    kills = [r for r in truth if r["kind"] in ("crash", "hang")]
    faults = [r for r in truth if r["kind"] == "fault"]

    # every crash and hang is one DUE of the log it happened in, and the watchdog restarted the harness
    assert Counter((r["log"], r["kind"]) for r in kills) == Counter(
        (e.fields["log"], "crash" if e.fields["kind"] == "crash" else "hang") for e in dues)
    assert all(e.fields["streak"] == "1" for e in dues)
    restarted = [e for e in dues if "at_stop" not in e.fields]
    assert len(starts) == 1 + len(restarted)
    assert "reason:duration" in server_path.read_text().splitlines()[-1]
    assert kills, "the emulator produced no crash or hang"
    if expect_both_kinds:
        assert {r["kind"] for r in kills} == {"crash", "hang"}

    # every fault that produced an error is one #SDC line of its log (and critical ones are critical)
    device_logs = sorted(p for p in logs.glob("*.log") if p != server_path)
    assert len(device_logs) >= len(restarted)  # the last restart may not have reached its first line
    for path in device_logs:
        log = parse_log(path)
        mine = [r for r in faults if r["log"] == path.name]
        assert sorted(s.ite for s in log.sdcs) == sorted({r["iteration"] for r in mine if r["error"]}), path.name
        assert log.critical_count == len({r["iteration"] for r in mine if r["critical"]}), path.name
        assert all(s.complete for s in log.sdcs)
    assert any(r["error"] for r in faults), "no emulated fault produced an error"

    # the analysis, with a flux file covering the run, counts the same per input set
    flux = logs.parent / "flux.csv"
    t0 = started - timedelta(seconds=30)
    flux.write_text("time,flux\n" + "".join(f"{(t0 + timedelta(seconds=10 * i)).isoformat()},1e6\n"
                                           for i in range(int((ended - t0).total_seconds() / 10) + 5)))
    result = analyze_logs([logs], read_flux([flux]))
    assert not any("unknown header keys" in w for w in result.warnings)
    table = result.table.set_index("set")
    for set_name, row in table.iterrows():
        mine_logs = {p.name for p in device_logs if parse_log(p).header["set"] == set_name}
        errors = {(r["log"], r["iteration"]) for r in faults if r["error"] and r["log"] in mine_logs}
        critical = {(r["log"], r["iteration"]) for r in faults if r["critical"] and r["log"] in mine_logs}
        assert row["sdc"] == len(errors) and row["critical"] == len(critical)
        assert row["due"] == sum(r["log"] in mine_logs for r in kills)
        assert row["flux_coverage"] == pytest.approx(1.0)
        assert row["fluence"] == pytest.approx(1e6 * row["wall_s"], rel=1e-6)
        if row["sdc"]:
            assert row["sigma_sdc"] == pytest.approx(row["sdc"] / row["fluence"])
    assert table["due"].sum() == len(kills)
    return result


def test_emulated_beam_short(golden, tmp_path):
    logs, started, ended = run_campaign(tmp_path, golden, duration=30, rotate=12, seed=6)
    check_against_ground_truth(logs, started, ended, expect_both_kinds=False)
    # the command line analysis reads the same logs and writes its tables
    out = tmp_path / "results"
    flux = tmp_path / "flux.csv"
    result = subprocess.run([*FAULTSIFT, "beam", "analyze", str(logs), "--flux", str(flux), "--out", str(out)],
                            capture_output=True, text=True, timeout=180, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert "sigma SDC cm2 [95%]" in result.stdout and "digits-vit" in result.stdout
    payload = json.loads((out / "beam_analysis.json").read_text())
    assert payload["has_flux"] and payload["configs"] and (out / "beam_configs.csv").is_file()


@pytest.mark.slow
def test_emulated_beam_minutes_with_crashes_and_hangs(golden, tmp_path):
    logs, started, ended = run_campaign(tmp_path, golden, duration=150, rotate=20, seed=9, rate=3.0)
    result = check_against_ground_truth(logs, started, ended, expect_both_kinds=True)
    assert set(result.table["set"]) == {"low-confidence", "random"}
