"""The report of a real small study: files, numbers against the trials, and a headless-browser render."""

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from faultsift.selection.scores import SCORES, profile_scores

FAULTSIFT = [sys.executable, "-m", "faultsift"]
CHROMIUM = Path("/usr/bin/chromium")
STUDY = ["--models", "zoo:digits-cnn", "--fault-models", "bitflip,beam-body", "--faults", "40", "--screen-faults", "4",
         "--n-boot", "200", "-k", "8", "--quiet", "--strategies", "random,low-confidence,high-confidence,fi-ranked,stratified"]


def run(*args):
    return subprocess.run([*FAULTSIFT, *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "COLUMNS": "200"})


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "run"
    result = run("study", "--out", str(out), *STUDY)
    assert result.returncode == 0, result.stderr
    assert "Report: " in result.stdout
    return out


def test_study_writes_a_self_contained_report(study):
    page = (study / "report.html").read_text()
    summary = json.loads((study / "summary.json").read_text())
    images = re.findall(r"<img alt='[^']*' src='data:image/png;base64,([^']+)'>", page)
    assert len(images) == page.count("<img") == 9  # bitflip: 5 figures (rates, site, bit, scatter, gain); beam: 4
    assert all(base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n" for data in images)
    assert not re.search(r"(src|href)=['\"]?(https?:|//)", page)  # nothing fetched from a network
    for name in ("random", "low-confidence", "high-confidence", "fi-ranked", "stratified"):
        assert f"<td>{name}</td>" in page
    assert summary["versions"]["torch"] in page and "&quot;n_faults&quot;: 40" in page
    md = (study / "report.md").read_text()
    assert "### Dataset-level estimate" in md and "### Score quality against fault injection" in md
    assert {p.name for p in (study / "report").iterdir()} == {
        "sets.csv", "per_site.csv", "per_bit.csv", "per_golden_class.csv", "dataset_level_estimate.csv",
        "score_quality_against_fault_injection.csv"}


def test_report_tables_match_the_trials(study):
    summary = json.loads((study / "summary.json").read_text())
    sets = {s["set"]: s for s in summary["models"]["digits-cnn"]["fault_models"]["bitflip"]["sets"]}
    camp = study / "digits-cnn" / "bitflip"
    trials = pd.read_parquet(camp / "trials.parquet").merge(pd.read_parquet(camp / "faults.parquet")[["fault_id", "site"]])
    trials["crit"] = trials["outcome"] == "sdc_critical"
    per_site = pd.read_csv(study / "report" / "per_site.csv")
    per_site = per_site[per_site["campaign"].str.endswith("/ bitflip")]
    for name, s in sets.items():
        mine = trials[trials["input_id"].isin(s["input_ids"])]
        expected = mine.groupby("site")["crit"].agg(["sum", "size"])
        got = per_site[per_site["set"] == name].set_index("site")
        assert got["critical"].to_dict() == expected["sum"].to_dict()
        assert got["trials"].to_dict() == expected["size"].to_dict()
        assert (got["rate_low"] <= got["rate"]).all() and (got["rate"] <= got["rate_high"]).all()
    # dataset-level estimate: stratum-weighted mean of the stratified set's per-input rates
    strat = sets["stratified"]
    v = trials[trials["input_id"].isin(strat["input_ids"])].groupby("input_id")["crit"].mean()
    per_stratum = pd.Series(v.loc[strat["input_ids"]].to_numpy()).groupby(strat["params"]["stratum_of"]).mean()
    weights = np.array(strat["params"]["stratum_sizes"]) / sum(strat["params"]["stratum_sizes"])
    estimate = pd.read_csv(study / "report" / "dataset_level_estimate.csv")
    row = estimate[estimate["campaign"].str.endswith("/ bitflip")].iloc[0]
    assert row["rate"] == pytest.approx(float((weights * per_stratum.to_numpy()).sum()))
    assert row["low"] <= row["rate"] <= row["high"]


def test_compare_metrics_ranks_scores_against_the_screening(study, tmp_path):
    out = tmp_path / "metrics.csv"
    result = run("compare-metrics", str(study), "--n-boot", "20", "--scores", "margin,entropy,grad_norm", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "scores ranked by Spearman" in result.stdout and "learned (" in result.stdout
    table = pd.read_csv(out)
    assert len(table) == 2 * 3 and set(table["score"]) == {"margin", "entropy", "grad_norm"}
    camp = study / "digits-cnn" / "beam-body"
    screening = pd.read_parquet(camp / "screening_trials.parquet")
    v = (screening["outcome"] == "sdc_critical").groupby(screening["input_id"]).mean()
    prof = pd.read_parquet(study / "digits-cnn" / "profile.parquet").set_index("input_id").loc[v.index].reset_index()
    for name in ("margin", "entropy"):
        score = SCORES.get(name).oriented(profile_scores(prof, [name])[name].to_numpy())
        row = table[(table["fault_model"] == "beam-body") & (table["score"] == name)].iloc[0]
        assert row["spearman"] == pytest.approx(spearmanr(score, v.to_numpy()).statistic)


def test_report_verb_rewrites_and_bad_folder_is_one_line(study, tmp_path):
    result = run("report", str(study), "--n-boot", "20")
    assert result.returncode == 0, result.stderr
    bad = run("report", str(tmp_path / "nothing"))
    assert bad.returncode == 2 and "is not a faultsift results folder" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's `chromium` at /usr/bin/chromium "
                    "(`make test` installs it with apt when it can; or run `apt-get install -y chromium`)")
def test_report_renders_in_headless_chromium(study, tmp_path):
    url = (study / "report.html").as_uri()
    dom = subprocess.run([str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'a'}", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    n = (study / "report.html").read_text().count("<img")
    assert f"{n} of {n} figures loaded" in dom.stdout  # every embedded PNG decoded in the browser
    shot = tmp_path / "report.png"
    subprocess.run([str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'b'}", f"--screenshot={shot}",
                    "--window-size=1200,2400", url], capture_output=True, timeout=120)
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (2400, 1200) and pixels[..., :3].std() > 0.05  # not a blank page
    keep = os.environ.get("FAULTSIFT_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)


def test_select_verb_takes_score_bins_and_only_correct(study, tmp_path):
    sets = tmp_path / "sets.json"
    prof = study / "digits-cnn" / "profile.parquet"
    r = run("select", str(prof), "--strategy", "stratified", "--score", "entropy", "--bins", "3", "-k", "9",
            "--all-inputs", "--out", str(sets))
    assert r.returncode == 0, r.stderr
    chosen = json.loads(sets.read_text())[0]
    assert chosen["params"]["stratum_sizes"] == [720, 720, 720] and chosen["params"]["only_correct"] is False
    bad = run("select", str(prof), "--strategy", "highest", "--score", "entropi", "--out", str(sets))
    assert bad.returncode == 2 and "Did you mean `entropy`" in bad.stderr
