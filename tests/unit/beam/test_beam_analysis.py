"""Cross sections, Garwood intervals, FIT, exact tests, DUE episodes and the software comparison."""

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest, chi2

from faultsift.beam.analysis import (analyze, analyze_logs, compare_rates, compare_with_software, fit_rate,
                                     garwood_interval, rate_with_interval, read_campaign_rates)
from faultsift.beam.flux import read_flux
from faultsift.beam.logformat import parse_log_text
from faultsift.errors import ConfigError, LoadError

T0 = datetime(2025, 3, 14, 10, 0, 0)


def stamp(t: datetime) -> str:
    return f"{t:%Y-%m-%d %H:%M:%S}.{t.microsecond // 1000:03d}"


def device_log(start: datetime, seconds: int, set_name: str, sdc_at: dict[int, bool], model="zoo:digits-vit",
               ended=True, extra_header="") -> str:
    """A log with server-prefixed line times: one iteration per second, SDCs at the given seconds
    (True: critical)."""
    lines = [f"{stamp(start)} #HEADER tool:faultsift model:{model} set:{set_name}{extra_header}",
             f"{stamp(start)} #BEGIN Y:{start:%Y} M:{start:%m} D:{start:%d} Time:{start:%H:%M:%S}"]
    acc_err = 0
    for i in range(1, seconds + 1):
        t = start + timedelta(seconds=i)
        if i in sdc_at:
            acc_err += 3
            if sdc_at[i]:
                lines.append(f"{stamp(t)} #ERR critical batch:0 imgid:1 i:0 g:1 o:2 gt:1")
            lines.append(f"{stamp(t)} #ERR batch:0 imgid:1 output_t nan:0 inf:0")
            lines.append(f"{stamp(t)} #SDC Ite:{i} KerTime:0.5000000 AccTime:{0.5 * i:.7f} KerErr:3 AccErr:{acc_err}")
        lines.append(f"{stamp(t)} #IT {i} KerTime:0.5000000 AccTime:{0.5 * i:.7f}")
    if ended:
        lines.append(f"{stamp(start + timedelta(seconds=seconds))} #END")
    return "\n".join(lines) + "\n"


def flux_csv(tmp_path, start: datetime, seconds: int, flux: float = 1e6, off: tuple[int, int] | None = None):
    rows = ["time,flux"]
    for i in range(seconds + 1):
        value = 0.0 if off and off[0] <= i < off[1] else flux
        rows.append(f"{(start + timedelta(seconds=i)).isoformat()},{value}")
    path = tmp_path / "flux.csv"
    path.write_text("\n".join(rows) + "\n")
    return read_flux([path])


# ----------------------------------------------------------------------------- statistics


def test_garwood_interval_matches_chi2_and_the_k0_bound():
    assert garwood_interval(0) == (0.0, pytest.approx(3.689, abs=1e-3))
    low, high = garwood_interval(5)
    assert low == pytest.approx(chi2.ppf(0.025, 10) / 2) and high == pytest.approx(chi2.ppf(0.975, 12) / 2)
    assert low == pytest.approx(1.6235, abs=1e-3) and high == pytest.approx(11.668, abs=1e-3)
    assert garwood_interval(5, 0.99)[1] > high
    with pytest.raises(ConfigError):
        garwood_interval(-1)
    sigma, lo, hi = rate_with_interval(0, 1e10)
    assert sigma == 0 and hi == pytest.approx(3.689e-10, rel=1e-3)
    assert all(np.isnan(rate_with_interval(3, 0)))


def test_fit_at_new_york_flux():
    assert fit_rate(1e-12) == pytest.approx(1e-12 * 13 * 1e9)


def test_exact_conditional_test_is_the_binomial_test():
    ratio, p = compare_rates(20, 1e9, 5, 2e9)
    assert ratio == pytest.approx(8.0)
    expected = binomtest(20, 25, 1 / 3).pvalue
    assert p == pytest.approx(expected, rel=1e-6)
    assert compare_rates(0, 1.0, 0, 1.0)[1] == 1.0
    assert compare_rates(3, 1.0, 0, 1.0)[0] == float("inf")


# ----------------------------------------------------------------------------- analysis


