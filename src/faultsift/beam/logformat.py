"""libLogHelper-compatible beam logs: a writer and a tolerant parser.

The writer produces the line format the beam-testing community's servers and parsers read::

    #HEADER model:zoo:digits-vit set:low-confidence threshold:1e-05 ...
    #BEGIN Y:2025 M:03 D:14 Time:10:30:45
    #IT 1 KerTime:0.0012345 AccTime:0.0012345
    #ERR critical batch:0 imgid:17 i:3 g:4 o:9 gt:4
    #ERR batch:0 imgid:17 output_t nan:0 inf:0 min:-3.1 max:8.2 diff_t nan:0 inf:0 min:0 max:2.5
    #SDC Ite:7 KerTime:0.0012001 AccTime:0.0087110 KerErr:10 AccErr:10
    #END

and a JSON-lines twin (same stem, ``.jsonl``) with every event and its wall-clock time.

The parser accepts our logs and the variants seen in real logs from 2015 to 2024: old
(``#IT Ite:n``) and new (``#IT n``) iteration lines, ``#INF`` count lines, ``#ERR`` lines
before (or after) their ``#SDC`` line, blank lines, NUL padding, a missing ``#END``, a line
cut off by a crash, free-text ``#HEADER``, and server-prefixed lines
(``YYYY-MM-DD HH:MM:SS.mmm #IT ...``, ``#SERVER_BEGIN``, ``#SERVER_DUE:...``, ``#SERVER_END``).
Problems never stop the parse: they become messages in :attr:`ParsedLog.warnings`.

Example::

    log = parse_log(Path("2025_03_14_10_30_45_fsift-digits-vit-low_ECC_OFF_dut1.log"))
    len(log.sdcs), log.critical_count, log.acc_time
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterable

DATE_FORMAT = "%Y_%m_%d_%H_%M_%S"
MAX_ERR_LINES = 500  # #ERR lines per iteration, as libLogHelper caps them

# ---------------------------------------------------------------------------- file names

_NAME_ECC = re.compile(r"^(\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2})_(.+?)_ECC_(ON|OFF)_(.+)\.log$")
_NAME_OLD = re.compile(r"^(\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2})_(.+)\.log$")


@dataclass(frozen=True)
class LogName:
    """What a log file name says: start time, benchmark, ECC (None in older names), host."""

    start: datetime
    benchmark: str
    ecc: bool | None
    host: str


def log_file_name(start: datetime, benchmark: str, host: str, ecc: bool | None = False) -> str:
    """``YYYY_MM_DD_HH_MM_SS_<benchmark>_ECC_<ON|OFF>_<host>.log`` (older form when ``ecc`` is None)."""
    stamp = start.strftime(DATE_FORMAT)
    if ecc is None:
        return f"{stamp}_{benchmark}_{host}.log"
    return f"{stamp}_{benchmark}_ECC_{'ON' if ecc else 'OFF'}_{host}.log"


def parse_log_name(name: str, hosts: Iterable[str] = ()) -> LogName | None:
    """Parse a log file name (newer ``_ECC_ON|OFF_`` form or the older one); None if neither.

    In the older form ``<bench>_<host>`` is ambiguous when either contains ``_``: a host in
    ``hosts`` that ends the name wins; otherwise the host is the part after the last ``_``.
    """
    name = Path(name).name
    m = _NAME_ECC.match(name)
    try:
        if m:
            return LogName(datetime.strptime(m[1], DATE_FORMAT), m[2], m[3] == "ON", m[4])
        m = _NAME_OLD.match(name)
        if not m:
            return None
        start, rest = datetime.strptime(m[1], DATE_FORMAT), m[2]
    except ValueError:  # digits in the right places but not a date
        return None
    for host in sorted(hosts, key=len, reverse=True):
        if rest.endswith("_" + host) and len(rest) > len(host) + 1:
            return LogName(start, rest[: -len(host) - 1], None, host)
    bench, sep, host = rest.rpartition("_")
    return LogName(start, bench if sep else rest, None, host if sep else "")


# ---------------------------------------------------------------------------- writer


def _value(v) -> str:
    text = v if isinstance(v, str) else json.dumps(v) if isinstance(v, (list, tuple, dict)) else str(v)
    return "_".join(text.split()) or "-"


def format_header(params: dict) -> str:
    """``#HEADER k:v k:v ...`` with whitespace in values replaced by ``_``."""
    return "#HEADER " + " ".join(f"{k}:{_value(v)}" for k, v in params.items())


