"""The log writer and the tolerant parser, on logs written in every shape seen in real logs."""

from datetime import datetime
from pathlib import Path

import pytest

from faultsift.beam.logformat import (LogWriter, find_logs, log_file_name, parse_header, parse_log, parse_log_name,
                                      parse_log_text)


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


# ----------------------------------------------------------------------------- file names


def test_file_names_new_and_old_forms():
    start = datetime(2024, 5, 20, 10, 30, 45)
    name = log_file_name(start, "fsift-digits-vit-low", "carol-k40_2", ecc=True)
    assert name == "2024_05_20_10_30_45_fsift-digits-vit-low_ECC_ON_carol-k40_2.log"
    parsed = parse_log_name(name)
    assert (parsed.start, parsed.benchmark, parsed.ecc, parsed.host) == (start, "fsift-digits-vit-low", True,
                                                                         "carol-k40_2")
    assert parse_log_name("2023_01_02_03_04_05_cuda_lava_ECC_OFF_host_a.log").benchmark == "cuda_lava"
    old = parse_log_name("2016_01_20_14_24_03_cudaLUD_carol-k401.log")
    assert (old.benchmark, old.ecc, old.host) == ("cudaLUD", None, "carol-k401")
    # an older name whose host holds `_` is ambiguous: known hosts decide
    assert parse_log_name("2016_01_20_14_24_03_cudaLUD_carol_k401.log").host == "k401"
    hinted = parse_log_name("2016_01_20_14_24_03_cudaLUD_carol_k401.log", hosts=["carol_k401"])
    assert (hinted.benchmark, hinted.host) == ("cudaLUD", "carol_k401")
    assert parse_log_name("notes.log") is None and parse_log_name("2016_13_45_99_99_99_x_y.log") is None


def test_header_free_text_forms():
    assert parse_header("size:4096") == {"size": "4096"}
    assert parse_header("iterations: 1000 img_list: /data/list.txt board: K40") == {
        "iterations": "1000", "img_list": "/data/list.txt", "board": "K40"}
    h = parse_header("model:zoo:digits-vit threshold:1e-05 Time:10:30:45 some free words")
    assert h["model"] == "zoo:digits-vit" and h["threshold"] == "1e-05"
    assert h["Time"] == "10:30:45 some free words"  # words without a key belong to the key before them
    assert parse_header("just text") == {"_text": "just text"}


# ----------------------------------------------------------------------------- writer


def test_writer_round_trip_with_jsonl_twin(tmp_path):
    w = LogWriter(tmp_path, "fsift-digits-vit-low_conf", {"model": "zoo:digits-vit", "set": "low conf", "k": 32},
                  host="dut-1", ecc=False, start=datetime(2025, 3, 14, 10, 30, 45))
    w.iteration(1, 0.01, 0.01)
    w.sdc(7, 0.012, 0.08, ker_err=10, acc_err=10,
          details=["critical batch:0 imgid:17 i:3 g:4 o:9 gt:4", "batch:0 imgid:17 output_t nan:0 inf:0"], critical=1)
    w.sdc(9, 0.011, 0.1, ker_err=3, acc_err=13, details=["batch:0 imgid:2 output_t nan:1 inf:0"])
    w.iteration(10, 0.01, 0.11)
    w.end()
    assert w.path.name == "2025_03_14_10_30_45_fsift-digits-vit-low-conf_ECC_OFF_dut-1.log"
    text = w.path.read_text()
    assert text.splitlines()[1] == "#BEGIN Y:2025 M:03 D:14 Time:10:30:45"
    assert "#SDC Ite:7 KerTime:0.0120000 AccTime:0.0800000 KerErr:10 AccErr:10" in text
    assert text.index("#ERR critical") < text.index("#SDC Ite:7")  # libLogHelper order: details, then count
    log = parse_log(w.path)
    assert log.header["set"] == "low_conf" and log.header["k"] == "32"
    assert log.begin == datetime(2025, 3, 14, 10, 30, 45)
    assert [s.ker_err for s in log.sdcs] == [10, 3] and log.critical_count == 1 and log.sdc_count == 2
    assert log.acc_time == pytest.approx(0.11) and log.last_ite == 10 and log.ended and not log.warnings
    assert log.has_line_times and log.first_time <= log.last_time  # from the .jsonl twin


