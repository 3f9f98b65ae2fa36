"""The watchdog with real child processes: crashes, hangs, escalation, aborts, the end of a run.

The supervised child is a small Python script (no torch: it starts in a fraction of a second)
that behaves according to the watchdog's attempt number, so each scenario is deterministic.
"""

import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from faultsift.beam.logformat import parse_log, parse_log_text
from faultsift.beam.watchdog import Watchdog, WatchdogConfig

CHILD = textwrap.dedent('''
    import os, signal, subprocess, sys, time
    log_dir, script = sys.argv[1], sys.argv[2].split(",")
    attempt = int(os.environ["FAULTSIFT_WATCHDOG_ATTEMPT"])
    action = script[min(attempt, len(script) - 1)]
    path = os.path.join(log_dir, f"2025_01_01_00_00_{attempt:02d}_child_ECC_OFF_h.log")
    out = open(path, "w")
    def line(text):
        out.write(text + "\\n"); out.flush()
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    if action == "silent":
        time.sleep(1000)
    line("#HEADER set:s model:m")
    line("#BEGIN Y:2025 M:01 D:01 Time:00:00:00")
    line("#IT 1 KerTime:0.1 AccTime:0.1")
    if action == "crash":
        sys.exit(1)
    if action == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    if action == "abort":
        line("#ABORT too many errors per iteration"); sys.exit(3)
    if action == "hang":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"])
        open(os.path.join(log_dir, f"grandchild{attempt}.pid"), "w").write(str(child.pid))
        while True:
            time.sleep(1000)
    if action == "ok":
        line("#END"); sys.exit(0)
    if action == "run":
        i = 1
        while not stop:
            i += 1
            line(f"#IT {i} KerTime:0.1 AccTime:{0.1 * i:.1f}")
            time.sleep(0.05)
        line("#END"); sys.exit(0)
    if action == "deaf":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            time.sleep(1000)
''')


@pytest.fixture
def child(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    log_dir = tmp_path / "logs"
    log_dir.mkdir()

    def command(*actions: str) -> tuple[str, ...]:
        return (sys.executable, str(script), str(log_dir), ",".join(actions))

    return log_dir, command


def server_lines(watchdog: Watchdog) -> list[str]:
    return watchdog.server_log.read_text().splitlines()


def dues(watchdog: Watchdog):
    return [e for e in parse_log_text(watchdog.server_log.read_text()).server if e.kind == "due"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for its parent counts as gone
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def test_crash_signal_and_hang_are_dues_and_the_process_group_dies(child):
    log_dir, command = child
    wd = Watchdog(WatchdogConfig(command("crash", "segv", "hang", "ok"), log_dir, timeout=1.5, startup_timeout=30,
                                 host="h"))
    assert wd.run() == 0
    events = dues(wd)
    assert [(e.fields["kind"], e.due_kind, e.fields["streak"]) for e in events] == [
        ("crash", "app", "1"), ("crash", "app", "1"), ("hang", "app", "1")]  # an #IT before each resets the streak
    assert events[0].fields["rc"] == "1" and events[1].fields["signal"] == "SIGSEGV"
    assert events[2].fields["log"] == "2025_01_01_00_00_02_child_ECC_OFF_h.log"
    assert float(events[2].fields["idle_s"]) >= 1.5
    grandchild = int((log_dir / "grandchild2.pid").read_text())
    deadline = time.monotonic() + 5
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(grandchild), "the hung child's own child survived: the process group was not killed"
    lines = server_lines(wd)
    assert "#SERVER_BEGIN Y:" in lines[0] and "#SERVER_EXIT rc:0" in lines[-2] and "#SERVER_END TIME:" in lines[-1]
    assert sum("#SERVER_START" in line for line in lines) == 4
    server = parse_log(wd.server_log)
    assert server.server[0].kind == "begin" and server.server[-1].kind == "end" and server.first_time is not None


def test_escalation_hooks_and_giving_up(child, tmp_path):
    log_dir, command = child
    marker = tmp_path / "hooks.txt"
    wd = Watchdog(WatchdogConfig(command("silent"), log_dir, timeout=0.4, startup_timeout=0.4, max_app_restarts=3,
                                 reboot_cmd=f"echo reboot $FAULTSIFT_DUE_LEVEL >> {marker}",
                                 power_cycle_cmd=f"echo power $FAULTSIFT_DUE_LEVEL >> {marker}", max_power_cycles=2,
                                 host="h"))
    assert wd.run() == 1
    events = dues(wd)
    assert [e.due_kind for e in events] == ["app", "app", "app", "os", "power", "power"]
    assert [e.fields["streak"] for e in events] == ["1", "2", "3", "4", "5", "6"]
    assert all(e.fields["kind"] == "startup-hang" for e in events)
    assert events[3].fields["hook_rc"] == "0" and events[0].fields.get("hook_rc") is None
    assert marker.read_text().split("\n")[:3] == ["reboot os", "power power", "power power"]
    lines = server_lines(wd)
    assert "#SERVER_GIVEUP" in lines[-2] and "reason:gave-up" in lines[-1]


def test_it_lines_reset_the_escalation(child):
    log_dir, command = child
    wd = Watchdog(WatchdogConfig(command("crash", "crash", "crash", "crash", "crash", "ok"), log_dir, timeout=5,
                                 startup_timeout=30, max_app_restarts=1, host="h"))
    assert wd.run() == 0
    events = dues(wd)
    assert len(events) == 5 and all(e.due_kind == "app" and e.fields["streak"] == "1" for e in events)


def test_abort_restarts_without_a_due(child):
    log_dir, command = child
    wd = Watchdog(WatchdogConfig(command("abort", "ok"), log_dir, timeout=5, startup_timeout=30, host="h"))
    assert wd.run() == 0
    assert not dues(wd)
    assert any("#SERVER_ABORT rc:3" in line for line in server_lines(wd))


def test_duration_ends_the_run_cleanly_and_a_deaf_child_is_a_hang(child, tmp_path):
    log_dir, command = child
    wd = Watchdog(WatchdogConfig(command("run"), log_dir, timeout=5, startup_timeout=30, duration=2.0, host="h"))
    assert wd.run() == 0
    log = parse_log(log_dir / "2025_01_01_00_00_00_child_ECC_OFF_h.log")
    assert log.ended and len(log.iterations) > 3 and not dues(wd)
    assert "reason:duration" in server_lines(wd)[-1]
    deaf_dir = tmp_path / "deaf"
    deaf_dir.mkdir()
    script = command("deaf")[1]
    wd = Watchdog(WatchdogConfig((sys.executable, script, str(deaf_dir), "deaf"), deaf_dir, timeout=30,
                                 startup_timeout=30, duration=1.5, kill_grace=0.5, host="h"))
    assert wd.run() == 0
    events = dues(wd)
    assert len(events) == 1 and events[0].fields["kind"] == "hang" and events[0].fields["at_stop"] == "1"


def test_bad_config_is_one_line(tmp_path):
    from faultsift.errors import ConfigError

    with pytest.raises(ConfigError, match="command to supervise"):
        WatchdogConfig((), tmp_path).check()
    with pytest.raises(ConfigError, match="timeouts"):
        WatchdogConfig(("x",), tmp_path, timeout=0).check()
