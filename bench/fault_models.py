"""Cost of applying each fault model, as a ratio to a fault-free forward (reference engine).

Run: .venv/bin/python bench/fault_models.py [--model zoo:digits-vit] [--batch 64] [--faults 50]
Prints, per fault model, seconds per faulty forward and the ratio to a golden forward, and
the same for per-input faults (`run_assigned`, a different fault on every input).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from faultsift.campaign.plan import plan_faults
from faultsift.data import load_data
from faultsift.engine.reference import ReferenceEngine
from faultsift.faults.models import FAULT_MODELS, make_fault_model
from faultsift.faults.sites import discover_sites
from faultsift.models import load_model, zoo_entry


def _median_seconds(call, items) -> float:
    """Median wall time of ``call(item)`` over ``items`` (robust to a busy machine)."""
    times = []
    for item in items:
        start = time.perf_counter()
        call(item)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="zoo:digits-vit")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--faults", type=int, default=50)
    args = parser.parse_args()
    model, data = load_model(args.model), load_data("zoo:digits-hard")
    x = data.inputs[: args.batch]
    entry = zoo_entry(args.model)
    sites = discover_sites(model, x[:2], list(entry.site_classes))
    engine = ReferenceEngine(model)
    golden = engine.golden(x)
    base = _median_seconds(lambda _: engine.golden(x), range(args.faults))
    print(f"{args.model}, batch {args.batch}: golden forward {base * 1e3:.2f} ms (medians of {args.faults} runs)")
    for name in FAULT_MODELS.names():
        params = {"microops": dict(entry.beam_microops), "table_model": entry.beam_table_model} if name.startswith("beam") else {}
        faults = plan_faults(sites, make_fault_model(name, **params), args.faults, seed=1)
        per = _median_seconds(lambda fault: engine.evaluate(x, golden, fault), faults)
        assigned = plan_faults(sites, make_fault_model(name, **params), args.batch, seed=2)
        per_input = _median_seconds(lambda _: engine.evaluate_assigned(x, golden, assigned), range(3))
        print(f"{name:14s} {per * 1e3:7.2f} ms/fault  x{per / base:5.2f} golden   "
              f"per-input faults: {per_input * 1e3:7.2f} ms/batch  x{per_input / base:5.2f} golden")


if __name__ == "__main__":
    torch.set_num_threads(2)
    np.seterr(all="ignore")
    main()