def test_writer_caps_err_lines_and_never_overwrites(tmp_path):
    start = datetime(2025, 1, 1, 0, 0, 0)
    a = LogWriter(tmp_path, "b", {}, host="h", start=start, max_err_lines=3)
    b = LogWriter(tmp_path, "b", {}, host="h", start=start)
    assert a.path != b.path and b.start.second == 1
    a.sdc(1, 0.1, 0.1, ker_err=100, acc_err=100, details=[f"e{i}" for i in range(10)])
    a.end()
    b.close()
    log = parse_log(a.path)
    assert log.sdcs[0].details == ["e0", "e1", "e2"] and log.sdcs[0].ker_err == 100


# ----------------------------------------------------------------------------- variants

OLD_HELPER = """#HEADER iterations: 1000 img_list: /home/carol/lists/imgs.txt board: K40
#BEGIN Y:2016 M:05 D:10 Time:11:22:33
#IT Ite:0 KerTime:1.000000 AccTime:1.000000
#IT Ite:1 KerTime:1.000000 AccTime:2.000000
#ERR p: [12, 7], r: 3.0000e+00, e: -nan
#ERR p: [12, 8], r: inf, e: 1.0e+57
#SDC Ite:2 KerTime:1.0000000 AccTime:3.0000000 KerErr:2 AccErr:2
#IT Ite:3 KerTime:1.000000 AccTime:4.000000
#END
"""

NEW_HELPER = """#HEADER size:4096
#BEGIN Y:2022 M:11 D:03 Time:09:00:00
#IT 1 KerTime:0.5000000 AccTime:0.5000000
#INF Ite:1 KerTime:0.5000000 AccTime:0.5000000 KerInf:3
#ERR critical batch:0 imgid:5 i:0 g:1 o:2 gt:1
#ERR batch:0 imgid:5 output_t nan:0 inf:0 min:-1 max:1 diff_t nan:0 inf:0 min:0 max:0.5
#SDC Ite:2 KerTime:0.5000000 AccTime:1.0000000 KerErr:4 AccErr:4
#IT 3 KerTime:0.5000000 AccTime:1.5000000
#END"""


def test_old_and_new_iteration_forms():
    old = parse_log_text(OLD_HELPER, Path("2016_05_10_11_22_33_cudaGEMM_carol-k40.log"))
    assert old.header == {"iterations": "1000", "img_list": "/home/carol/lists/imgs.txt", "board": "K40"}
    assert [i.ite for i in old.iterations] == [0, 1, 3] and old.acc_time == 4.0 and old.ended
    assert old.sdcs[0].details[1] == "p: [12, 8], r: inf, e: 1.0e+57" and not old.sdcs[0].critical
    new = parse_log_text(NEW_HELPER, Path("2022_11_03_09_00_00_vit_ECC_ON_a100-1.log"))
    assert [i.ite for i in new.iterations] == [1, 3] and new.acc_time == 1.5
    assert new.infos[0]["ker_inf"] == 3 and new.sdcs[0].critical and new.critical_count == 1
    assert new.ended and not new.warnings  # `#END` without a trailing newline is fine


def test_err_lines_after_their_sdc_line():
    text = """#HEADER x:1
#BEGIN Y:2018 M:01 D:01 Time:00:00:00
#SDC Ite:1 KerTime:1.0 AccTime:1.0 KerErr:1 AccErr:1
#ERR critical a
#SDC Ite:5 KerTime:1.0 AccTime:5.0 KerErr:2 AccErr:3
#ERR b
#ERR c
#IT 6 KerTime:1.0 AccTime:6.0
#END
"""
    log = parse_log_text(text)
    assert log.err_order == "after" and [s.details for s in log.sdcs] == [["critical a"], ["b", "c"]]
    assert log.critical_count == 1 and log.acc_time == 6.0


def test_blank_lines_nul_padding_and_trailing_errs_of_a_crash():
    text = ("#HEADER app:lava\n#BEGIN Y:2019 M:02 D:03 Time:04:05:06\n#IT 1 KerTime:2.0 AccTime:2.0\n\n"
            "#ERR x:1 v:inf\n\n#ERR x:2 v:-nan\n\n#SDC Ite:2 KerTime:2.0 AccTime:4.0 KerErr:2 AccErr:2\n\n"
            "#IT 3 KerTime:2.0 AccTime:6.0\n#ERR x:9 v:1e+57\n\n#ERR x:10 v:3\n")
    log = parse_log_text(text.encode() + b"\x00" * 4096)
    assert log.sdcs[0].details == ["x:1 v:inf", "x:2 v:-nan"] and log.sdcs[0].complete
    orphan = log.sdcs[1]
    assert not orphan.complete and orphan.details == ["x:9 v:1e+57", "x:10 v:3"] and orphan.ker_err is None
    assert log.sdc_count == 2 and log.acc_time == 6.0 and not log.ended
    joined = " ".join(log.warnings)
    assert "4096 NUL bytes" in joined and "without their #SDC" in joined and "no #END" in joined