def test_cross_sections_per_set_with_flux(tmp_path):
    low = parse_log_text(device_log(T0, 100, "low", {10: True, 20: True, 30: False, 40: True}))
    rnd = parse_log_text(device_log(T0 + timedelta(seconds=200), 100, "random", {50: False}))
    flux = flux_csv(tmp_path, T0, 400, flux=1e6)
    result = analyze([low, rnd], flux)
    table = result.table.set_index("set")
    assert table.loc["low", "sdc"] == 4 and table.loc["low", "critical"] == 3 and table.loc["random", "sdc"] == 1
    assert table.loc["low", "fluence"] == pytest.approx(1e8) and table.loc["low", "flux_coverage"] == 1
    assert table.loc["low", "sigma_sdc"] == pytest.approx(4 / 1e8)
    lo, hi = garwood_interval(3)
    assert table.loc["low", "sigma_critical_low"] == pytest.approx(lo / 1e8)
    assert table.loc["low", "sigma_critical_high"] == pytest.approx(hi / 1e8)
    assert table.loc["low", "fit_critical"] == pytest.approx(3 / 1e8 * 13e9)
    assert table.loc["low", "critical_share"] == 0.75 and table.loc["random", "critical"] == 0
    assert table.loc["random", "sigma_critical_high"] == pytest.approx(3.689 / 1e8, rel=1e-3)
    assert table.loc["low", "kernel_s"] == 50.0  # the last #IT, not the last #SDC
    tests = result.tests
    crit = tests[tests["errors"] == "critical"].iloc[0]
    assert (crit["set_a"], crit["set_b"], crit["k_a"], crit["k_b"]) == ("low", "random", 3, 0)
    assert crit["p_value"] == pytest.approx(binomtest(3, 3, 0.5).pvalue)
    assert json.dumps(result.to_json(), allow_nan=False)


def test_beam_off_and_kernel_exposure(tmp_path):
    log = parse_log_text(device_log(T0, 100, "low", {10: True}))
    flux = flux_csv(tmp_path, T0, 100, flux=1e6, off=(50, 100))
    wall = analyze([log], flux).table.iloc[0]
    assert wall["fluence"] == pytest.approx(5e7) and wall["beam_on_s"] == pytest.approx(50)
    kernel = analyze([log], flux, exposure="kernel").table.iloc[0]
    # mean flux while running (5e5) x kernel time (50 s)
    assert kernel["fluence"] == pytest.approx(5e5 * 50)
    with pytest.raises(ConfigError, match="exposure"):
        analyze([log], flux, exposure="beam")


def test_flux_that_does_not_cover_the_run(tmp_path):
    covered = parse_log_text(device_log(T0, 100, "low", {10: True}))
    late = parse_log_text(device_log(T0 + timedelta(hours=5), 100, "random", {10: True}))
    flux = flux_csv(tmp_path, T0, 50)
    result = analyze([covered, late], flux)
    table = result.table.set_index("set")
    assert table.loc["low", "flux_coverage"] == pytest.approx(0.5) and table.loc["low", "fluence"] == pytest.approx(5e7)
    assert table.loc["random", "fluence"] == 0 and np.isnan(table.loc["random", "sigma_sdc"])
    assert sum("flux log covers" in w for w in result.warnings) == 2
    assert table.loc["low", "sdc"] == 1 and table.loc["random", "sdc"] == 1  # still counted


def test_due_episodes_from_watchdog_lines():
    name_a = "2025_03_14_10_00_00_fsift-digits-vit-low_ECC_OFF_dut.log"
    a = parse_log_text(device_log(T0, 60, "low", {}, ended=False), Path(name_a))
    b = parse_log_text(device_log(T0 + timedelta(seconds=100), 60, "random", {}),
                       Path("2025_03_14_10_01_40_fsift-digits-vit-random_ECC_OFF_dut.log"))
    server = parse_log_text(
        f"{stamp(T0)} #SERVER_BEGIN Y:2025 M:3 D:14 TIME:10:00:00-000000\n"
        f"{stamp(T0 + timedelta(seconds=70))} #SERVER_DUE:soft APP reboot kind:hang log:{name_a} streak:1\n"
        f"{stamp(T0 + timedelta(seconds=80))} #SERVER_DUE:soft APP reboot kind:crash log:{name_a} streak:2\n"
        f"{stamp(T0 + timedelta(seconds=85))} #SERVER_DUE:soft OS reboot kind:hang log:{name_a} streak:3\n"
        f"{stamp(T0 + timedelta(seconds=90))} #SERVER_DUE:power cycle kind:hang log:{name_a} streak:4\n"
        f"{stamp(T0 + timedelta(seconds=150))} #SERVER_DUE:soft APP reboot\n"  # another server: by time
        f"{stamp(T0 - timedelta(seconds=150))} #SERVER_DUE:soft APP reboot\n"  # before any log
        "#SERVER_END TIME:2025-03-14-10-05-00\n", Path("2025_03_14_10_00_00_server_dut.log"))
    result = analyze([a, b, server])
    table = result.table.set_index("set")
    assert table.loc["low", "due"] == 1 and table.loc["low", "due_system"] == 1
    assert table.loc["random", "due"] == 1 and table.loc["random", "due_system"] == 0
    assert len(result.logs) == 2 and any("matches no device log" in w for w in result.warnings)
    assert table.loc["low", "unfinished_logs"] == 1


