"""The golden file and the device-under-test loop, in process on the CPU (no crash or hang here)."""

import json
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

from faultsift.beam.emulator import EmulatorConfig, read_ground_truth
from faultsift.beam.harness import (ABORT_EXIT, GOLDEN_KEY, HarnessConfig, compare_outputs, load_golden_model,
                                    make_golden, read_golden, run_harness)
from faultsift.beam.analysis import analyze
from faultsift.beam.logformat import parse_log
from faultsift.errors import ConfigError, LoadError
from faultsift.selection.strategies import InputSet

SETS = [InputSet("low", "low-confidence", (3, 1, 4, 15, 9, 26, 5, 35)), InputSet("random", "random", (2, 7, 18, 28))]


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    path = tmp_path_factory.mktemp("golden") / "cnn.golden.safetensors"
    make_golden("zoo:digits-cnn", "zoo:digits-hard", SETS, path)
    return path


def logs_in(folder):
    return sorted(folder.glob("*.log"))


def test_golden_file_round_trip(golden, hard_pool, zoo_models):
    g = read_golden(golden)
    assert g.set_names == ["low", "random"] and g.meta["model"] == "zoo:digits-cnn" and g.meta["threshold"] == 1e-5
    low = g.sets["low"]
    assert low["ids"].tolist() == list(SETS[0].input_ids)
    torch.testing.assert_close(low["inputs"], hard_pool.inputs[list(SETS[0].input_ids)])
    assert low["labels"].tolist() == hard_pool.labels[list(SETS[0].input_ids)].tolist()
    model = load_golden_model(g, "cpu")
    with torch.inference_mode():
        assert torch.equal(model(low["inputs"]), low["golden"])
        assert torch.equal(zoo_models["digits-cnn"](low["inputs"]), low["golden"])
    assert len(g.sha256) == 64


def test_golden_errors(tmp_path, golden):
    with pytest.raises(LoadError, match="does not exist"):
        read_golden(tmp_path / "none.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a golden file")
    with pytest.raises(LoadError, match="not a faultsift golden"):
        read_golden(tmp_path / "bad.safetensors")
    with pytest.raises(ConfigError, match="indexes input 99999"):
        make_golden("zoo:digits-cnn", "zoo:digits-hard", [InputSet("x", "random", (99999,))], tmp_path / "g")


def test_compare_outputs_counts_values_and_critical_images():
    golden = torch.tensor([[5.0, 1.0, 0.0], [0.0, 4.0, 1.0], [1.0, 0.0, 3.0]])
    labels, ids = torch.tensor([0, 1, 0]), torch.tensor([10, 11, 12])
    assert compare_outputs(golden.clone(), golden, 1e-5, labels, ids) == (0, 0, [])
    out = golden.clone()
    out[0, 1] += 1e-3  # tolerable
    out[1, 2] = 9.0  # top-1 changes
    out[2, 0] = float("nan")
    ker_err, critical, lines = compare_outputs(out, golden, 1e-5, labels, ids)
    assert ker_err == 3 and critical == 2  # the non-finite output counts as critical
    assert lines[0] == "critical batch:0 imgid:11 i:1 g:1 o:2 gt:1" and lines[1].startswith("critical batch:0 imgid:12")
    assert len(lines) == 5 and lines[4].startswith("batch:0 imgid:12 output_t nan:1 inf:0")


def test_clean_run_logs_header_iterations_and_end(tmp_path, golden):
    code = run_harness(HarnessConfig(goldens=(golden,), log_dir=tmp_path, sets=("low",), iterations=60, it_every=25,
                                     it_seconds=1e6, host="dut_1", ecc="off"))
    assert code == 0
    (path,) = logs_in(tmp_path)
    assert path.name.endswith("_fsift-digits-cnn-low_ECC_OFF_dut_1.log")
    log = parse_log(path, hosts=["dut_1"])
    assert log.name.host == "dut_1" and log.ended and log.sdc_count == 0 and not log.warnings
    assert [i.ite for i in log.iterations][:3] == [1, 25, 50] and log.last_ite == 50
    for key in ("model", "data", "set", "input_ids", "golden_sha256", "threshold", "max_errors", "device", "host"):
        assert key in log.header
    assert log.header["input_ids"] == "3,1,4,15,9,26,5,35" and log.header["tool"] == "faultsift"
    assert analyze([log]).warnings == []  # every header key is one the analysis knows
    events = [json.loads(line) for line in path.with_suffix(".jsonl").read_text().splitlines()]
    assert events[0]["event"] == "HEADER" and events[0]["params"]["set"] == "low" and events[-1]["event"] == "END"


