"""The watchdog: run the harness as a child process and bring it back after crashes and hangs.

Like the beam-testing community's server (one per device under test), in one process on the
device's host:

- heartbeat: the child's logs in ``log_dir`` growing; no growth for ``timeout`` seconds
  (``startup_timeout`` until the child's first line) is a hang: the child's whole process
  group is killed;
- a non-zero exit or a signal is a crash; exit code :data:`~faultsift.beam.harness.ABORT_EXIT`
  after ``#ABORT`` is a restart, not a DUE; exit 0 ends the supervision;
- escalation: app restart (kill + relaunch) up to ``max_app_restarts`` times in a row, then
  the ``reboot_cmd`` hook (``#SERVER_DUE:soft OS reboot``), then the ``power_cycle_cmd`` hook
  (``#SERVER_DUE:power cycle``) up to ``max_power_cycles`` times, then give up; an ``#IT``
  line resets the counters;
- every event is a line of the server log, prefixed with its timestamp::

      2025-03-14 10:30:45.123 #SERVER_BEGIN Y:2025 M:3 D:14 TIME:10:30:45-123456 host:dut1
      2025-03-14 10:31:02.456 #SERVER_DUE:soft APP reboot kind:hang log:2025_..._dut1.log streak:1 attempt:0 idle_s:10.0
      2025-03-14 11:30:45.789 #SERVER_END TIME:2025-03-14-11-30-45 reason:duration

  ``log:`` names the device log the failure happened in and ``streak:`` the step of the
  escalation (1 opens a new DUE episode), so the analysis counts each failure once.

Example::

    Watchdog(WatchdogConfig(command=("faultsift", "beam", "run", ...), log_dir=Path("logs"), timeout=10)).run()
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from faultsift.beam.harness import ABORT_EXIT, ATTEMPT_ENV
from faultsift.errors import ConfigError

DUE_APP, DUE_OS, DUE_POWER = "soft APP reboot", "soft OS reboot", "power cycle"


@dataclass(frozen=True)
class WatchdogConfig:
    command: tuple[str, ...]
    log_dir: Path
    server_log: Path | None = None  # default: <log_dir>/<date>_server_<host>.log
    timeout: float = 10.0
    startup_timeout: float = 120.0
    max_app_restarts: int = 3
    reboot_cmd: str | None = None
    power_cycle_cmd: str | None = None
    max_power_cycles: int = 3
    duration: float = 0.0  # 0: until the child exits 0
    poll: float = 0.1
    kill_grace: float = 10.0
    hook_timeout: float = 300.0
    host: str | None = None

    def check(self) -> "WatchdogConfig":
        if not self.command:
            raise ConfigError("Expected a command to supervise after `--`, e.g. `-- faultsift beam run ...`.")
        if self.timeout <= 0 or self.startup_timeout <= 0:
            raise ConfigError(f"Expected timeouts > 0 s, got {self.timeout} and {self.startup_timeout}.")
        if self.max_app_restarts < 0 or self.max_power_cycles < 0:
            raise ConfigError("Expected `max_app_restarts` and `max_power_cycles` >= 0.")
        return self


class _LogWatch:
    """Follow every ``*.log`` in a folder: growth is the heartbeat; complete lines are read."""

    def __init__(self, folder: Path, exclude: Path):
        self.folder, self.exclude = Path(folder), Path(exclude).resolve()
        self.offsets: dict[Path, int] = {}
        self.partial: dict[Path, bytes] = {}
        for path in self._files():  # what is there before we start is not progress
            self.offsets[path] = path.stat().st_size

    def _files(self) -> list[Path]:
        return [p for p in self.folder.glob("*.log") if p.resolve() != self.exclude and p.is_file()]

    def poll(self) -> tuple[bool, list[tuple[Path, str]]]:
        grew, lines = False, []
        for path in self._files():
            try:
                size = path.stat().st_size
            except OSError:
                continue
            offset = self.offsets.get(path, 0)
            if size <= offset:
                continue
            grew = True
            with open(path, "rb") as handle:
                handle.seek(offset)
                data = self.partial.pop(path, b"") + handle.read(size - offset)
            self.offsets[path] = size
            *complete, rest = data.split(b"\n")
            if rest:
                self.partial[path] = rest
            lines += [(path, c.decode("utf-8", errors="replace").strip("\x00\r ")) for c in complete]
        return grew, lines


class Watchdog:
    """Supervise one harness command (see the module docstring); :meth:`run` returns an exit code."""

    def __init__(self, config: WatchdogConfig):
        self.cfg = config.check()
        self.host = config.host or socket.gethostname()
        log_dir = Path(config.log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        start = datetime.now()
        self.server_log = Path(config.server_log) if config.server_log else \
            log_dir / f"{start:%Y_%m_%d_%H_%M_%S}_server_{self.host}.log"
        self.server_log.parent.mkdir(parents=True, exist_ok=True)
        self._out = open(self.server_log, "a", encoding="utf-8")
        self.watch = _LogWatch(log_dir, self.server_log)
        self.child: subprocess.Popen | None = None
        self.attempt = 0
        self.streak = 0
        self.app_restarts = 0
        self.os_reboots = 0
        self.power_cycles = 0
        self.current_log = ""
        self.events: list[dict] = []
        self._signal = None
        self.output = open(log_dir / "supervised-output.txt", "ab")

    # -- server log -----------------------------------------------------------------
    def _line(self, text: str) -> None:
        now = datetime.now()
        self._out.write(f"{now:%Y-%m-%d %H:%M:%S}.{now.microsecond // 1000:03d} {text}\n")
        self._out.flush()
        os.fsync(self._out.fileno())

    # -- child process ------------------------------------------------------------------
    def _start(self) -> None:
        env = {**os.environ, ATTEMPT_ENV: str(self.attempt)}
        self.child = subprocess.Popen(list(self.cfg.command), start_new_session=True, env=env,
                                      stdin=subprocess.DEVNULL, stdout=self.output, stderr=subprocess.STDOUT)
        self._line(f"#SERVER_START attempt:{self.attempt} pid:{self.child.pid}")
        self.started = time.monotonic()
        self.last_progress = self.started
        self.progressed = False

    def _kill(self, grace: float = 0.0) -> tuple[int | None, bool]:
        """Stop the child's process group: SIGTERM and ``grace`` seconds first if asked, then SIGKILL.

        Returns the child's exit code and whether it had to be killed (it ignored SIGTERM: hung).
        """
        child = self.child
        if child is None:
            return None, False
        hard = child.poll() is None
        if grace and hard:
            try:
                os.killpg(child.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                child.wait(grace)
                hard = False
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(child.pid, signal.SIGKILL)  # also any grandchildren left in the group
        except (ProcessLookupError, PermissionError):
            pass
        rc = child.wait()
        self.child = None
        return rc, hard

    def _stop_child(self) -> None:
        """End of supervision: SIGTERM, then SIGKILL; a child that had to be killed was hung, one that
        died of something other than our SIGTERM crashed: both are DUEs."""
        rc, hard = self._kill(self.cfg.kill_grace)
        self._progress()
        if hard:
            self._due("hang", "at_stop:1", escalate=False)
        elif rc not in (None, 0, ABORT_EXIT, -signal.SIGTERM):
            self._due("crash", f"rc:{rc} at_stop:1", escalate=False)

    def _hook(self, command: str | None, level: str) -> str:
        if not command:
            return "hook:none"
        env = {**os.environ, "FAULTSIFT_DUE_LEVEL": level, "FAULTSIFT_LOG": self.current_log}
        try:
            rc = subprocess.run(command, shell=True, env=env, timeout=self.cfg.hook_timeout,
                                stdout=self.output, stderr=subprocess.STDOUT).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        return f"hook_rc:{rc}"

    def _due(self, kind: str, detail: str, escalate: bool = True) -> bool:
        """Log a DUE, escalate, run hooks; False when the limits are spent (give up)."""
        self.streak += 1
        if not escalate:
            level, hook = DUE_APP, ""
        elif self.app_restarts < self.cfg.max_app_restarts:
            self.app_restarts += 1
            level, hook = DUE_APP, ""
        elif self.os_reboots < 1:
            self.os_reboots += 1
            level, hook = DUE_OS, self._hook(self.cfg.reboot_cmd, "os")
        elif self.power_cycles < self.cfg.max_power_cycles:
            self.power_cycles += 1
            level, hook = DUE_POWER, self._hook(self.cfg.power_cycle_cmd, "power")
        else:
            self._line(f"#SERVER_GIVEUP kind:{kind} log:{self.current_log or '-'} streak:{self.streak} {detail}")
            return False
        self.events.append({"level": level, "kind": kind, "log": self.current_log, "streak": self.streak})
        self._line(f"#SERVER_DUE:{level} kind:{kind} log:{self.current_log or '-'} streak:{self.streak} "
                   f"attempt:{self.attempt} {detail} {hook}".rstrip())
        return True

    def _progress(self) -> None:
        grew, lines = self.watch.poll()
        if not grew:
            return
        self.last_progress = time.monotonic()
        self.progressed = True
        for path, line in lines:
            self.current_log = path.name
            if line.startswith("#IT"):
                self.streak = self.app_restarts = self.os_reboots = self.power_cycles = 0

    def _on_signal(self, signum, frame) -> None:
        self._signal = signum

    def run(self) -> int:
        """Supervise until the duration ends, the child exits 0, a signal, or the limits are spent."""
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        now = datetime.now()
        self._line(f"#SERVER_BEGIN Y:{now.year} M:{now.month} D:{now.day} "
                   f"TIME:{now:%H:%M:%S}-{now.microsecond:06d} host:{self.host} timeout:{self.cfg.timeout:g}")
        began = time.monotonic()
        reason, code = "done", 0
        try:
            self._start()
            while True:
                time.sleep(self.cfg.poll)
                self._progress()
                if self._signal is not None:
                    reason, code = f"signal:{signal.Signals(self._signal).name}", 0
                    self._stop_child()
                    break
                if self.cfg.duration and time.monotonic() - began >= self.cfg.duration:
                    reason = "duration"
                    self._stop_child()
                    break
                rc = self.child.poll()
                if rc is not None:
                    self._kill()  # the exit of the leader: clear the rest of its group
                    self._progress()
                    if rc == 0:
                        self._line(f"#SERVER_EXIT rc:0 log:{self.current_log or '-'}")
                        break
                    if rc == ABORT_EXIT:
                        self._line(f"#SERVER_ABORT rc:{rc} log:{self.current_log or '-'} attempt:{self.attempt}")
                    else:
                        sig = f"signal:{signal.Signals(-rc).name}" if rc < 0 and -rc in signal.valid_signals() else ""
                        if not self._due("crash", f"rc:{rc} {sig}".strip()):
                            reason, code = "gave-up", 1
                            break
                    self.attempt += 1
                    self._start()
                    continue
                limit = self.cfg.timeout if self.progressed else self.cfg.startup_timeout
                idle = time.monotonic() - self.last_progress
                if idle > limit:
                    self._kill()
                    self._progress()
                    what = "hang" if self.progressed else "startup-hang"
                    if not self._due(what, f"idle_s:{idle:.1f}"):
                        reason, code = "gave-up", 1
                        break
                    self.attempt += 1
                    self._start()
        finally:
            if self.child is not None:
                self._kill(self.cfg.kill_grace)  # an exception in the watchdog itself
            end = datetime.now()
            self._line(f"#SERVER_END TIME:{end:%Y-%m-%d-%H-%M-%S} reason:{reason} attempts:{self.attempt + 1} "
                       f"dues:{len(self.events)}")
            self._out.close()
            self.output.close()
            for s, handler in old.items():
                signal.signal(s, handler)
        return code
