"""Campaigns as a user runs them: real subprocesses, SIGKILL, resume, backends, stopping."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest
from scipy.stats import binomtest

from faultsift import load_results
from faultsift.campaign.runner import run_campaign
from faultsift.campaign.spec import load_spec
from faultsift.errors import ConfigError

SPEC = """
model = "zoo:digits-vit"
[selection]
strategies = ["random", "low-confidence"]
k = 6
[[faults]]
model = "bitflip"
[[faults]]
model = "beam-body"
[run]
chunk_faults = 10
seed = 5
[stopping]
max_faults = {max_faults}
"""
KEY = ["fault_model", "fault_id", "input_id"]


def write_spec(path: Path, max_faults: int = 120, extra: str = "") -> Path:
    path.write_text(SPEC.format(max_faults=max_faults) + extra)
    return path


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "faultsift", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


def sorted_rows(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["outcome"] = df["outcome"].astype(str)
    return df.sort_values(KEY).reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref")
    spec = write_spec(root / "spec.toml")
    run_campaign(load_spec(spec), root / "out")
    return spec, sorted_rows(load_results(root / "out"))


def test_reference_run_is_complete(reference):
    _, rows = reference
    assert len(rows) == 2 * 120 * rows["input_id"].nunique()
    assert not rows.duplicated(KEY).any()
    assert set(rows["fault_model"]) == {"bitflip", "beam-body"}


def test_sigkill_at_random_moments_then_resume_gives_the_same_rows(reference, tmp_path):
    spec, expected = reference
    out = tmp_path / "killed"
    rng = np.random.default_rng(0)
    kills = 0
    while True:
        proc = subprocess.Popen([sys.executable, "-m", "faultsift", "campaign", "run", str(spec), "--out", str(out),
                                 "--quiet"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        wait_lines = int(rng.integers(0, 4))
        for _ in range(wait_lines):
            if not proc.stderr.readline():
                break
        time.sleep(float(rng.uniform(0, 0.08)))
        if proc.poll() is None and kills < 12:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            continue
        proc.communicate(timeout=600)
        if proc.returncode == 0 and kills >= 10:
            break
        if proc.returncode == 0:  # finished before enough kills: start over in a new folder
            out = tmp_path / f"killed{kills}"
    got = sorted_rows(load_results(out))
    pd.testing.assert_frame_equal(got, expected)


def test_corrupt_and_truncated_shards_are_redone(reference, tmp_path):
    spec, expected = reference
    out = tmp_path / "c"
    run_campaign(load_spec(spec), out)
    shards = sorted((out / "trials").rglob("chunk-*.parquet"))
    flipped, truncated = shards[1], shards[5]
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    truncated.write_bytes(truncated.read_bytes()[:100])
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["chunks"][next(iter(manifest["chunks"]))]  # a shard the manifest does not know yet
    (out / "manifest.json").write_text(json.dumps(manifest))
    run_campaign(load_spec(spec), out)
    assert (flipped.parent / f".{flipped.name}.corrupt").exists() and (truncated.parent / f".{truncated.name}.corrupt").exists()
    pd.testing.assert_frame_equal(sorted_rows(load_results(out)), expected)
    dataset = ds.dataset(out / "trials", format="parquet", partitioning="hive")
    assert dataset.to_table().num_rows == len(expected)


def test_other_spec_is_refused(reference, tmp_path):
    spec, _ = reference
    out = tmp_path / "o"
    run_campaign(load_spec(write_spec(tmp_path / "small.toml", max_faults=20)), out)
    before = sorted(p.name for p in out.rglob("*"))
    with pytest.raises(ConfigError, match="different spec"):
        run_campaign(load_spec(spec), out)
    assert sorted(p.name for p in out.rglob("*")) == before


def test_backends_give_the_same_rows(reference, tmp_path):
    spec, expected = reference
    for backend in ("processes", "dask"):
        out = tmp_path / backend
        run_campaign(load_spec(spec).with_run(backend=backend, workers=2), out)
        got = sorted_rows(load_results(out))
        pd.testing.assert_frame_equal(got.drop(columns="max_abs_diff"), expected.drop(columns="max_abs_diff"))
        assert np.allclose(got["max_abs_diff"], expected["max_abs_diff"], rtol=1e-4, atol=1e-6)


def test_worker_crash_is_retried_then_recorded_as_due(reference, tmp_path):
    spec, expected = reference
    once = cli("campaign", "run", str(spec), "--out", str(tmp_path / "once"), "--backend", "processes", "--quiet",
               env={"FAULTSIFT_CRASH_DRILL": "bitflip:2:1"})
    assert once.returncode == 0, once.stderr
    got = sorted_rows(load_results(tmp_path / "once"))
    pd.testing.assert_frame_equal(got.drop(columns="max_abs_diff"), expected.drop(columns="max_abs_diff"))
    always = cli("campaign", "run", str(spec), "--out", str(tmp_path / "always"), "--backend", "processes", "--quiet",
                 env={"FAULTSIFT_CRASH_DRILL": "bitflip:2:99"})
    assert always.returncode == 0, always.stderr
    got = sorted_rows(load_results(tmp_path / "always"))
    crashed = (got["fault_model"] == "bitflip") & got["fault_id"].between(20, 29)
    assert (got.loc[crashed, "outcome"] == "due").all() and (got.loc[crashed, "due_kind"] == "worker_crash").all()
    pd.testing.assert_frame_equal(got[~crashed].drop(columns="max_abs_diff").reset_index(drop=True),
                                  expected[~crashed].drop(columns="max_abs_diff").reset_index(drop=True))


def test_adaptive_stopping_stops_at_the_first_boundary_meeting_the_target(tmp_path):
    target = 0.03
    spec = load_spec(write_spec(tmp_path / "s.toml", 400, f"target_half_width = {target}\n"))
    stopped = run_campaign(spec, tmp_path / "s")
    rows = load_results(tmp_path / "s")
    sets = json.loads((tmp_path / "s" / "sets.json").read_text())

    def half_width(df, ids):
        mine = df[df["input_id"].isin(ids)]
        ci = binomtest(int((mine["outcome"] == "sdc_critical").sum()), len(mine)).proportion_ci(method="wilson")
        return (ci.high - ci.low) / 2

    for name, info in stopped.items():
        mine = rows[rows["fault_model"] == name]
        assert mine["fault_id"].max() + 1 == info["faults"]
        if info["reason"] == "target_half_width":
            assert all(half_width(mine, s["input_ids"]) <= target for s in sets)
            earlier = mine[mine["fault_id"] < info["faults"] - 10]
            assert any(half_width(earlier, s["input_ids"]) > target for s in sets)
    assert any(info["reason"] == "target_half_width" and info["faults"] < 400 for info in stopped.values())


def test_cli_status_and_replay(reference, tmp_path):
    spec, _ = reference
    out = tmp_path / "r"
    assert cli("campaign", "run", str(spec), "--out", str(out), "--quiet").returncode == 0
    status = cli("campaign", "status", str(out))
    assert status.returncode == 0 and "low-confidence" in status.stdout and "stopped" in status.stdout
    replay = cli("replay", str(out), "37", "--fault-model", "beam-body")
    assert replay.returncode == 0 and "matches the stored rows: yes" in replay.stdout
    bad = cli("replay", str(out), "37", "--fault-model", "bitflp")
    assert bad.returncode == 2 and "Expected `--fault-model` among bitflip, beam-body" in bad.stderr


def test_per_set_targets_and_unknown_set_names(tmp_path):
    spec = load_spec(write_spec(tmp_path / "p.toml", 200, "target_half_width = { random = 0.2 }\n"))
    stopped = run_campaign(spec, tmp_path / "p")
    assert all(info["reason"] == "target_half_width" and info["faults"] == 10 for info in stopped.values())
    bad = load_spec(write_spec(tmp_path / "b.toml", 20, "target_half_width = { randon = 0.2 }\n"))
    with pytest.raises(ConfigError, match="keys among random, low-confidence, got randon"):
        run_campaign(bad, tmp_path / "b")
