"""A beam without a beam: Poisson-timed faults, crashes and hangs inside the harness.

A thread draws event times from a Poisson process of ``rate`` events per second. Each event
is, with the given probabilities, a crash (the process aborts at once, as a GPU error kills
an application), a hang (the next inference never returns) or a fault: one bit flip (or the
chosen fault model) in a weight, which stays until the harness reloads the model, or in one
input's activation at a micro-op output during the next inference. Faults take effect at the
next inference, so each one is tied to exactly one iteration.

Every event goes to a ground-truth record (JSON lines, fsync-ed before a crash or hang):
``kind`` (fault/crash/hang), the device log it happened in, the iteration, and for faults
whether that iteration logged an error (``error``) and a critical one (``critical``). The
analysis of the logs must count exactly the faults with ``error`` (SDCs) and every crash and
hang (DUEs).

Example::

    emu = BeamEmulator(EmulatorConfig(rate=0.5, p_crash=0.05, p_hang=0.05, record=Path("truth.jsonl")))
    emu.attach("zoo:digits-vit", model, inputs)
    emu.start(lambda: writer.path.name)
"""

from __future__ import annotations

import json
import os
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from faultsift.errors import ConfigError

TARGETS = ("activations", "weights", "both")


@dataclass(frozen=True)
class EmulatorConfig:
    """Emulated beam: ``rate`` events/s; each a crash (``p_crash``), a hang (``p_hang``) or a fault."""

    rate: float
    record: Path
    p_crash: float = 0.0
    p_hang: float = 0.0
    fault_model: str = "bitflip"
    target: str = "activations"
    seed: int = 0
    bit_low: int = 0
    bit_high: int | None = None

    def check(self) -> "EmulatorConfig":
        if not self.rate > 0:
            raise ConfigError(f"Expected an emulated event rate > 0 per second, got {self.rate}.")
        for name, p in (("crash", self.p_crash), ("hang", self.p_hang)):
            if not 0 <= p <= 1:
                raise ConfigError(f"Expected the {name} probability in [0, 1], got {p}.")
        if self.p_crash + self.p_hang > 1:
            raise ConfigError(f"Expected crash + hang probabilities <= 1, got {self.p_crash + self.p_hang}.")
        if self.target not in TARGETS:
            raise ConfigError(f"Expected the emulated fault target among {', '.join(TARGETS)}, got `{self.target}`.")
        if self.target != "activations" and self.fault_model != "bitflip":
            raise ConfigError(f"Fault model `{self.fault_model}` applies to micro-op outputs only; use "
                              "`--emulate-target activations` or the `bitflip` model for weights.")
        return self


@dataclass
class _Event:
    kind: str
    t: float
    detail: dict
    apply: Callable | None = None  # for faults: called with (model, batch_size) -> context manager or None


