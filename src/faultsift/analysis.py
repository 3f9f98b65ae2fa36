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
    sdc = int(((codes == OUTCOMES.index("sdc_critical")) | (codes == OUTCOMES.index("sdc_tolerable"))).sum())
    sdc_low, sdc_high = stats.wilson_interval(sdc, n, confidence)
    sdc_cp_low, sdc_cp_high = stats.clopper_pearson_interval(sdc, n, confidence)
    fl, fh = stats.cluster_bootstrap_interval(crit, "faults", n_boot, seed, confidence)
    il, ih = stats.cluster_bootstrap_interval(crit, "inputs", n_boot, seed, confidence)
    return {
        "set": input_set.name,
        "strategy": input_set.strategy,
        "n_inputs": len(input_set.input_ids),
        "n_faults": codes.shape[1],
        "trials": n,
        "critical": k,
        "sdc": sdc,
        "sdc_rate": sdc / n if n else float("nan"),
        "sdc_ci_low": sdc_low,
        "sdc_ci_high": sdc_high,
        "sdc_cp_low": sdc_cp_low,
        "sdc_cp_high": sdc_cp_high,
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


# ---------------------------------------------------------------- reading a results folder


def read_summary(results_dir) -> dict:
    """The ``summary.json`` of a study folder (one-line LoadError if it is not one)."""
    import json
    from pathlib import Path

    from faultsift.errors import LoadError

    path = Path(results_dir) / "summary.json"
    if not path.is_file():
        raise LoadError(f"{results_dir} is not a faultsift results folder (no summary.json); make one with `faultsift study`.")
    try:
        summary = json.loads(path.read_text())
        summary["models"].items()
    except (ValueError, KeyError, AttributeError, TypeError):
        raise LoadError(f"{path} is not a faultsift study summary; make one with `faultsift study`.") from None
    return summary


def critical_matrix(trials: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(input_ids, fault_ids, critical)`` with ``critical[i, f]`` over every (input, fault) of ``trials``."""
    input_ids = np.sort(trials["input_id"].unique())
    fault_ids = np.sort(trials["fault_id"].unique())
    codes = outcome_matrix(trials, input_ids, fault_ids)
    return input_ids, fault_ids, codes == OUTCOMES.index("sdc_critical")


# ---------------------------------------------------------------- breakdowns


def _rate_row(x: np.ndarray, confidence: float) -> dict:
    k, n = int(x.sum()), int(x.size)
    low, high = stats.clopper_pearson_interval(k, n, confidence)
    return {"trials": n, "critical": k, "rate": k / n if n else float("nan"), "rate_low": low, "rate_high": high}


def fault_breakdown(trials: pd.DataFrame, faults: pd.DataFrame, sets: list[dict], by: str = "site",
                    confidence: float = 0.95) -> pd.DataFrame:
    """Critical rate per input set and per fault ``site`` or flipped ``bit`` (Clopper-Pearson ``rate_low/high``).

    ``sets`` are the summary's set rows (``set``, ``input_ids``). ``by="bit"`` needs faults that
    flip exactly one bit each; otherwise the table is empty.
    """
    if by not in ("site", "bit"):
        raise ConfigError(f"Expected `by` in ('site', 'bit'), got {by!r}.")
    empty = pd.DataFrame(columns=["set", by, "trials", "critical", "rate", "rate_low", "rate_high"])
    if by == "site":
        if "site" not in faults:
            return empty
        values = faults.set_index("fault_id")["site"]
    elif by == "bit":
        bits = faults.set_index("fault_id")["bits"] if "bits" in faults else pd.Series(dtype=object)
        if bits.empty or not bits.map(lambda b: b is not None and len(b) == 1).all():
            return empty
        values = bits.map(lambda b: int(b[0]))
    input_ids, fault_ids, crit = critical_matrix(trials)
    row_of = {int(i): r for r, i in enumerate(input_ids)}
    groups = values.reindex(fault_ids).to_numpy()
    rows = []
    for s in sets:
        block = crit[[row_of[int(i)] for i in s["input_ids"]]]
        for value in sorted(pd.unique(groups)):
            rows.append({"set": s["set"], by: value, **_rate_row(block[:, groups == value], confidence)})
    return pd.DataFrame(rows)


def class_breakdown(trials: pd.DataFrame, profile: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Critical rate per golden (predicted) class over every input of ``trials``."""
    input_ids, _, crit = critical_matrix(trials)
    pred = profile.set_index("input_id").loc[input_ids, "pred"].to_numpy()
    rows = [{"class": int(c), "inputs": int((pred == c).sum()), **_rate_row(crit[pred == c], confidence)}
            for c in np.unique(pred)]
    return pd.DataFrame(rows)


def vulnerability(trials: pd.DataFrame, profile: pd.DataFrame, scores=(), confidence: float = 0.95) -> pd.DataFrame:
    """Per-input critical rate ``v_i`` with Clopper-Pearson intervals, and the inputs' scores."""
    from faultsift.selection.scores import profile_scores

    input_ids, _, crit = critical_matrix(trials)
    r = stats.per_input_rates(crit, confidence)
    prof = profile.set_index("input_id").loc[input_ids].reset_index()
    frame = pd.DataFrame({"input_id": input_ids, "label": prof["label"].to_numpy(), "pred": prof["pred"].to_numpy(),
                          "critical": r["critical"], "trials": r["trials"], "v": r["rate"], "v_low": r["low"],
                          "v_high": r["high"]})
    if scores:
        frame = pd.concat([frame, profile_scores(prof, list(scores)).reset_index(drop=True)], axis=1)
    return frame


def dataset_estimate(trials: pd.DataFrame, sets: list[dict], n_boot: int = 2000, seed: int = 0,
                     confidence: float = 0.95) -> dict | None:
    """Whole-pool critical rate from the first stratified set (inverse inclusion weights), if any.

    The random and low-confidence sets' rates come along (``sets``), all with two-way
    (faults x inputs) bootstrap intervals, so the three can be read side by side.
    """
    stratified = next((s for s in sets if s.get("strategy") == "stratified"), None)
    if stratified is None:
        return None
    input_ids, _, crit = critical_matrix(trials)
    row_of = {int(i): r for r, i in enumerate(input_ids)}
    params = stratified["params"]
    x = crit[[row_of[int(i)] for i in stratified["input_ids"]]]
    rate, low, high = stats.stratified_rate(x, params["stratum_of"], params["stratum_sizes"], n_boot, seed, confidence)
    others = []
    for s in sets:
        if s.get("strategy") in ("random", "low-confidence"):
            block = crit[[row_of[int(i)] for i in s["input_ids"]]]
            others.append({"set": s["set"], "rate": float(block.mean()),
                           **dict(zip(("low", "high"), stats.cluster_bootstrap_interval(block, "both", n_boot, seed,
                                                                                      confidence)))})
    return {"set": stratified["set"], "score": params.get("score"), "bins": params.get("bins"),
            "population": params.get("population"), "only_correct": params.get("only_correct"),
            "rate": rate, "low": low, "high": high, "sets": others}


# ---------------------------------------------------------------- which score finds the exposed inputs


def metric_quality(trials: pd.DataFrame, profile: pd.DataFrame, scores, k: int, n_boot: int = 1000,
                   seed: int = 0, confidence: float = 0.95) -> pd.DataFrame:
    """Rank metrics (``stats.RANK_METRICS``) of every score against the trials' per-input rates.

    One row per score, with ``<metric>``, ``<metric>_low`` and ``<metric>_high`` columns,
    sorted by Spearman correlation (best first). Scores are oriented so that larger means
    more exposed.
    """
    from faultsift.selection.scores import SCORES, profile_scores

    input_ids, _, crit = critical_matrix(trials)
    prof = profile.set_index("input_id").loc[input_ids].reset_index()
    values = profile_scores(prof, list(scores))
    oriented = {name: SCORES.get(name).oriented(values[name].to_numpy()) for name in scores}
    out, _ = stats.rank_metrics_bootstrap(oriented, crit, min(k, len(input_ids)), n_boot, seed, confidence)
    return _quality_frame(out)


def _quality_frame(out: dict) -> pd.DataFrame:
    rows = []
    for name, metrics in out.items():
        row = {"score": name}
        for metric, (value, low, high) in metrics.items():
            row.update({metric: value, f"{metric}_low": low, f"{metric}_high": high})
        rows.append(row)
    return pd.DataFrame(rows).sort_values("spearman", ascending=False, na_position="last", kind="stable").reset_index(drop=True)


def learned_vs_scores(trials: pd.DataFrame, profile: pd.DataFrame, scores, k: int, n_boot: int = 1000,
                      seed: int = 0, confidence: float = 0.95) -> dict:
    """Does a model fitted on all scores rank exposed inputs better than the best single score?

    The trials' inputs and faults are each split in two halves (seeded): the learned strategy
    is fitted on the first inputs' rates measured with the first faults, and every ranking is
    judged on the other inputs with the other faults (a held-out evaluation campaign). The
    learned Spearman minus the best single score's gets a paired (basic) bootstrap interval.
    """
    from faultsift.selection.scores import SCORES, profile_scores
    from faultsift.selection.strategies import fit_vulnerability_model

    input_ids, fault_ids, crit = critical_matrix(trials)
    if len(input_ids) < 8 or len(fault_ids) < 2:
        raise ConfigError(f"Expected at least 8 inputs and 2 faults to split for the learned strategy, "
                          f"got {len(input_ids)} and {len(fault_ids)}.")
    rng = np.random.default_rng(seed)
    rows, cols = rng.permutation(len(input_ids)), rng.permutation(len(fault_ids))
    train_rows, test_rows = np.sort(rows[: len(rows) // 2]), np.sort(rows[len(rows) // 2 :])
    train_cols, test_cols = np.sort(cols[: len(cols) // 2]), np.sort(cols[len(cols) // 2 :])
    prof = profile.set_index("input_id").loc[input_ids].reset_index()
    features = profile_scores(prof, list(scores))
    oriented = pd.DataFrame({n: SCORES.get(n).oriented(features[n].to_numpy()) for n in scores})
    model = fit_vulnerability_model(oriented.iloc[train_rows], crit[np.ix_(train_rows, train_cols)].mean(axis=1), seed)
    candidates = {"learned": model.predict(oriented.iloc[test_rows])}
    candidates.update({n: oriented[n].to_numpy()[test_rows] for n in scores})
    held_out = crit[np.ix_(test_rows, test_cols)]
    out, reps = stats.rank_metrics_bootstrap(candidates, held_out, min(k, len(test_rows)), n_boot, seed, confidence)
    table = _quality_frame(out)
    single = table[table["score"] != "learned"]
    best = single["score"].iloc[0]
    j_best = list(candidates).index(best)
    diff = reps["spearman"][:, 0] - reps["spearman"][:, j_best]
    learned_rho = float(table.loc[table["score"] == "learned", "spearman"].iloc[0])
    difference = learned_rho - float(single["spearman"].iloc[0])
    low, high = stats.basic_interval(difference, diff, confidence, (-2.0, 2.0))
    return {"table": table, "best_single": best, "spearman_difference": difference,
            "difference_low": low, "difference_high": high, "beats_best": bool(low > 0),
            "train_inputs": len(train_rows), "test_inputs": len(test_rows), "train_faults": len(train_cols),
            "test_faults": len(test_cols)}