def test_header_and_begin_only():
    log = parse_log_text("#HEADER size:1024\n#BEGIN Y:2020 M:07 D:08 Time:09:10:11\n")
    assert log.sdc_count == 0 and log.acc_time == 0.0 and log.begin == datetime(2020, 7, 8, 9, 10, 11)
    assert log.end == log.begin and any("no #END" in w for w in log.warnings)


def test_line_cut_off_mid_line_is_reported_and_the_rest_kept():
    text = ("#HEADER a:1\n#BEGIN Y:2021 M:01 D:01 Time:00:00:00\n#IT 1 KerTime:1.0 AccTime:1.0\n"
            "#SDC Ite:2 KerTime:1.0 AccTime:2.0 KerErr:1 AccErr:1\n#SDC Ite:3 KerTi")
    log = parse_log_text(text)
    assert log.sdc_count == 1 and log.acc_time == 2.0
    assert any("cut off mid-line" in w for w in log.warnings)
    cut_it = parse_log_text("#HEADER a:1\n#IT 4 KerTime:1.0 AccT")
    assert not cut_it.iterations and any("cut off" in w for w in cut_it.warnings)


def test_server_prefixed_lines_and_server_events():
    text = """2024-05-20 10:30:45.123 #SERVER_BEGIN Y:2024 M:5 D:20 TIME:10:30:45-123456
2024-05-20 10:30:46.000 #HEADER model:vit set:low
2024-05-20 10:30:46.001 #BEGIN Y:2024 M:05 D:20 Time:10:30:46
2024-05-20 10:30:50.500 #IT 1 KerTime:1.0 AccTime:1.0
2024-05-20 10:30:52.250 #SDC Ite:2 KerTime:1.0 AccTime:2.0 KerErr:1 AccErr:1
2024-05-20 10:31:10.000 #SERVER_DUE:soft APP reboot
2024-05-20 10:31:40.000 #SERVER_DUE:soft OS reboot
2024-05-20 10:31:39.000 #SERVER_DUE:power cycle
#SERVER_END TIME:2024-05-20-10-45-00
"""
    log = parse_log_text(text)
    assert log.first_time == datetime(2024, 5, 20, 10, 30, 45, 123000)
    assert log.iterations[0].time == datetime(2024, 5, 20, 10, 30, 50, 500000)
    begin, *dues, end = log.server
    assert begin.kind == "begin" and begin.time == datetime(2024, 5, 20, 10, 30, 45, 123456)
    assert [d.due_kind for d in dues] == ["app", "os", "power"] and dues[0].message == "soft APP reboot"
    assert end.kind == "end" and end.time == datetime(2024, 5, 20, 10, 45, 0)
    assert any("earlier than the line before" in w for w in log.warnings)  # 10:31:39 after 10:31:40
    alt = parse_log_text("#SERVER_BEGIN Y:2023 M:12 D:1 Time:7:05:09\n")
    assert alt.server[0].time == datetime(2023, 12, 1, 7, 5, 9)


def test_watchdog_due_fields_and_unknown_lines():
    text = ("2025-01-01 00:00:01.000 #SERVER_DUE:soft APP reboot kind:hang log:a.log streak:2 attempt:3 idle_s:10.0\n"
            "garbage line\n#WHATEVER 1\n")
    log = parse_log_text(text)
    due = log.server[0]
    assert due.fields == {"kind": "hang", "log": "a.log", "streak": "2", "attempt": "3", "idle_s": "10.0"}
    assert due.due_kind == "app" and log.unknown_lines == 2


def test_crlf_line_ends_and_bad_numbers(tmp_path):
    text = "#HEADER a:1\r\n#BEGIN Y:2021 M:01 D:01 Time:00:00:00\r\n#IT x KerTime:1\r\n#SDC Ite:1 KerErr:2\r\n#END\r\n"
    log = parse_log(write(tmp_path, "2021_01_01_00_00_00_b_h.log", text))
    assert log.sdc_count == 1 and log.sdcs[0].ker_err == 2 and log.ended
    assert any("unreadable line" in w for w in log.warnings)


def test_find_logs(tmp_path):
    (tmp_path / "a").mkdir()
    write(tmp_path / "a", "x.log", "#END\n")
    write(tmp_path, "y.log", "#END\n")
    write(tmp_path, "z.txt", "")
    assert [p.name for p in find_logs([tmp_path])] == ["x.log", "y.log"]