def local_now() -> datetime:
    return datetime.now()


class LogWriter:
    """Write one libLogHelper-style log and its JSON-lines twin.

    Every line is flushed at once (the watchdog watches the file grow; a crashed process loses
    nothing it wrote); error, abort and end lines are also fsync-ed.
    """

    def __init__(self, log_dir: Path, benchmark: str, header: dict, host: str | None = None,
                 ecc: bool | None = False, jsonl: bool = True, max_err_lines: int = MAX_ERR_LINES,
                 start: datetime | None = None):
        log_dir = Path(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        self.host = host or socket.gethostname()
        self.benchmark = "-".join(benchmark.replace("_", "-").split())
        self.start = (start or local_now()).replace(microsecond=0)
        while True:  # two logs in one second: the later one starts a second later in its name
            path = log_dir / log_file_name(self.start, self.benchmark, self.host.replace("/", "-"), ecc)
            try:
                self._file = open(path, "x", encoding="utf-8")
                break
            except FileExistsError:
                self.start += timedelta(seconds=1)
        self.path = path
        self.jsonl_path = path.with_suffix(".jsonl") if jsonl else None
        self._jsonl = open(self.jsonl_path, "w", encoding="utf-8") if jsonl else None
        self.max_err_lines = max_err_lines
        self.closed = False
        self._line(format_header(header), "HEADER", params=header)
        b = self.start
        self._line(f"#BEGIN Y:{b:%Y} M:{b:%m} D:{b:%d} Time:{b:%H:%M:%S}", "BEGIN", name=path.name)

    def _line(self, text: str, event: str, sync: bool = False, **fields) -> None:
        self._file.write(text + "\n")
        self._file.flush()
        if self._jsonl is not None:
            now = time.time()
            record = {"event": event, "t": now, "time": datetime.fromtimestamp(now).isoformat(timespec="microseconds"),
                      **fields}
            self._jsonl.write(json.dumps(record, allow_nan=True) + "\n")
            self._jsonl.flush()
        if sync:
            os.fsync(self._file.fileno())
            if self._jsonl is not None:
                os.fsync(self._jsonl.fileno())

    def event(self, event: str, **fields) -> None:
        """A JSON-lines-only event (reloads, emulator notes): no line in the libLogHelper log."""
        if self._jsonl is not None:
            now = time.time()
            record = {"event": event, "t": now, "time": datetime.fromtimestamp(now).isoformat(timespec="microseconds"),
                      **fields}
            self._jsonl.write(json.dumps(record, allow_nan=True) + "\n")
            self._jsonl.flush()

    def iteration(self, ite: int, ker_time: float, acc_time: float) -> None:
        """``#IT <n> KerTime:<s> AccTime:<s>`` (the newer helper's form)."""
        self._line(f"#IT {ite} KerTime:{ker_time:.7f} AccTime:{acc_time:.7f}", "IT",
                   ite=ite, ker_time=ker_time, acc_time=acc_time)

    def sdc(self, ite: int, ker_time: float, acc_time: float, ker_err: int, acc_err: int,
            details: list[str], critical: int = 0, **extra) -> None:
        """``#ERR`` detail lines (at most ``max_err_lines``, as libLogHelper) then the ``#SDC`` count line."""
        shown = details[: self.max_err_lines]
        for detail in shown:
            self._file.write(f"#ERR {detail}\n")
        self._line(f"#SDC Ite:{ite} KerTime:{ker_time:.7f} AccTime:{acc_time:.7f} KerErr:{ker_err} AccErr:{acc_err}",
                   "SDC", sync=True, ite=ite, ker_time=ker_time, acc_time=acc_time, ker_err=ker_err, acc_err=acc_err,
                   critical=critical, err_lines=len(shown), details=details[:50], **extra)

    def info(self, detail: str) -> None:
        self._line(f"#INF {detail}", "INF", detail=detail)

    def abort(self, reason: str) -> None:
        self._line(f"#ABORT {reason}", "ABORT", sync=True, reason=reason)

    def end(self) -> None:
        if not self.closed:
            self._line("#END", "END", sync=True)
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._file.close()
            if self._jsonl is not None:
                self._jsonl.close()


# ---------------------------------------------------------------------------- parser

_PREFIX = re.compile(r"^(\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?)\s+(.*)$")
_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf))"
_IT = re.compile(r"^#IT\s+(?:Ite:\s*)?(\d+)(.*)$")
_KV_NUM = re.compile(r"(\w+):\s*" + _NUM, re.IGNORECASE)
_SDC = re.compile(r"^#SDC\b(.*)$")
_KEY_TOKEN = re.compile(r"^([A-Za-z_][\w.\-]*):(.*)$")
_BEGIN = re.compile(r"Y:\s*(\d+)\s+M:\s*(\d+)\s+D:\s*(\d+)\s+Time:\s*(\d+):(\d+):(\d+)", re.IGNORECASE)
_SERVER_BEGIN = re.compile(r"Y:\s*(\d+)\s+M:\s*(\d+)\s+D:\s*(\d+)\s+TIME:\s*(\d+):(\d+):(\d+)(?:[-.](\d+))?",
                           re.IGNORECASE)