class BeamEmulator:
    """The event thread plus the hooks the harness calls around each inference."""

    def __init__(self, config: EmulatorConfig, attempt: int = 0):
        self.config = config.check()
        self.attempt = attempt
        self.rng = np.random.default_rng([config.seed, attempt])
        self._pending: list[_Event] = []
        self._lock = threading.Lock()
        self.io_lock = threading.Lock()  # held by the harness while it logs an iteration; a crash waits for it
        self._fail_lock = threading.Lock()  # the first crash or hang takes it for good: one failure per process
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log_name: Callable[[], str] = lambda: ""
        self._record = open(Path(config.record), "a", encoding="utf-8")
        self.sites: list = []
        self.fault_model = None
        self.counts = {"fault": 0, "crash": 0, "hang": 0}

    # -- set-up ------------------------------------------------------------------
    def attach(self, model_spec: str, model: nn.Module, inputs: torch.Tensor) -> None:
        """Find the activation sites (the zoo model's micro-ops, else every leaf module) and the fault model."""
        from faultsift.config import StudyConfig
        from faultsift.faults.sites import discover_sites
        from faultsift.models import zoo_entry
        from faultsift.study import build_fault_model

        cfg = StudyConfig(bit_low=self.config.bit_low, bit_high=self.config.bit_high)
        fault_model = build_fault_model(self.config.fault_model, cfg, model_spec)
        sites = []
        if self.config.target in ("activations", "both"):
            entry = zoo_entry(model_spec)
            patterns = list(entry.site_classes) if entry else ["*"]
            example = inputs[:2] if len(inputs) >= 2 else torch.cat([inputs, inputs])
            sites = discover_sites(model, example.to(next(model.parameters()).device), patterns)
        with self._lock:  # a new model (rotation): faults drawn for the old one are dropped
            self.fault_model, self.sites = fault_model, sites
            self._pending = [e for e in self._pending if e.kind == "hang"]

    def start(self, log_name: Callable[[], str]) -> None:
        self._log_name = log_name
        self._thread = threading.Thread(target=self._run, name="beam-emulator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._record.close()

    # -- the event thread -----------------------------------------------------------
    def _write(self, record: dict, sync: bool = False) -> None:
        now = time.time()
        record = {"t": now, "time": datetime.fromtimestamp(now).isoformat(timespec="microseconds"),
                  "attempt": self.attempt, "pid": os.getpid(), **record}
        self._record.write(json.dumps(record) + "\n")
        self._record.flush()
        if sync:
            os.fsync(self._record.fileno())

    def _run(self) -> None:
        cfg = self.config
        while not self._stop.wait(float(self.rng.exponential(1.0 / cfg.rate))):
            u = float(self.rng.random())
            if u < cfg.p_crash:
                self._fail_lock.acquire()  # never released: the process ends here
                self.io_lock.acquire()
                self.counts["crash"] += 1
                self._write({"kind": "crash", "log": self._log_name()}, sync=True)
                os.abort()
            with self._lock:
                if u < cfg.p_crash + cfg.p_hang:
                    self._pending.append(_Event("hang", time.time(), {}))
                else:
                    self._pending.append(self._draw_fault())

    def _draw_fault(self) -> _Event:
        cfg = self.config
        use_weights = cfg.target == "weights" or (cfg.target == "both" and self.rng.random() < 0.5)
        seed = int(self.rng.integers(2**62))
        if use_weights:
            return _Event("fault", time.time(), {"target": "weights", "seed": seed}, self._weight_fault(seed))
        site = self.sites[int(self.rng.integers(len(self.sites)))]
        fault = self.fault_model.draw(site, np.random.default_rng(seed), fault_id=0)
        detail = {"target": "activations", "site": site.name, "elements": int(len(fault.indices))}
        if len(fault.bits):
            detail["bit"] = int(fault.bits[0])
        return _Event("fault", time.time(), detail, self._activation_fault(fault, seed))

    def _weight_fault(self, seed: int) -> Callable:
        from faultsift.faults.bits import bit_width, flip_bits

        def apply(model: nn.Module, batch: int, detail: dict):
            rng = np.random.default_rng(seed)
            params = [(n, p) for n, p in model.named_parameters() if p.is_floating_point()]
            sizes = np.array([p.numel() for _, p in params], float)
            name, param = params[int(rng.choice(len(params), p=sizes / sizes.sum()))]
            index = int(rng.integers(param.numel()))
            high = bit_width(param.dtype) - 1 if self.config.bit_high is None else self.config.bit_high
            bit = int(rng.integers(self.config.bit_low, high + 1))
            with torch.no_grad():
                flat = param.data.view(-1)
                flat[index] = flip_bits(flat[index : index + 1], torch.tensor([bit]))[0]
            detail.update(param=name, index=index, bit=bit)
            return None  # persistent until the harness reloads the model

        return apply

    def _activation_fault(self, fault, seed: int) -> Callable:
        fm = self.fault_model

        def apply(model: nn.Module, batch: int, detail: dict):
            row = int(np.random.default_rng(seed + 1).integers(batch))
            detail["input_row"] = row
            return _one_input_hook(model, fault, fm, batch, row)

        return apply

    # -- called by the harness around each inference ------------------------------------
    @contextmanager
    def iteration(self, model: nn.Module, batch: int) -> Iterator[list[_Event]]:
        """Apply the pending events to this inference; yields the faults applied."""
        with self._lock:
            events, self._pending = self._pending, []
        if any(e.kind == "hang" for e in events):
            self._fail_lock.acquire()  # never released (if a crash holds it, the process is ending anyway)
            self.counts["hang"] += 1
            self._stop.set()  # a hung device sees no further events (one failure, one DUE)
            self._write({"kind": "hang", "log": self._log_name()}, sync=True)
            threading.Event().wait()  # the kernel never returns; the watchdog must kill us
        applied = []
        with ExitStack() as stack:
            for event in events:
                context = event.apply(model, batch, event.detail)
                if context is not None:
                    stack.enter_context(context)
                applied.append(event)
            yield applied

    def finish(self, applied: list[_Event], ite: int, ker_err: int, critical: int) -> None:
        """Record the faults of iteration ``ite`` with what the harness saw."""
        for event in applied:
            self.counts["fault"] += 1
            self._write({"kind": "fault", "log": self._log_name(), "iteration": ite, "error": ker_err > 0,
                         "critical": critical > 0, "ker_err": ker_err, **event.detail})


@contextmanager
def _one_input_hook(model: nn.Module, fault, fault_model, batch: int, row: int):
    """Corrupt the site's output for input ``row`` only, at the site's call, during one forward."""
    site = fault.site
    module = model.get_submodule(site.module)
    calls = iter(range(1 << 30))

    def hook(mod, args, out):
        if next(calls) != site.call:
            return None
        flat = out.reshape(batch, -1).clone()
        flat[row : row + 1] = fault_model.corrupt(flat[row : row + 1].clone(), fault)
        return flat.reshape(out.shape)

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def read_ground_truth(path: Path) -> list[dict]:
    """The emulator's records (a line cut off by a crash is skipped)."""
    records = []
    if not Path(path).is_file():
        return records
    for line in Path(path).read_text(errors="replace").replace("\x00", "").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records
