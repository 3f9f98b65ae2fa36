"""The device-under-test harness: golden file and the inference loop run under the beam.

``make_golden`` runs the model once on each selected input set and writes one safetensors
file with the model's weights, each set's inputs, labels, input ids and golden outputs, and
the metadata (model and data specs, threshold, versions). ``run_harness`` loads everything
from that file and loops: one inference per iteration on the whole set (one batch, as the
study), compare with golden (absolute threshold), log ``#IT`` every N iterations (and at
least every ``it_seconds``: the watchdog's heartbeat), and on a mismatch ``#ERR`` lines
(``critical ...`` for each image whose top-1 changed, then per-image detail) and the ``#SDC``
line; after any error the model and inputs are reloaded from the golden file. ``#ABORT``
when an iteration has more than ``max_errors`` wrong output values or when ``max_repeat``
iterations in a row have the same non-zero count; ``#END`` on a clean exit (end of the
iterations or duration, or SIGTERM).

Several configurations (golden file x input set) rotate in fixed wall-clock windows
anchored in ``<log_dir>/rotation.json``, so a restarted harness resumes the schedule and
every set sees the same beam conditions.

Exit codes: 0 after ``#END``, :data:`ABORT_EXIT` after ``#ABORT``, 2 for a bad configuration.

Example::

    make_golden("zoo:digits-vit", "zoo:digits-hard", sets, Path("vit.golden.safetensors"))
    run_harness(HarnessConfig(goldens=(Path("vit.golden.safetensors"),), log_dir=Path("logs"), duration=3600))
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import torch
from torch import nn

from faultsift import __version__
from faultsift.beam.emulator import BeamEmulator, EmulatorConfig
from faultsift.beam.logformat import MAX_ERR_LINES, LogWriter
from faultsift.errors import ConfigError, LoadError
from faultsift.selection.strategies import InputSet

log = logging.getLogger(__name__)

ABORT_EXIT = 3
ATTEMPT_ENV = "FAULTSIFT_WATCHDOG_ATTEMPT"
GOLDEN_KEY = "faultsift_golden"


def set_deterministic(device: str) -> None:
    """Deterministic kernels (as the study: deterministic cuDNN, seed 0)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------- golden file