_SERVER_END = re.compile(r"TIME:\s*(\d{4})-(\d{1,2})-(\d{1,2})-(\d{1,2})-(\d{1,2})-(\d{1,2})(?:[-.](\d+))?",
                         re.IGNORECASE)
DUE_KINDS = {"soft app reboot": "app", "soft os reboot": "os", "power cycle": "power"}


def parse_header(text: str) -> dict[str, str]:
    """Header text to a dict, tolerant of free text.

    ``size:4096`` -> {size: 4096}; ``iterations: 1000 img_list: a.txt board: K40`` ->
    {iterations: 1000, img_list: a.txt, board: K40}; ``model:zoo:vit`` -> {model: zoo:vit};
    words without a key go to ``_text``.
    """
    out: dict[str, str] = {}
    free: list[str] = []
    key = None
    for token in text.split():
        m = _KEY_TOKEN.match(token)
        if m and not m[1].replace(".", "").replace("-", "").isdigit():
            key = m[1]
            out[key] = m[2]
            continue
        if key is not None and out[key] == "":
            out[key] = token
        elif key is not None and not m:
            out[key] = f"{out[key]} {token}"
        else:
            free.append(token)
    if free:
        out["_text"] = " ".join(free)
    return out


def _number(text: str) -> float:
    low = text.lower().lstrip("+")
    if low in ("nan", "-nan"):
        return float("nan")
    return float(text)


@dataclass
class Iteration:
    ite: int
    ker_time: float | None
    acc_time: float | None
    time: datetime | None
    line: int


@dataclass
class SdcEvent:
    """One ``#SDC`` line with the ``#ERR`` lines that belong to it.

    ``complete`` is False for ``#ERR`` lines left without their ``#SDC`` (the run crashed while
    logging them): an error was seen, its count is unknown.
    """

    ite: int | None
    ker_time: float | None
    acc_time: float | None
    ker_err: int | None
    acc_err: int | None
    details: list[str]
    line: int
    time: datetime | None = None
    complete: bool = True

    @property
    def critical(self) -> bool:
        return any(d.lower().startswith("critical") for d in self.details)


@dataclass
class ServerEvent:
    """A server/watchdog line: ``begin``, ``end``, ``due`` (with ``due_kind`` app/os/power) or ``other``."""

    kind: str
    message: str
    fields: dict[str, str]
    time: datetime | None
    line: int
    due_kind: str | None = None


