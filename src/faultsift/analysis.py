"""Analysis of one campaign: per-set rates with intervals and paired comparison to random.

Example::

    rows = analyse_sets(trials, sets, reference="random", n_boot=2000, seed=0)
    rows[1]["ratio_vs_random"], rows[1]["significant"]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from faultsift import stats
from faultsift.engine.outcome import OUTCOMES
from faultsift.errors import ConfigError
from faultsift.selection.strategies import InputSet

SIGNIFICANCE_LEVEL = 0.05


def outcome_matrix(trials: pd.DataFrame, input_ids, fault_ids) -> np.ndarray:
    """Outcome codes [len(input_ids), len(fault_ids)] (every pair must be in ``trials``)."""
    codes = pd.Categorical(trials["outcome"], categories=list(OUTCOMES)).codes
    table = pd.Series(codes, index=pd.MultiIndex.from_arrays([trials["input_id"], trials["fault_id"]]))
    wanted = pd.MultiIndex.from_product([list(input_ids), list(fault_ids)])
    values = table.reindex(wanted)
    if values.isna().any():
        missing = int(values.isna().sum())
        raise ConfigError(f"Expected a trial for every (input, fault) pair of the set, got {missing} missing.")
    return values.to_numpy(np.int8).reshape(len(input_ids), len(fault_ids))


def analyse_sets(trials: pd.DataFrame, sets: list[InputSet], reference: str = "random",
                 n_boot: int = 2000, seed: int = 0, confidence: float = 0.95) -> list[dict]:
    """One summary dict per set; sets are compared with ``reference`` fault by fault (Holm)."""
    fault_ids = np.sort(trials["fault_id"].unique())
    critical = {s.name: outcome_matrix(trials, s.input_ids, fault_ids) for s in sets}
    rows = [_set_summary(s, critical[s.name], n_boot, seed, confidence) for s in sets]
    ref = next((s for s in sets if s.name == reference), None)
    compared = [r for r in rows if ref is not None and r["set"] != reference]
    for row in rows:
        row.update(ratio_vs_random=None, ratio_low=None, ratio_high=None, difference=None,
                   difference_low=None, difference_high=None, p_value=None, p_holm=None, significant=None,
                   p_exact=None, p_exact_holm=None, faults_higher=None, faults_lower=None)
    if ref is None:
        return rows
    ref_matrix = critical[ref.name] == OUTCOMES.index("sdc_critical")
    for row in compared:
        cmp = stats.compare_sets(critical[row["set"]] == OUTCOMES.index("sdc_critical"), ref_matrix,
                                 n_boot=n_boot, seed=seed, confidence=confidence)
        row.update(ratio_vs_random=cmp.ratio, ratio_low=cmp.ratio_low, ratio_high=cmp.ratio_high,
                   difference=cmp.difference, difference_low=cmp.difference_low,
                   difference_high=cmp.difference_high, p_value=cmp.p_value)
        p_exact, higher, lower = stats.exact_paired_test(critical[row["set"]] == OUTCOMES.index("sdc_critical"),
                                                         ref_matrix)
        row.update(p_exact=p_exact, faults_higher=higher, faults_lower=lower)
    adjusted = stats.holm_adjust([r["p_value"] for r in compared])
    for row, p, p_exact in zip(compared, adjusted, stats.holm_adjust([r["p_exact"] for r in compared])):
        row["p_holm"] = float(p)
        row["significant"] = bool(p < SIGNIFICANCE_LEVEL)
        row["p_exact_holm"] = float(p_exact)
    ref_row = next(r for r in rows if r["set"] == reference)
    ref_row["ratio_vs_random"] = 1.0 if ref_row["critical"] else None
    return rows


def _set_summary(input_set: InputSet, codes: np.ndarray, n_boot: int, seed: int, confidence: float) -> dict:
    crit = codes == OUTCOMES.index("sdc_critical")
    n, k = crit.size, int(crit.sum())
    per_input = crit.sum(axis=1)
    low, high = stats.wilson_interval(k, n, confidence)
    cp_low, cp_high = stats.clopper_pearson_interval(k, n, confidence)
    fl, fh = stats.cluster_bootstrap_interval(crit, "faults", n_boot, seed, confidence)
    il, ih = stats.cluster_bootstrap_interval(crit, "inputs", n_boot, seed, confidence)
    return {
        "set": input_set.name,
        "strategy": input_set.strategy,
        "n_inputs": len(input_set.input_ids),
        "n_faults": codes.shape[1],
        "trials": n,
        "critical": k,
        "sdc": int(((codes == OUTCOMES.index("sdc_critical")) | (codes == OUTCOMES.index("sdc_tolerable"))).sum()),
        "due": int((codes == OUTCOMES.index("due")).sum()),
        "masked": int((codes == OUTCOMES.index("masked")).sum()),
        "rate": k / n if n else float("nan"),
        "ci_low": low,
        "ci_high": high,
        "cp_low": cp_low,
        "cp_high": cp_high,
        "boot_faults_low": fl,
        "boot_faults_high": fh,
        "boot_inputs_low": il,
        "boot_inputs_high": ih,
        "top_input_share": stats.top_input_share(crit),
        "top_input_id": int(input_set.input_ids[int(per_input.argmax())]) if k else None,
        "inputs_with_critical": int((per_input > 0).sum()),
        "input_ids": [int(i) for i in input_set.input_ids],
        "params": input_set.params,
    }
