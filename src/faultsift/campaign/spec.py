"""Campaign specs: a TOML (or YAML) file describing one reproducible campaign.

Example::

    spec = load_spec(Path("campaign.toml"))
    spec.results_hash()   # what the results in a folder were made with
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from faultsift.config import validated
from faultsift.engine.outcome import DEFAULT_THRESHOLD
from faultsift.errors import ConfigError, LoadError

# Fields that decide how a campaign runs, not what it computes: a folder may be resumed with others.
EXECUTION_ONLY = ("backend", "workers", "scheduler", "batch_size", "engine")


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SelectionSpec(_Strict):
    """Which input sets the campaign runs on: strategies over a profile, or a sets file."""

    strategies: tuple[str, ...] = ("random", "low-confidence", "high-confidence")
    k: int = Field(default=32, ge=1)
    seed: int = Field(default=0, ge=0)
    sets_file: str | None = None


class FaultSpec(_Strict):
    """One fault model with its parameters and sites (empty sites: the built-in model's micro-ops)."""

    model: str
    params: dict[str, Any] = Field(default_factory=dict)
    sites: tuple[str, ...] = ()


class StoppingSpec(_Strict):
    """Stop a fault model's campaign at ``max_faults``, or earlier once every set's interval
    half-width is at most ``target_half_width`` (one number for every set, or a table
    ``{set name = target}`` naming only the sets that must reach a target)."""

    max_faults: int = Field(default=2000, ge=1)
    target_half_width: float | dict[str, float] | None = None

    @field_validator("target_half_width")
    @classmethod
    def _in_unit_interval(cls, value):
        for target in (value.values() if isinstance(value, dict) else [value] if value is not None else []):
            if not 0 < target < 1:
                raise ValueError(f"targets must be in (0, 1), got {target}")
        return value
    interval: Literal["wilson", "clopper-pearson"] = "wilson"
    confidence: float = Field(default=0.95, gt=0, lt=1)


class RunSpec(_Strict):
    seed: int = Field(default=1, ge=0)
    device: str = "cpu"
    chunk_faults: int = Field(default=100, ge=1)
    batch_size: int = Field(default=512, ge=1)
    engine: Literal["fast", "reference"] = "fast"
    backend: Literal["local", "processes", "dask"] = "local"
    workers: int = Field(default=2, ge=1)
    scheduler: str | None = None


class CampaignSpec(_Strict):
    """A whole campaign: model, data, input sets, fault models, outcome threshold, run, stopping."""

    model: str
    data: str = "zoo:digits-hard"
    threshold: float = Field(default=DEFAULT_THRESHOLD, gt=0)
    selection: SelectionSpec = SelectionSpec()
    faults: tuple[FaultSpec, ...] = Field(min_length=1)
    run: RunSpec = RunSpec()
    stopping: StoppingSpec = StoppingSpec()

    def results_hash(self) -> str:
        """Hash of everything that decides the trial rows (not how they are computed)."""
        content = self.model_dump(mode="json")
        for key in EXECUTION_ONLY:
            content["run"].pop(key, None)
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def with_run(self, **changes) -> "CampaignSpec":
        """A copy with some ``run`` fields replaced (e.g. the backend given on the command line)."""
        run = validated(RunSpec, **{**self.run.model_dump(), **{k: v for k, v in changes.items() if v is not None}})
        return self.model_copy(update={"run": run})


def load_spec(path: Path) -> CampaignSpec:
    """Read and validate a ``.toml``, ``.yaml`` or ``.yml`` spec; errors name the file and field."""
    path = Path(path)
    if not path.is_file():
        raise LoadError(f"Spec file {path} does not exist; write an example with `faultsift campaign init`.")
    try:
        text = path.read_text()
        content = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        first = " ".join(str(exc).split())[:200]
        raise ConfigError(f"{path}: not valid {'YAML' if path.suffix != '.toml' else 'TOML'} ({first}).") from None
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: expected a table of settings, got {type(content).__name__}.")
    try:
        return validated(CampaignSpec, **content)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


EXAMPLE_SPEC = '''\
# faultsift campaign spec. Run it with: faultsift campaign run THIS_FILE --out DIR
# A folder made from this spec can be resumed (run the same command again); a different
# spec is refused there. Only [run] backend/workers/scheduler/batch_size/engine may change on resume.

model = "zoo:digits-vit"          # zoo:NAME, timm:NAME[:WEIGHTS], torchscript:FILE
data = "zoo:digits-hard"          # the pool the input sets index
threshold = 1e-5                  # absolute logit difference that counts as an SDC

[selection]
strategies = ["random", "low-confidence", "high-confidence"]   # or give sets_file
k = 32                            # inputs per set
seed = 0                          # seed of the random set
# sets_file = "sets.json"         # sets from `faultsift select` (replaces strategies)

[[faults]]                        # one table per fault model; each gets its own fault list
model = "bitflip"                 # faultsift list faults
params = { bit_low = 0 }          # bit_high defaults to the top bit of the site's dtype
sites = ["Attention", "Block", "Mlp"]   # module classes, qualified names or globs

[[faults]]
model = "beam-body"
params = { table_model = "vit_base_patch16_224" }
sites = []                        # empty: the built-in model's micro-ops

[run]
seed = 1                          # fault-list seed: same seed, same faults, same trial rows
device = "cpu"
chunk_faults = 100                # faults per stored shard (the unit of resume and of work)
batch_size = 512
engine = "fast"                   # fast | reference (same outcomes; reference: one fault per forward)
backend = "local"                 # local | processes | dask
workers = 2                       # processes / LocalCluster workers
# scheduler = "tcp://host:8786"   # an existing Dask scheduler (use TLS on shared clusters)

[stopping]
max_faults = 2000                 # cap per fault model
# target_half_width = 0.005       # stop early once every set's interval half-width <= this,
# target_half_width = { low-confidence = 0.01 }   # or only for the sets named here
interval = "wilson"               # wilson | clopper-pearson
confidence = 0.95
'''