@dataclass
class ParsedLog:
    """Everything read from one log file; ``warnings`` says what was odd and what was done."""

    path: Path | None
    name: LogName | None
    header: dict[str, str] = field(default_factory=dict)
    header_text: str = ""
    begin: datetime | None = None
    iterations: list[Iteration] = field(default_factory=list)
    sdcs: list[SdcEvent] = field(default_factory=list)
    infos: list[dict] = field(default_factory=list)
    aborts: list[str] = field(default_factory=list)
    ended: bool = False
    server: list[ServerEvent] = field(default_factory=list)
    first_time: datetime | None = None  # first/last line timestamps (server prefix or JSONL twin)
    last_time: datetime | None = None
    err_order: str = "before"
    unknown_lines: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.path.name if self.path else "<text>"

    @property
    def acc_time(self) -> float:
        """Accumulated kernel time: the largest AccTime of any ``#IT``/``#SDC``/``#INF`` line."""
        values = [i.acc_time for i in self.iterations if i.acc_time is not None]
        values += [s.acc_time for s in self.sdcs if s.acc_time is not None]
        values += [i["acc_time"] for i in self.infos if i.get("acc_time") is not None]
        return max(values, default=0.0)

    @property
    def last_ite(self) -> int:
        values = [i.ite for i in self.iterations] + [s.ite for s in self.sdcs if s.ite is not None]
        return max(values, default=0)

    @property
    def sdc_count(self) -> int:
        return len(self.sdcs)

    @property
    def critical_count(self) -> int:
        return sum(s.critical for s in self.sdcs)

    @property
    def start(self) -> datetime | None:
        """When the device started this log: ``#BEGIN``, else the file name, else the first line time."""
        if self.begin is not None:
            return self.begin
        if self.name is not None:
            return self.name.start
        return self.first_time

    @property
    def end(self) -> datetime | None:
        """When the log's last line was written: a line timestamp if any, else start + AccTime."""
        if self.last_time is not None:
            return self.last_time
        start = self.start
        return start + timedelta(seconds=self.acc_time) if start is not None else None

    @property
    def has_line_times(self) -> bool:
        return self.last_time is not None

    @property
    def is_server_log(self) -> bool:
        return bool(self.server)


def _parse_prefix_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace(",", ".").replace(" ", "T"))
    except ValueError:
        return None


def _server_event(body: str, stamp: datetime | None, lineno: int) -> ServerEvent:
    tag, _, rest = body.partition(" ")
    if tag.upper() == "#SERVER_BEGIN":
        m = _SERVER_BEGIN.search(rest)
        when = stamp
        if m:
            micro = int((m[7] or "0")[:6].ljust(6, "0"))
            when = datetime(*(int(m[i]) for i in range(1, 7)), micro)
        return ServerEvent("begin", rest.strip(), {}, when, lineno)
    if tag.upper() == "#SERVER_END":
        m = _SERVER_END.search(rest)
        when = stamp
        if m:
            when = datetime(*(int(m[i]) for i in range(1, 7)), int((m[7] or "0")[:6].ljust(6, "0")))
        return ServerEvent("end", rest.strip(), {}, when, lineno)
    if body.upper().startswith("#SERVER_DUE"):
        head = body.split(" ", 1)[0]  # `#SERVER_DUE:soft APP reboot ...` or `#SERVER_DUE soft ...`
        message = body.split(":", 1)[1] if ":" in head else rest
        words, fields = [], {}
        for token in message.split():
            m = _KEY_TOKEN.match(token)
            if m:
                fields[m[1]] = m[2]
            else:
                words.append(token)
        text = " ".join(words)
        due_kind = DUE_KINDS.get(text.lower())
        when = stamp
        if "TIME" in fields:
            m = _SERVER_END.search("TIME:" + fields["TIME"])
            if m:
                when = datetime(*(int(m[i]) for i in range(1, 7)), int((m[7] or "0")[:6].ljust(6, "0")))
        return ServerEvent("due", text, fields, when, lineno, due_kind or "app")
    fields = {m[1]: m[2] for m in (_KEY_TOKEN.match(t) for t in rest.split()) if m}
    return ServerEvent("other", body, fields, stamp, lineno)