def make_golden(model_spec: str, data_spec: str, sets: list[InputSet], out: Path, device: str = "cpu",
                threshold: float = 1e-5) -> dict:
    """Write the golden file for ``sets``; returns its metadata.

    The model runs twice on each set; if the two outputs differ by more than ``threshold``
    the device is not deterministic enough for the harness, and a ConfigError says so.
    """
    from safetensors.torch import save_file

    from faultsift.data import load_data
    from faultsift.models import load_model

    if not sets:
        raise ConfigError("Expected at least one input set for the golden file.")
    set_deterministic(device)
    pool = load_data(data_spec)
    model = load_model(model_spec).eval().to(device)
    tensors = {f"model/{k}": v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    meta_sets = []
    for s in sets:
        if not s.input_ids:
            raise ConfigError(f"Input set `{s.name}` is empty.")
        if max(s.input_ids) >= len(pool):
            raise ConfigError(f"Set `{s.name}` indexes input {max(s.input_ids)}, but `{data_spec}` has {len(pool)} inputs.")
        ids = torch.tensor(s.input_ids, dtype=torch.int64)
        inputs = pool.inputs[ids].contiguous()
        with torch.inference_mode():
            first = model(inputs.to(device)).float().cpu()
            second = model(inputs.to(device)).float().cpu()
        repeat = float((first - second).abs().max())
        if not repeat <= threshold:
            raise ConfigError(f"Two golden runs of set `{s.name}` differ by {repeat:g} (> threshold {threshold:g}); "
                              "the device is not deterministic enough for the harness.")
        tensors.update({f"set/{s.name}/inputs": inputs, f"set/{s.name}/labels": pool.labels[ids].contiguous(),
                        f"set/{s.name}/ids": ids, f"set/{s.name}/golden": first.contiguous()})
        meta_sets.append({"name": s.name, "strategy": s.strategy, "n_inputs": len(s.input_ids),
                          "golden_top1": first.argmax(1).tolist()})
    meta = {"model": model_spec, "data": data_spec, "sets": meta_sets, "threshold": threshold, "device": device,
            "faultsift": __version__, "torch": torch.__version__,
            "created": datetime.now().isoformat(timespec="seconds")}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(out).with_name(f".{Path(out).name}.tmp")
    save_file(tensors, str(tmp), metadata={GOLDEN_KEY: json.dumps(meta)})
    os.replace(tmp, out)
    return meta


@dataclass
class Golden:
    """A golden file read back: metadata, the model's state dict and each set's tensors."""

    path: Path
    meta: dict
    state: dict[str, torch.Tensor]
    sets: dict[str, dict[str, torch.Tensor]]
    sha256: str

    @property
    def set_names(self) -> list[str]:
        return [s["name"] for s in self.meta["sets"]]


def read_golden(path: Path) -> Golden:
    """Load a golden file (safetensors only: nothing is unpickled)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise LoadError(f"Golden file {path} does not exist; make it with `faultsift beam golden`.")
    try:
        raw = path.read_bytes()
        from safetensors.torch import load

        tensors = load(raw)
        with safe_open(str(path), framework="pt") as handle:
            meta = json.loads((handle.metadata() or {})[GOLDEN_KEY])
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise LoadError(f"{path} is not a faultsift golden file ({type(exc).__name__}); make one with "
                        "`faultsift beam golden`.") from None
    state = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    sets: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("set/"):
            name, what = key[len("set/"):].rsplit("/", 1)
            sets.setdefault(name, {})[what] = value
    return Golden(path, meta, state, sets, hashlib.sha256(raw).hexdigest())


def load_golden_model(golden: Golden, device: str) -> nn.Module:
    """The model rebuilt from its spec with the golden file's weights."""
    from faultsift.models import load_model

    model = load_model(golden.meta["model"])
    try:
        model.load_state_dict(golden.state, strict=True)
    except RuntimeError as exc:
        raise LoadError(f"Weights in {golden.path} do not fit `{golden.meta['model']}`: "
                        f"{' '.join(str(exc).split())[:200]}") from None
    return model.eval().to(device)


# ---------------------------------------------------------------------------- the loop


@dataclass(frozen=True)
class HarnessConfig:
    """Every parameter of a harness run (all of them go to the ``#HEADER``)."""

    goldens: tuple[Path, ...]
    log_dir: Path
    sets: tuple[str, ...] = ()
    iterations: int = 0  # 0: no limit
    duration: float = 0.0  # seconds; 0: no limit
    it_every: int = 1000
    it_seconds: float = 1.0
    threshold: float | None = None  # None: the golden file's
    max_errors: int = 500
    max_repeat: int = 2
    rotate: float = 0.0  # window seconds; 0: one configuration only
    device: str = "cpu"
    host: str | None = None
    ecc: str = "auto"
    threads: int = 1  # torch CPU threads (0: torch's default); one avoids oversubscribing a busy host
    max_err_lines: int = MAX_ERR_LINES
    emulate: EmulatorConfig | None = None
    extra_header: dict = field(default_factory=dict)

    def check(self) -> "HarnessConfig":
        if not self.goldens:
            raise ConfigError("Expected at least one golden file.")
        for name, value in (("iterations", self.iterations), ("duration", self.duration), ("rotate", self.rotate)):
            if value < 0:
                raise ConfigError(f"Expected `{name}` >= 0, got {value}.")
        if self.it_every < 1 or self.it_seconds <= 0:
            raise ConfigError(f"Expected `it_every` >= 1 and `it_seconds` > 0, got {self.it_every}, {self.it_seconds}.")
        if self.max_errors < 1 or self.max_repeat < 0:
            raise ConfigError(f"Expected `max_errors` >= 1 and `max_repeat` >= 0, got {self.max_errors}, {self.max_repeat}.")
        if self.ecc not in ("auto", "on", "off"):
            raise ConfigError(f"Expected `ecc` among auto, on, off, got `{self.ecc}`.")
        return self


def detect_ecc(device: str) -> bool:
    """ECC state of a CUDA device from nvidia-smi (False on the CPU or when unknown)."""
    if not device.startswith("cuda"):
        return False
    index = device.split(":", 1)[1] if ":" in device else "0"
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=ecc.mode.current", "--format=csv,noheader", "-i", index],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return False
    return out.lower().startswith("enabled")


@dataclass
class _Config:
    golden_path: Path
    set_name: str

    @property
    def key(self) -> str:
        return f"{self.golden_path.name}:{self.set_name}"


class _Loaded:
    """Model and inputs of one configuration, loaded from the golden file."""

    def __init__(self, config: _Config, device: str):
        self.config = config
        self.reload(device)

    def reload(self, device: str) -> None:
        golden = read_golden(self.config.golden_path)
        if self.config.set_name not in golden.sets:
            raise ConfigError(f"Golden file {golden.path.name} has no set `{self.config.set_name}`; it has "
                              f"{', '.join(golden.set_names)}.")
        tensors = golden.sets[self.config.set_name]
        self.golden_file = golden
        self.model = load_golden_model(golden, device)
        self.inputs = tensors["inputs"].to(device)
        self.labels = tensors["labels"]
        self.ids = tensors["ids"]
        self.golden = tensors["golden"]
        self.golden_top1 = self.golden.argmax(1)


def _configs(cfg: HarnessConfig) -> list[_Config]:
    configs = []
    for path in cfg.goldens:
        golden = read_golden(path)
        names = [s for s in cfg.sets if s in golden.sets] if cfg.sets else golden.set_names
        configs += [_Config(Path(path), name) for name in names]
    if cfg.sets:
        found = {c.set_name for c in configs}
        missing = [s for s in cfg.sets if s not in found]
        if missing:
            raise ConfigError(f"No golden file has the set(s) {', '.join(missing)}.")
    if len(configs) > 1 and not cfg.rotate:
        raise ConfigError(f"{len(configs)} configurations ({', '.join(c.key for c in configs)}): give `--rotate "
                          "SECONDS` to cycle through them, or choose one with `--sets`.")
    return configs


def _rotation_anchor(cfg: HarnessConfig, configs: list[_Config]) -> float:
    """The schedule's start time, kept in ``rotation.json`` so restarts resume the same schedule."""
    path = Path(cfg.log_dir) / "rotation.json"
    keys = [c.key for c in configs]
    try:
        saved = json.loads(path.read_text())
        if saved.get("configs") == keys and saved.get("window_s") == cfg.rotate:
            return float(saved["anchor"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    anchor = time.time()
    path.write_text(json.dumps({"anchor": anchor, "window_s": cfg.rotate, "configs": keys}, indent=2) + "\n")
    return anchor


def compare_outputs(out: torch.Tensor, golden: torch.Tensor, threshold: float, labels: torch.Tensor,
                    ids: torch.Tensor) -> tuple[int, int, list[str]]:
    """(wrong output values, critical images, ``#ERR`` details: critical lines first, then per-image)."""
    out = out.float().cpu()
    diff = (out - golden).abs()
    wrong = ~(diff <= threshold)  # NaN counts as wrong
    ker_err = int(wrong.sum())
    if not ker_err:
        return 0, 0, []
    top1 = out.nan_to_num(nan=-float("inf")).argmax(1)
    gtop1 = golden.argmax(1)
    bad_rows = wrong.any(1).nonzero().flatten().tolist()
    critical_rows = [i for i in bad_rows if top1[i] != gtop1[i] or not torch.isfinite(out[i]).all()]
    lines = [f"critical batch:0 imgid:{int(ids[i])} i:{i} g:{int(gtop1[i])} o:{int(top1[i])} gt:{int(labels[i])}"
             for i in critical_rows]
    for i in bad_rows:
        o, d = out[i], (out[i] - golden[i])
        fo, fd = o[torch.isfinite(o)], d[torch.isfinite(d)]
        lines.append(
            f"batch:0 imgid:{int(ids[i])} output_t nan:{int(o.isnan().sum())} inf:{int(o.isinf().sum())} "
            f"min:{float(fo.min()) if len(fo) else float('nan'):.6g} max:{float(fo.max()) if len(fo) else float('nan'):.6g} "
            f"diff_t nan:{int(d.isnan().sum())} inf:{int(d.isinf().sum())} "
            f"min:{float(fd.min()) if len(fd) else float('nan'):.6g} max:{float(fd.max()) if len(fd) else float('nan'):.6g}")
    return ker_err, len(critical_rows), lines


class _Stop:
    def __init__(self):
        self.requested = False

    def __call__(self, signum, frame):
        self.requested = True


def _benchmark(loaded: _Loaded) -> str:
    from faultsift.study import model_label

    return f"fsift-{model_label(loaded.golden_file.meta['model'])}-{loaded.config.set_name}".replace("_", "-")


def run_harness(cfg: HarnessConfig) -> int:
    """Run the loop (see the module docstring); returns the exit code."""
    cfg.check()
    threads = torch.get_num_threads()
    try:
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        return _run(cfg)
    finally:
        torch.set_num_threads(threads)


def _run(cfg: HarnessConfig) -> int:
    set_deterministic(cfg.device)
    configs = _configs(cfg)
    Path(cfg.log_dir).mkdir(parents=True, exist_ok=True)
    anchor = _rotation_anchor(cfg, configs) if cfg.rotate else 0.0
    host = cfg.host or socket.gethostname()
    ecc = detect_ecc(cfg.device) if cfg.ecc == "auto" else cfg.ecc == "on"
    attempt = int(os.environ.get(ATTEMPT_ENV, "0") or 0)
    stop = _Stop()
    signal.signal(signal.SIGTERM, stop)
    if cfg.emulate is not None:
        try:  # an emulated crash should not leave core files behind
            import resource

            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        except (ImportError, ValueError, OSError):
            pass
    started = time.monotonic()
    ite_total = 0

    def slot() -> int:
        return int((time.time() - anchor) // cfg.rotate) % len(configs) if cfg.rotate else 0

    current = slot()
    loaded = _Loaded(configs[current], cfg.device)
    emulator = BeamEmulator(cfg.emulate, attempt) if cfg.emulate is not None else None
    if emulator is not None:
        emulator.attach(loaded.golden_file.meta["model"], loaded.model, loaded.inputs)
    writer = _open_writer(cfg, loaded, configs, current, host, ecc, attempt)
    code = 0
    try:
        acc_time = 0.0
        ite, acc_err, last_count, repeats = 0, 0, 0, 0
        last_it_log = time.monotonic()
        while True:
            if stop.requested:
                break
            if cfg.duration and time.monotonic() - started >= cfg.duration:
                break
            if cfg.iterations and ite_total >= cfg.iterations:
                break
            if cfg.rotate and slot() != current:
                writer.end()
                current = slot()
                loaded = _Loaded(configs[current], cfg.device)
                writer = _open_writer(cfg, loaded, configs, current, host, ecc, attempt)
                if emulator is not None:
                    emulator.attach(loaded.golden_file.meta["model"], loaded.model, loaded.inputs)
                acc_time = 0.0
                ite, acc_err, last_count, repeats = 0, 0, 0, 0
            batch = len(loaded.inputs)
            if emulator is not None:
                context = emulator.iteration(loaded.model, batch)
            else:
                from contextlib import nullcontext

                context = nullcontext([])
            with context as applied, torch.inference_mode():
                t0 = time.perf_counter()
                out = loaded.model(loaded.inputs)
                _sync(cfg.device)
                ker_time = time.perf_counter() - t0
            ite += 1
            ite_total += 1
            acc_time += ker_time
            threshold = cfg.threshold if cfg.threshold is not None else float(loaded.golden_file.meta["threshold"])
            ker_err, critical, details = compare_outputs(out, loaded.golden, threshold, loaded.labels, loaded.ids)
            lock = emulator.io_lock if emulator is not None else None
            if lock is not None:
                lock.acquire()
            try:
                if emulator is not None:
                    emulator.finish(applied, ite, ker_err, critical)
                if ker_err:
                    acc_err += ker_err
                    writer.sdc(ite, ker_time, acc_time, ker_err, acc_err, details, critical=critical)
                    repeats = repeats + 1 if ker_err == last_count else 1
                    last_count = ker_err
                    if ker_err > cfg.max_errors:
                        writer.abort("too many errors per iteration")
                        code = ABORT_EXIT
                        break
                    if cfg.max_repeat and repeats >= cfg.max_repeat:
                        writer.abort("amount of errors equals of the last iteration")
                        code = ABORT_EXIT
                        break
                else:
                    last_count, repeats = 0, 0
                now = time.monotonic()
                if ite == 1 or ite % cfg.it_every == 0 or now - last_it_log >= cfg.it_seconds:
                    writer.iteration(ite, ker_time, acc_time)
                    last_it_log = now
            finally:
                if lock is not None:
                    lock.release()
            if ker_err:
                loaded.reload(cfg.device)
                writer.event("reload", ite=ite)
            if emulator is not None and ite_total == 1:
                emulator.start(lambda: writer.path.name)
        if code == 0:
            writer.end()
    finally:
        if emulator is not None:
            emulator.stop()
        writer.close()
    return code


def _open_writer(cfg: HarnessConfig, loaded: _Loaded, configs: list[_Config], index: int, host: str, ecc: bool,
                 attempt: int) -> LogWriter:
    meta = loaded.golden_file.meta
    header = {
        "tool": "faultsift", "version": __version__, "model": meta["model"], "data": meta["data"],
        "set": loaded.config.set_name,
        "strategy": next((s["strategy"] for s in meta["sets"] if s["name"] == loaded.config.set_name), ""),
        "n_inputs": len(loaded.ids), "input_ids": ",".join(str(int(i)) for i in loaded.ids),
        "golden": loaded.config.golden_path.name, "golden_sha256": loaded.golden_file.sha256[:16],
        "threshold": cfg.threshold if cfg.threshold is not None else meta["threshold"],
        "it_every": cfg.it_every, "it_seconds": cfg.it_seconds, "max_errors": cfg.max_errors,
        "max_repeat": cfg.max_repeat, "max_err_lines": cfg.max_err_lines, "threads": cfg.threads,
        "device": cfg.device, "torch": torch.__version__, "host": host, "ecc": "ON" if ecc else "OFF",
        "pid": os.getpid(), "attempt": attempt, "iterations": cfg.iterations, "duration_s": cfg.duration,
        "rotation": cfg.rotate > 0, "window_s": cfg.rotate, "config_index": index, "configs": len(configs),
    }
    if cfg.emulate is not None:
        e = cfg.emulate
        header.update(emulate=e.rate, emulate_crash=e.p_crash, emulate_hang=e.p_hang, emulate_fault=e.fault_model,
                      emulate_target=e.target, emulate_seed=e.seed)
    header.update(cfg.extra_header)
    return LogWriter(cfg.log_dir, _benchmark(loaded), header, host=host, ecc=ecc, max_err_lines=cfg.max_err_lines)
