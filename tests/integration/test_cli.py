"""The command line, run as a user would (real subprocesses)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

FAULTSIFT = [sys.executable, "-m", "faultsift"]
SMALL = ["--models", "zoo:digits-cnn,zoo:digits-vit", "--faults", "40", "--screen-faults", "4", "--n-boot", "200",
         "-k", "8", "--quiet"]


def run(*args, cwd=None):
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([*FAULTSIFT, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


@pytest.fixture(scope="module")
def small_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "run"
    result = run("study", "--out", str(out), *SMALL)
    assert result.returncode == 0, result.stderr
    return out, result


def test_small_study_writes_everything_and_prints_tables(small_study):
    out, result = small_study
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["models"]) == {"digits-cnn", "digits-vit"}
    for model, info in summary["models"].items():
        assert set(info["fault_models"]) == {"bitflip", "beam-body", "beam-full"}
        for fm, camp in info["fault_models"].items():
            trials = pd.read_parquet(out / model / fm / "trials.parquet")
            names = [s["set"] for s in camp["sets"]]
            assert names == ["random", "low-confidence", "high-confidence", "fi-ranked"]
            for s in camp["sets"]:
                assert s["trials"] == 8 * 40 and len(s["input_ids"]) == 8
                mine = trials[trials["input_id"].isin(s["input_ids"])]
                assert s["critical"] == int((mine["outcome"] == "sdc_critical").sum())
                for key in ("rate", "ci_low", "ci_high", "boot_faults_low", "boot_inputs_high", "sdc", "due"):
                    assert key in s
            assert f"{model} / {fm}" in result.stdout
    assert "x random [95%]" in result.stdout and (out / "results.md").is_file() and (out / "margins.png").is_file()
    prof = pd.read_parquet(out / "digits-vit" / "profile.parquet")
    assert len(prof) == 2160 and {"margin", "entropy", "top2_prob", "correct"} <= set(prof.columns)


def test_same_seed_same_trial_rows(small_study, tmp_path):
    out, _ = small_study
    again = tmp_path / "again"
    result = run("study", "--out", str(again), *SMALL[:1], "zoo:digits-cnn", *SMALL[2:])
    assert result.returncode == 0, result.stderr
    for fm in ("bitflip", "beam-body", "beam-full"):
        a = pd.read_parquet(out / "digits-cnn" / fm / "trials.parquet")
        b = pd.read_parquet(again / "digits-cnn" / fm / "trials.parquet")
        pd.testing.assert_frame_equal(a, b)


def test_stage_verbs_chain(tmp_path, small_study):
    out, _ = small_study
    prof = tmp_path / "profile.parquet"
    sets = tmp_path / "sets.json"
    assert run("profile", "zoo:digits-cnn", "zoo:digits-hard", "--out", str(prof)).returncode == 0
    for strategy in ("random", "low-confidence"):
        r = run("select", str(prof), "--strategy", strategy, "-k", "6", "--out", str(sets))
        assert r.returncode == 0, r.stderr
    screening = out / "digits-cnn" / "bitflip" / "screening_trials.parquet"
    r = run("select", str(prof), "--strategy", "fi-ranked", "-k", "6", "--screening", str(screening), "--out", str(sets))
    assert r.returncode == 0, r.stderr
    assert [s["name"] for s in json.loads(sets.read_text())] == ["random", "low-confidence", "fi-ranked"]
    r = run("inject", "zoo:digits-cnn", "zoo:digits-hard", "--sets", str(sets), "--faults", "30",
            "--bit-low", "23", "--bit-high", "30", "--out", str(tmp_path / "camp"))
    assert r.returncode == 0, r.stderr
    faults = pd.read_parquet(tmp_path / "camp" / "faults.parquet")
    assert faults["bits"].map(lambda b: 23 <= b[0] <= 30).all() and len(faults) == 30
    union = set().union(*(s["input_ids"] for s in json.loads(sets.read_text())))
    trials = pd.read_parquet(tmp_path / "camp" / "trials.parquet")
    assert len(trials) == 30 * len(union) and set(trials["input_id"]) == union
    r = run("inject", "zoo:digits-cnn", "zoo:digits-hard", "--sets", str(sets), "--faults", "30", "--engine", "reference",
            "--bit-low", "23", "--bit-high", "30", "--out", str(tmp_path / "camp-reference"))
    assert r.returncode == 0, r.stderr
    oracle = pd.read_parquet(tmp_path / "camp-reference" / "trials.parquet")
    keys = ["fault_id", "input_id", "outcome", "golden_top1", "faulty_top1", "due_kind"]
    pd.testing.assert_frame_equal(trials[keys], oracle[keys])  # the default fast engine gives the oracle's rows


@pytest.mark.parametrize(
    "args,needle",
    [
        (["study", "--models", "zoo:digits-vitt"], "Did you mean `digits-vit`"),
        (["study", "--fault-models", "bitflp"], "Did you mean `bitflip`"),
        (["study", "--models", "zoo:digits-cnn", "-k", "5000"], "Expected `k` in [1, 2160] (inputs in the pool), got 5000."),
        (["study", "--models", "zoo:digits-cnn", "--bit-high", "40"], "Expected `bit` in [0, 31] for fp32, got 40."),
        (["study", "--models", "timm:resnet18:/nonexistent/w.pth"], "does not exist"),
        (["study", "--screen-seed", "1"], "different from `--fault-seed`"),
        (["list", "strategy"], "Did you mean `strategies`"),
        (["study", "--engine", "fastest"], "engine"),
    ],
)
def test_bad_input_is_one_line_no_traceback(args, needle, tmp_path):
    result = run(*args, "--quiet", "--out", str(tmp_path / "x")) if args[0] == "study" else run(*args)
    assert result.returncode == 2
    assert needle in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_existing_results_are_never_overwritten(small_study):
    out, _ = small_study
    before = (out / "summary.json").read_bytes()
    result = run("study", "--out", str(out), *SMALL)
    assert result.returncode == 2 and "already holds study results" in result.stderr
    assert (out / "summary.json").read_bytes() == before