def test_foreign_logs_group_by_benchmark_and_set_keys():
    old = parse_log_text("#HEADER iterations: 10 img_list: list_a.txt board: K40\n"
                         "#BEGIN Y:2016 M:05 D:10 Time:11:22:33\n#SDC Ite:2 KerTime:1.0 AccTime:2.0 KerErr:1 AccErr:1\n"
                         "#IT Ite:3 KerTime:1.0 AccTime:3.0\n#END\n", Path("2016_05_10_11_22_33_cudaGEMM_carol-k40.log"))
    result = analyze([old])
    row = result.table.iloc[0]
    assert (row["model"], row["set"], row["sdc"], row["kernel_s"]) == ("cudaGEMM", "list_a.txt", 1, 3.0)
    assert row["sdc_per_kernel_s"] == pytest.approx(1 / 3) and "sigma_sdc" not in result.table
    assert any("no line times" in w for w in result.warnings)


def test_unknown_header_keys_are_reported_and_the_rest_analysed():
    log = parse_log_text(device_log(T0, 10, "low", {3: True}, extra_header=" new_knob:7"))
    result = analyze([log])
    assert any("unknown header keys new_knob" in w for w in result.warnings)
    assert result.table.iloc[0]["critical"] == 1


def test_analyze_logs_on_folders(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "2025_03_14_10_00_00_fsift-vit-low_ECC_OFF_h.log").write_text(device_log(T0, 20, "low", {5: True}))
    (tmp_path / "logs" / "2025_03_14_10_00_00_fsift-vit-low_ECC_OFF_h.jsonl").write_text('{"event": "IT", "time": "x"}\n{bad\n')
    result = analyze_logs([tmp_path / "logs"])
    assert result.table.iloc[0]["sdc"] == 1 and any("unreadable JSON" in w for w in result.warnings)
    with pytest.raises(LoadError, match="No such log"):
        analyze_logs([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(LoadError, match="No log files"):
        analyze_logs([tmp_path / "empty"])


def test_software_vs_beam(tmp_path):
    logs = [parse_log_text(device_log(T0 + timedelta(seconds=200 * i), 100, name, crit))
            for i, (name, crit) in enumerate([("random", {5: True}), ("low-confidence", {5: True, 6: True, 7: True}),
                                              ("high-confidence", {})])]
    flux = flux_csv(tmp_path, T0, 700)
    result = analyze(logs, flux)
    camp = tmp_path / "camp"
    camp.mkdir()
    rows = [{"set": s, "trials": 1000, "critical": c, "rate": c / 1000, "ci_low": 0.0, "ci_high": 0.1}
            for s, c in (("random", 4), ("low-confidence", 44), ("high-confidence", 1))]
    (camp / "summary.json").write_text(json.dumps({"config": {"models": ["zoo:digits-vit"]},
                                                   "campaign": {"fault_model": "bitflip", "sets": rows}}))
    software = read_campaign_rates(camp)
    side, agreement = compare_with_software(result.table, software, has_flux=True)
    assert len(side) == 3 and set(side["set"]) == {"random", "low-confidence", "high-confidence"}
    a = agreement.iloc[0]
    assert a["sets"] == 3 and a["spearman"] == pytest.approx(1.0) and a["same_top_set"]
    with pytest.raises(LoadError, match="summary.json"):
        read_campaign_rates(tmp_path)
