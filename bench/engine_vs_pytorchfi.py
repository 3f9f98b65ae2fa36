"""Trials per second of pytorchfi, the reference engine and the fast engine, on one fault list.

Run: make bench   (installs pytorchfi, the only place it is used), or
     .venv/bin/python bench/engine_vs_pytorchfi.py [--models zoo:digits-cnn,zoo:digits-vit] [--inputs 32]

Per model: the same inputs and the same fault list for every tool, on (a) random-value faults
in the outputs of Conv2d/Linear layers and (b) random-value faults in their weights, the
fault models both tools support. pytorchfi is used as its users do: one fault declared on
every input of the batch (`declare_neuron_fi` / `declare_weight_fi`), then one forward of
the corrupted model. Its outcomes are checked against the reference engine's, so the three
tools provably evaluate the same trials.

Freed memory is kept for reuse (``keep_freed_memory``, as the fast engine sets it) before
anything is timed, so every tool runs with it. Each tool is timed ``--repeats`` times,
interleaved, and its best run counts (noise on a shared machine only ever slows a run down);
golden throughput is likewise the fastest batched fault-free forward, at several batch sizes.
Then peak RSS of fast-engine runs streaming 10k and 100k faults (fresh processes). Ends with
one line per model:

    RESULT model=<name> fast_vs_pytorchfi_act=<x> fast_vs_pytorchfi_weight=<x> fast_vs_golden=<x>

``fast_vs_golden`` is the lower of the activation and weight fast-engine rates over golden inputs/s.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch
from torch import nn

from faultsift.campaign.plan import draw_fault, plan_faults
from faultsift.data import load_data
from faultsift.engine.fast import FastEngine, compare_outcomes, keep_freed_memory
from faultsift.engine.outcome import OUTCOMES, classify
from faultsift.engine.reference import ReferenceEngine, trials_frame
from faultsift.faults.models import make_fault_model
from faultsift.faults.sites import discover_sites
from faultsift.models import load_model

LAYER_TYPES = [nn.Conv2d, nn.Linear]


def _layers(model: nn.Module) -> list[str]:
    """Names of the layers pytorchfi faults: leaf Conv2d/Linear modules (in its traversal order)."""
    return [n for n, m in model.named_modules() if isinstance(m, tuple(LAYER_TYPES)) and not list(m.children())]


def _pytorchfi_run(model, inputs, faults, layer_of, kind, device):
    """Outcome arrays of every fault on every input, with pytorchfi (one declaration + forward per fault)."""
    from pytorchfi.core import fault_injection

    n = len(inputs)
    pfi = fault_injection(model, n, input_shape=list(inputs.shape[1:]), layer_types=LAYER_TYPES,
                          use_cuda=device.startswith("cuda"))
    golden = model(inputs).float().cpu()
    parts = []
    for fault in faults:
        site = fault.site
        loc = list(np.unravel_index(int(fault.indices[0]), site.shape)) + [None] * 4
        value = float(fault.values[0])
        layer = layer_of[site.module]
        if kind == "act":
            corrupted = pfi.declare_neuron_fi(batch=list(range(n)), layer_num=[layer] * n, dim1=[int(loc[0])] * n,
                                              dim2=[loc[1] and int(loc[1])] * n if loc[1] is not None else [None] * n,
                                              dim3=[int(loc[2])] * n if loc[2] is not None else [None] * n,
                                              value=[value] * n)
        else:
            corrupted = pfi.declare_weight_fi(layer_num=[layer], k=[int(loc[0])], dim1=[int(loc[1])],
                                              dim2=[int(loc[2]) if loc[2] is not None else None],
                                              dim3=[int(loc[3]) if loc[3] is not None else None], value=[value])
        out = classify(golden, corrupted(inputs).float().cpu())
        out["fault_id"] = np.full(n, fault.fault_id, np.int64)
        out["input_id"] = np.arange(n, dtype=np.int64)
        parts.append(out)
    return trials_frame(parts)


def _timed(call):
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


@torch.inference_mode()
def _golden_rate(model, inputs, device) -> tuple[float, int]:
    """Best fault-free inputs/s over batch sizes 32, 512 and 2048 (the fastest of 5 forwards each)."""
    best = (0.0, 0)
    for batch in (32, 512, 2048):
        x = inputs[torch.arange(batch) % len(inputs)].to(device)
        model(x)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            model(x)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        best = max(best, (batch / min(times), batch))
    return best


def bench_model(spec: str, n_inputs: int, n_faults: int, n_pfi: int, device: str, repeats: int) -> dict:
    model = load_model(spec).eval().to(device)
    data = load_data("zoo:digits-hard")
    inputs = data.inputs[:n_inputs].to(device)
    ids = np.arange(n_inputs)
    layers = _layers(model)
    fm = make_fault_model("random-value")
    out = {"model": spec.split(":")[-1]}
    for kind, kinds in (("act", ("output",)), ("weight", ("weight",))):
        sites = discover_sites(model, inputs[:2], layers, kinds=kinds)
        layer_of = {name: i for i, name in enumerate(s.module for s in discover_sites(model, inputs[:2], layers))}
        faults = plan_faults(sites, fm, n_faults, seed=7)
        engine = FastEngine(model, device=device)
        engine.run(inputs, ids, faults[:8])  # trace the call tree once, outside the timing
        pfi_s = ref_s = fast_s = float("inf")
        for _ in range(repeats):  # interleaved, best of each: the machine's noise only ever slows a run down
            with torch.inference_mode():
                pfi_rows, t = _timed(lambda: _pytorchfi_run(model, inputs, faults[:n_pfi], layer_of, kind, device))
            pfi_s = min(pfi_s, t)
            ref_rows, t = _timed(lambda: ReferenceEngine(model, device=device).run(inputs, ids, faults[:n_pfi]))
            ref_s = min(ref_s, t)
            engine.stats.clear()
            fast_rows, t = _timed(lambda: engine.run(inputs, ids, faults))
            fast_s = min(fast_s, t)
        agree_pfi = compare_outcomes(ref_rows, pfi_rows)
        agree_fast = compare_outcomes(ref_rows, fast_rows[fast_rows["fault_id"].isin(ref_rows["fault_id"])])
        out[kind] = {"pytorchfi": len(pfi_rows) / pfi_s, "reference": len(ref_rows) / ref_s,
                     "fast": len(fast_rows) / fast_s, "trials_fast": len(fast_rows), "trials_pfi": len(pfi_rows),
                     "pytorchfi_vs_reference": agree_pfi, "fast_vs_reference": agree_fast,
                     "outcomes": fast_rows["outcome"].value_counts().reindex(list(OUTCOMES), fill_value=0).to_dict(),
                     "stats": {k: int(v) for k, v in engine.stats.items()}}
    out["golden"], out["golden_batch"] = _golden_rate(model, inputs, device)
    return out


def rss_child(spec: str, n_faults: int, n_inputs: int, device: str) -> None:
    """Stream ``n_faults`` faults through the fast engine; print peak RSS and outcome counts as JSON."""
    model = load_model(spec).eval()
    inputs = load_data("zoo:digits-hard").inputs[:n_inputs]
    sites = discover_sites(model, inputs[:2], _layers(model))
    fm = make_fault_model("random-value")
    counts = dict.fromkeys(OUTCOMES, 0)
    faults = (draw_fault(sites, fm, 7, i) for i in range(n_faults))
    start = time.perf_counter()
    for frame in FastEngine(model, device=device).iter_run(inputs, np.arange(n_inputs), faults, chunk_faults=2000):
        for k, v in frame["outcome"].value_counts().items():
            counts[k] += int(v)
    print(json.dumps({"faults": n_faults, "trials": sum(counts.values()), "seconds": time.perf_counter() - start,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "outcomes": counts}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="zoo:digits-cnn,zoo:digits-vit")
    parser.add_argument("--inputs", type=int, default=32, help="inputs per fault (the study's set size)")
    parser.add_argument("--faults", type=int, default=1500, help="faults per fault kind for the fast engine")
    parser.add_argument("--pytorchfi-faults", type=int, default=150, help="faults timed with pytorchfi and the reference")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per tool (interleaved; the best counts)")
    parser.add_argument("--rss-faults", default="10000,100000")
    parser.add_argument("--rss-inputs", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    if args.rss_child:
        rss_child(args.models.split(",")[0], args.rss_child, args.rss_inputs, args.device)
        return
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    kept = keep_freed_memory()  # as the fast engine sets it; before any timing, so every tool runs with it
    print(f"device: {device_name}; {args.inputs} inputs per fault; torch {torch.__version__}; "
          f"freed memory kept for reuse: {kept}")
    results = []
    for spec in args.models.split(","):
        r = bench_model(spec, args.inputs, args.faults, args.pytorchfi_faults, args.device, args.repeats)
        results.append(r)
        print(f"\n{r['model']}: golden {r['golden']:,.0f} inputs/s (batch {r['golden_batch']})")
        for kind in ("act", "weight"):
            k = r[kind]
            print(f"  {kind:6s} trials/s  pytorchfi {k['pytorchfi']:>9,.0f}  reference {k['reference']:>9,.0f}  "
                  f"fast {k['fast']:>9,.0f}   fast/pytorchfi {k['fast'] / k['pytorchfi']:5.1f}x  "
                  f"fast/golden {k['fast'] / r['golden']:4.2f}x")
            print(f"         agreement with the reference: pytorchfi {k['pytorchfi_vs_reference']}, "
                  f"fast {k['fast_vs_reference']}")
            print(f"         fast outcomes {k['outcomes']}; engine {k['stats']}")
    print("\npeak RSS of the fast engine streaming faults (fresh process each):")
    rss = []
    for n in (int(v) for v in args.rss_faults.split(",")):
        proc = subprocess.run([sys.executable, __file__, "--models", args.models.split(",")[0], "--rss-child", str(n),
                               "--rss-inputs", str(args.rss_inputs), "--device", args.device],
                              capture_output=True, text=True, check=True)
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rss.append(row)
        print(f"  {row['faults']:>7,} faults, {row['trials']:>9,} trials: peak RSS {row['peak_rss_mib']:7.1f} MiB "
              f"({row['trials'] / row['seconds']:,.0f} trials/s)")
    if len(rss) > 1:
        print(f"  RSS ratio {rss[-1]['faults'] // rss[0]['faults']}x faults: {rss[-1]['peak_rss_mib'] / rss[0]['peak_rss_mib']:.2f}x")
    print()
    for r in results:
        act, weight = r["act"], r["weight"]
        print(f"RESULT model={r['model']} fast_vs_pytorchfi_act={act['fast'] / act['pytorchfi']:.2f} "
              f"fast_vs_pytorchfi_weight={weight['fast'] / weight['pytorchfi']:.2f} "
              f"fast_vs_golden={min(act['fast'], weight['fast']) / r['golden']:.2f}")


if __name__ == "__main__":
    main()