def parse_log_text(text: str | bytes, path: Path | None = None, hosts: Iterable[str] = ()) -> ParsedLog:
    """Parse the content of one log (see the module docstring for the accepted variants)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    log = ParsedLog(path, parse_log_name(path.name, hosts) if path is not None else None)
    if path is not None and log.name is None:
        log.warnings.append(f"{path.name}: file name does not follow YYYY_MM_DD_HH_MM_SS_<bench>[_ECC_<ON|OFF>]_<host>.log.")
    nul = text.count("\x00")
    if nul:
        text = text.replace("\x00", "")
        log.warnings.append(f"{log.label}: removed {nul} NUL bytes (padding of a crashed run).")
    ends_with_newline = text.endswith("\n") or text.endswith("\r")
    lines = text.splitlines()
    last_nonblank = max((i for i, s in enumerate(lines) if s.strip()), default=-1)
    pending: list[str] = []
    pending_line = 0
    first_err = first_sdc = None
    raw_errs: list[tuple[int, str, datetime | None]] = []
    unknown: list[int] = []
    prev_time: datetime | None = None
    prev_ite = -1
    for index, raw in enumerate(lines):
        lineno = index + 1
        line = raw.strip()
        if not line:
            continue
        stamp = None
        m = _PREFIX.match(line)
        if m:
            stamp = _parse_prefix_time(m[1])
            line = m[2].strip()
            if stamp is not None:
                if prev_time is not None and stamp < prev_time:
                    log.warnings.append(f"{log.label}:{lineno}: timestamp {stamp} is earlier than the line before "
                                        f"({prev_time}); kept in file order.")
                prev_time = stamp if prev_time is None else max(prev_time, stamp)
                log.first_time = log.first_time or stamp
                log.last_time = stamp if log.last_time is None else max(log.last_time, stamp)
        cut = index == last_nonblank and not ends_with_newline
        upper = line.upper()
        try:
            if upper.startswith("#SERVER"):
                log.server.append(_server_event(line, stamp, lineno))
            elif upper.startswith("#HEADER"):
                log.header_text = line[len("#HEADER"):].strip()
                log.header.update(parse_header(log.header_text))
            elif upper.startswith("#BEGIN"):
                m = _BEGIN.search(line)
                if m:
                    log.begin = datetime(*(int(m[i]) for i in range(1, 7)))
                else:
                    log.warnings.append(f"{log.label}:{lineno}: unreadable #BEGIN line {line[:60]!r}.")
            elif upper.startswith("#IT"):
                m = _IT.match(line)
                if not m:
                    raise ValueError("no iteration number")
                kv = {k.lower(): _number(v) for k, v in _KV_NUM.findall(m[2])}
                if cut and ("acctime" not in kv):
                    raise ValueError("cut off")
                ite = int(m[1])
                if ite < prev_ite:
                    log.warnings.append(f"{log.label}:{lineno}: iteration {ite} after {prev_ite}; kept.")
                prev_ite = max(prev_ite, ite)
                log.iterations.append(Iteration(ite, kv.get("kertime"), kv.get("acctime"), stamp, lineno))
            elif upper.startswith("#SDC"):
                kv = {k.lower(): _number(v) for k, v in _KV_NUM.findall(line)}
                if "kererr" not in kv or (cut and "accerr" not in kv):
                    raise ValueError("missing KerErr/AccErr")
                first_sdc = first_sdc if first_sdc is not None else lineno
                ite = int(kv["ite"]) if "ite" in kv else None
                if ite is not None:
                    prev_ite = max(prev_ite, ite)
                log.sdcs.append(SdcEvent(ite, kv.get("kertime"), kv.get("acctime"), int(kv["kererr"]),
                                         int(kv["accerr"]) if "accerr" in kv else None, [], lineno, stamp))
            elif upper.startswith("#ERR"):
                first_err = first_err if first_err is not None else lineno
                raw_errs.append((lineno, line[4:].strip(), stamp))
            elif upper.startswith("#INF"):
                kv = {k.lower(): _number(v) for k, v in _KV_NUM.findall(line)}
                if "kerinf" in kv:
                    log.infos.append({"ite": int(kv.get("ite", 0)), "ker_time": kv.get("kertime"),
                                      "acc_time": kv.get("acctime"), "ker_inf": int(kv["kerinf"]), "line": lineno})
                else:
                    log.infos.append({"detail": line[4:].strip(), "line": lineno})
            elif upper.startswith("#ABORT"):
                log.aborts.append(line[6:].strip())
            elif upper.startswith("#END"):
                log.ended = True
            else:
                unknown.append(lineno)
        except ValueError as exc:
            if cut:
                log.warnings.append(f"{log.label}:{lineno}: last line cut off mid-line ({line[:60]!r}); ignored.")
            else:
                log.warnings.append(f"{log.label}:{lineno}: unreadable line {line[:60]!r} ({exc}); ignored.")
    if unknown:
        log.unknown_lines = len(unknown)
        shown = ", ".join(str(n) for n in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        log.warnings.append(f"{log.label}: {len(unknown)} lines without a known tag (lines {shown}); ignored.")
    _attach_errs(log, raw_errs, first_err, first_sdc)
    if not log.header_text and not log.server:
        log.warnings.append(f"{log.label}: no #HEADER line.")
    if not log.ended and not log.server:
        log.warnings.append(f"{log.label}: no #END line (the run crashed, hung or was stopped).")
    return log


def _attach_errs(log: ParsedLog, errs: list[tuple[int, str, datetime | None]], first_err, first_sdc) -> None:
    """Give ``#ERR`` lines to their ``#SDC``: the next one if the first ``#ERR`` precedes the first
    ``#SDC`` (libLogHelper order), else the previous one. Left-over lines make an incomplete event."""
    if not errs:
        return
    log.err_order = "before" if first_sdc is None or first_err < first_sdc else "after"
    sdc_lines = [s.line for s in log.sdcs]
    orphans: list[tuple[int, str, datetime | None]] = []
    import bisect

    for lineno, detail, stamp in errs:
        pos = bisect.bisect_left(sdc_lines, lineno)
        target = pos if log.err_order == "before" else pos - 1
        if 0 <= target < len(log.sdcs):
            log.sdcs[target].details.append(detail)
        else:
            orphans.append((lineno, detail, stamp))
    if orphans:
        log.sdcs.append(SdcEvent(None, None, None, None, None, [d for _, d, _ in orphans], orphans[0][0],
                                 orphans[0][2], complete=False))
        log.warnings.append(f"{log.label}:{orphans[0][0]}: {len(orphans)} #ERR lines without their #SDC line "
                            "(the run stopped while logging an error); counted as one SDC of unknown size.")


