"""`faultsift beam analyze` and `beam golden` as a user runs them, on logs written by other tools."""

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta

FAULTSIFT = [sys.executable, "-m", "faultsift"]
T0 = datetime(2024, 11, 5, 14, 0, 0)


def run(*args):
    return subprocess.run([*FAULTSIFT, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})


def libloghelper_log(folder, start, bench, set_list, sdc_lines, critical_lines, seconds=600, end=True):
    """A 2022-style log (no line times): #IT every 60 s of kernel time, SDCs spread over the run."""
    name = f"{start:%Y_%m_%d_%H_%M_%S}_{bench}_ECC_OFF_carol-a100.log"
    lines = [f"#HEADER iterations: 1000000 img_list: {set_list} board: A100",
             f"#BEGIN Y:{start:%Y} M:{start:%m} D:{start:%d} Time:{start:%H:%M:%S}"]
    for i in range(1, seconds + 1):
        if i in sdc_lines:
            if i in critical_lines:
                lines.append(f"#ERR critical batch:0 imgid:{i} i:0 g:1 o:2 gt:1")
            lines.append(f"#ERR batch:0 imgid:{i} output_t nan:0 inf:0 min:-3 max:9 diff_t nan:0 inf:0 min:0 max:1e+57")
            lines.append(f"#SDC Ite:{i} KerTime:1.0000000 AccTime:{i:.7f} KerErr:1 AccErr:{i}")
        if i % 60 == 0:
            lines.append(f"#IT {i} KerTime:1.0000000 AccTime:{i:.7f}")
    text = "\n".join(lines) + ("\n#END\n" if end else "\n")
    (folder / name).write_bytes(text.encode() + (b"" if end else b"\x00" * 512))
    return name


def chipir(folder, start, seconds):
    lines = ["Data From ChipIR"]
    for i in range(0, seconds + 1, 3):
        t = start + timedelta(seconds=i)
        lines.append(f"{t:%d/%m/%Y %H:%M:%S} .000 00000001 00000002 00000003 {i * 10:08d} 1.00 40.00")
    path = folder / "chipir.txt"
    path.write_bytes(("\r\r\n".join(lines) + "\r\r\n").encode())
    return path


def test_analyze_foreign_logs_with_chipir_flux_and_a_campaign(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    libloghelper_log(logs, T0, "vit", "low.txt", {100, 200, 300, 400}, {100, 300})
    libloghelper_log(logs, T0 + timedelta(seconds=700), "vit", "random.txt", {150}, set(), end=False)
    server = logs / "2024_11_05_14_00_00_server_carol-a100.log"
    server.write_text(f"{T0 + timedelta(seconds=900):%Y-%m-%d %H:%M:%S}.000 #SERVER_DUE:soft APP reboot\n")
    flux = chipir(tmp_path, T0 - timedelta(seconds=60), 1500)
    camp = tmp_path / "camp"
    camp.mkdir()
    rows = [{"set": s, "trials": 100, "critical": c, "rate": c / 100, "ci_low": 0, "ci_high": 1}
            for s, c in (("low.txt", 9), ("random.txt", 1))]
    (camp / "summary.json").write_text(json.dumps({"config": {"models": ["vit"]},
                                                   "campaign": {"fault_model": "bitflip", "sets": rows}}))
    out = tmp_path / "res"
    result = run("beam", "analyze", str(logs), "--flux", str(flux), "--factor", "2.0", "--campaign", str(camp),
                 "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "NUL bytes" in result.stderr and "no line times" in result.stderr
    assert "Exact conditional tests" in result.stdout and "Software fault injection vs beam" in result.stdout
    payload = json.loads((out / "beam_analysis.json").read_text())
    configs = {c["set"]: c for c in payload["configs"]}
    low, rnd = configs["low.txt"], configs["random.txt"]
    assert (low["sdc"], low["critical"], low["due"], low["kernel_s"]) == (4, 2, 0, 600)
    assert (rnd["sdc"], rnd["critical"], rnd["due"]) == (1, 0, 1)
    # 10 counts/s x factor 2 over the 600 s the log ran (begin + AccTime, no line times)
    assert abs(low["fluence"] - 600 * 20) < 1e-6 and abs(low["sigma_sdc"] - 4 / (600 * 20)) < 1e-15
    assert payload["software"]["sets"] and payload["software"]["agreement"][0]["sets"] == 2


def test_analyze_and_golden_errors_are_one_line(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    libloghelper_log(logs, T0, "vit", "low.txt", {5}, set(), seconds=60)
    flux = chipir(tmp_path, T0, 60)
    result = run("beam", "analyze", str(logs), "--flux", str(flux))
    assert result.returncode == 2 and "--factor" in result.stderr and "Traceback" not in result.stderr
    result = run("beam", "analyze", str(tmp_path / "nope"))
    assert result.returncode == 2 and "No such log file" in result.stderr
    (tmp_path / "sets.json").write_text(json.dumps([{"name": "a", "strategy": "random", "input_ids": [1, 2]}]))
    result = run("beam", "golden", "zoo:digits-cnn", "zoo:digits-hard", "--sets", str(tmp_path / "sets.json"),
                 "--set", "b", "--out", str(tmp_path / "g.safetensors"))
    assert result.returncode == 2 and "has no set(s) b" in result.stderr