def corrupt_golden(golden, out, delta):
    tensors = load_file(str(golden))
    tensors["set/low/golden"] = tensors["set/low/golden"] + delta
    save_file(tensors, str(out), metadata={GOLDEN_KEY: json.dumps(read_golden(golden).meta)})
    return out


def test_abort_on_too_many_errors_and_on_repeated_counts(tmp_path, golden):
    bad = corrupt_golden(golden, tmp_path / "bad.safetensors", 1.0)
    cfg = dict(goldens=(bad,), sets=("low",), iterations=50, host="h")
    code = run_harness(HarnessConfig(log_dir=tmp_path / "a", max_errors=10, **cfg))
    (path,) = logs_in(tmp_path / "a")
    log = parse_log(path)
    assert code == ABORT_EXIT and log.aborts == ["too many errors per iteration"] and log.sdc_count == 1
    assert log.sdcs[0].ker_err == 80 and not log.ended  # 8 images x 10 logits
    code = run_harness(HarnessConfig(log_dir=tmp_path / "b", max_errors=1000, max_repeat=3, **cfg))
    log = parse_log(logs_in(tmp_path / "b")[0])
    assert code == ABORT_EXIT and log.aborts == ["amount of errors equals of the last iteration"]
    assert log.sdc_count == 3 and [s.ite for s in log.sdcs] == [1, 2, 3]
    assert [s.acc_err for s in log.sdcs] == [80, 160, 240]
    reloads = [json.loads(x) for x in logs_in(tmp_path / "b")[0].with_suffix(".jsonl").read_text().splitlines()]
    assert sum(e["event"] == "reload" for e in reloads) == 2


def test_rotation_through_sets_in_fixed_windows(tmp_path, golden):
    start = time.time()
    code = run_harness(HarnessConfig(goldens=(golden,), log_dir=tmp_path, rotate=1.0, duration=3.2, host="h",
                                     it_seconds=0.2))
    assert code == 0 and time.time() - start < 30
    rotation = json.loads((tmp_path / "rotation.json").read_text())
    assert rotation["configs"] == ["cnn.golden.safetensors:low", "cnn.golden.safetensors:random"]
    logs = [parse_log(p) for p in sorted(tmp_path.glob("*.log"), key=lambda p: p.stat().st_mtime)]
    sets = [log.header["set"] for log in logs]
    assert len(logs) >= 3 and all(a != b for a, b in zip(sets, sets[1:])) and all(log.ended for log in logs)
    with pytest.raises(ConfigError, match="--rotate"):
        run_harness(HarnessConfig(goldens=(golden,), log_dir=tmp_path / "x", iterations=1))
    with pytest.raises(ConfigError, match="No golden file has the set"):
        run_harness(HarnessConfig(goldens=(golden,), log_dir=tmp_path / "x", sets=("nope",), iterations=1))


@pytest.mark.parametrize("target", ["activations", "weights"])
def test_emulated_faults_match_the_logged_errors(tmp_path, golden, target):
    record = tmp_path / "truth.jsonl"
    emu = EmulatorConfig(rate=200.0, record=record, target=target, seed=5, bit_low=20 if target == "weights" else 0)
    code = run_harness(HarnessConfig(goldens=(golden,), log_dir=tmp_path, sets=("low",), iterations=400, host="h",
                                     emulate=emu, max_repeat=0))
    assert code == 0
    log = parse_log(logs_in(tmp_path)[0])
    truth = read_ground_truth(record)
    faults = [r for r in truth if r["kind"] == "fault"]
    assert len(faults) > 20 and all(r["target"] == target for r in faults)
    errors = {r["iteration"] for r in faults if r["error"]}
    assert errors, "no emulated fault produced an error"
    assert sorted(s.ite for s in log.sdcs) == sorted(errors)
    assert log.critical_count == len({r["iteration"] for r in faults if r["critical"]})
    assert log.header["emulate"] == "200.0"


def test_emulator_config_checks(tmp_path):
    with pytest.raises(ConfigError, match="rate"):
        EmulatorConfig(rate=0, record=tmp_path / "r").check()
    with pytest.raises(ConfigError, match="<= 1"):
        EmulatorConfig(rate=1, record=tmp_path / "r", p_crash=0.6, p_hang=0.6).check()
    with pytest.raises(ConfigError, match="micro-op outputs only"):
        EmulatorConfig(rate=1, record=tmp_path / "r", fault_model="beam-body", target="weights").check()