def read_jsonl_events(path: Path) -> tuple[list[dict], list[str]]:
    """Events of a JSON-lines twin; a cut-off or corrupt line becomes a warning."""
    events, warnings = [], []
    try:
        content = Path(path).read_bytes().replace(b"\x00", b"").decode("utf-8", errors="replace")
    except OSError as exc:
        return [], [f"{path}: cannot read ({exc})."]
    for lineno, line in enumerate(content.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not an object")
            events.append(record)
        except ValueError:
            warnings.append(f"{Path(path).name}:{lineno}: unreadable JSON line; ignored.")
    return events, warnings


def parse_log(path: Path, hosts: Iterable[str] = ()) -> ParsedLog:
    """Parse one log file; its JSON-lines twin, if present, supplies the line times."""
    path = Path(path)
    log = parse_log_text(path.read_bytes(), path, hosts)
    twin = path.with_suffix(".jsonl")
    if twin.is_file():
        events, warnings = read_jsonl_events(twin)
        log.warnings += warnings
        times = []
        for e in events:
            try:
                times.append(datetime.fromisoformat(e["time"]))
            except (KeyError, TypeError, ValueError):
                continue
        if times:
            log.first_time = min(times) if log.first_time is None else min(log.first_time, min(times))
            log.last_time = max(times) if log.last_time is None else max(log.last_time, max(times))
    return log


def find_logs(paths: Iterable[Path]) -> list[Path]:
    """Log files among ``paths`` (files as given; folders searched recursively for ``*.log``)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(q for q in p.rglob("*.log") if q.is_file())
        else:
            found.append(p)
    return found
