"""The study report: one self-contained HTML file (figures embedded), Markdown and CSV tables.

Example::

    write_report(Path("runs/study-20250101-120000"))   # -> report.html, report.md, report/*.csv
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from faultsift import analysis, stats
from faultsift.campaign.store import read_parquet, write_text_atomic
from faultsift.report import figures
from faultsift.report.tables import HEADER, campaign_title, frame_markdown, pct, set_row

REPORT_SCORES = ("margin", "max_softmax", "entropy", "logit_margin", "gini", "energy")
RATE_COLUMNS = ("rate", "v")


@dataclass
class Section:
    """One campaign's part of the report: text, tables (DataFrames) and PNG figures."""

    title: str
    sets: list[dict]
    notes: list[str] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, bytes] = field(default_factory=dict)


def build_sections(results_dir: Path, summary: dict, n_boot: int, seed: int = 0) -> list[Section]:
    """Analyse every campaign of a results folder into report sections."""
    sections = []
    for model, info in summary["models"].items():
        prof = read_parquet(results_dir / model / "profile.parquet")
        for fm, result in info["fault_models"].items():
            camp = results_dir / model / fm
            title = campaign_title(model, result)
            section = Section(title, result["sets"])
            trials = read_parquet(camp / "trials.parquet")
            faults = read_parquet(camp / "faults.parquet")
            section.figures["Critical-SDC rate per input set"] = figures.rates_figure(f"{model} / {fm}", result["sets"])
            estimate = analysis.dataset_estimate(trials, result["sets"], n_boot, seed)
            if estimate:
                section.tables["Dataset-level estimate"] = _estimate_table(estimate)
                section.notes.append("Dataset-level estimate: every stratified input weighted by its stratum's size "
                                     "over the inputs drawn from it (unbiased for the pool's mean rate), next to the "
                                     "random and low-confidence sets; all three with two-way (faults x inputs) "
                                     "bootstrap intervals.")
            for by in ("site", "bit"):
                table = analysis.fault_breakdown(trials, faults, result["sets"], by)
                if len(table):
                    section.tables[f"Per {by}"] = table
                    section.figures[f"Critical rate per {by} and set"] = figures.heatmap(f"{model} / {fm}", table, by)
            screening = camp / "screening_trials.parquet"
            truth = read_parquet(screening) if screening.is_file() else trials
            source = "screening campaign" if screening.is_file() else "evaluation campaign"
            vuln = analysis.vulnerability(truth, prof, REPORT_SCORES)
            section.notes.append(f"Per-input vulnerability v_i and score quality from the {source}: "
                                 f"{len(vuln):,} inputs x {int(vuln['trials'].iloc[0]):,} faults, "
                                 f"{int((vuln['v'] > 0).sum()):,} inputs with a critical SDC.")
            section.figures["Vulnerability against margin (one point per input)"] = figures.vulnerability_scatter(
                f"{model} / {fm}", vuln, "margin")
            section.figures["Cumulative gain per score"] = figures.gain_curves(f"{model} / {fm}", vuln, REPORT_SCORES)
            quality = analysis.metric_quality(truth, prof, REPORT_SCORES, k=len(result["sets"][0]["input_ids"]),
                                              n_boot=n_boot, seed=seed)
            section.tables["Score quality against fault injection"] = quality
            section.tables["Per golden class"] = analysis.class_breakdown(truth, prof)
            sections.append(section)
    return sections


def _estimate_table(estimate: dict) -> pd.DataFrame:
    pool = "correctly classified inputs" if estimate["only_correct"] else "inputs"
    rows = [{"what": f"all {estimate['population']:,} {pool} of the pool: stratified estimate from set "
                     f"`{estimate['set']}` ({estimate['bins']} bins of {estimate['score']})",
             "rate": estimate["rate"], "low": estimate["low"], "high": estimate["high"]}]
    rows += [{"what": f"{s['set']} set", "rate": s["rate"], "low": s["low"], "high": s["high"]} for s in estimate["sets"]]
    return pd.DataFrame(rows)


def write_report(results_dir: Path, n_boot: int | None = None, seed: int = 0) -> dict[str, Path]:
    """Write ``report.html``, ``report.md`` and ``report/*.csv`` into a study's results folder."""
    results_dir = Path(results_dir)
    summary = analysis.read_summary(results_dir)
    n_boot = n_boot or min(int(summary.get("config", {}).get("n_boot") or 1000), 1000)
    sections = build_sections(results_dir, summary, n_boot, seed)
    paths = {"html": results_dir / "report.html", "markdown": results_dir / "report.md"}
    write_text_atomic(render_html(summary, sections), paths["html"])
    write_text_atomic(render_markdown(summary, sections), paths["markdown"])
    for name, frame in _csv_tables(sections).items():
        paths[name] = results_dir / "report" / f"{name}.csv"
        write_text_atomic(frame.to_csv(index=False), paths[name])
    return paths


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_")


def _csv_tables(sections: list[Section]) -> dict[str, pd.DataFrame]:
    """One CSV per table kind, all campaigns stacked (a ``campaign`` column first)."""
    stacked: dict[str, list[pd.DataFrame]] = {"sets": []}
    for section in sections:
        campaign = section.title.split(":", 1)[0]
        sets = pd.DataFrame(section.sets).drop(columns=["input_ids", "params"], errors="ignore")
        stacked["sets"].append(sets.assign(campaign=campaign))
        for name, frame in section.tables.items():
            stacked.setdefault(_slug(name), []).append(frame.assign(campaign=campaign))
    out = {}
    for name, frames in stacked.items():
        frame = pd.concat(frames, ignore_index=True)
        out[name] = frame[["campaign"] + [c for c in frame.columns if c != "campaign"]]
    return out


# ---------------------------------------------------------------- formatting


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.4g}"
    return str(value)


def _display(frame: pd.DataFrame) -> pd.DataFrame:
    """Interval columns ``x_low``/``x_high`` folded into ``x [low, high]`` strings; rates in percent."""
    frame = frame.rename(columns={"low": "rate_low", "high": "rate_high"})
    out = {}
    for col in frame.columns:
        if col.endswith("_low") or col.endswith("_high"):
            continue
        fmt = pct if col in RATE_COLUMNS else _fmt
        name = f"{col} %" if col in RATE_COLUMNS else col
        values = frame[col]
        if f"{col}_low" in frame.columns:
            out[f"{name} [95%]"] = [f"{fmt(v)} [{fmt(lo)}, {fmt(hi)}]"
                                    for v, lo, hi in zip(values, frame[f"{col}_low"], frame[f"{col}_high"])]
        else:
            out[name] = [fmt(v) for v in values]
    return pd.DataFrame(out)


SET_HEADER = HEADER + ("p exact Holm", "CP 95% (critical)", "SDC % [CP 95%]")


def _set_rows(sets: list[dict]) -> list[tuple[str, ...]]:
    """The study table's row of each set, plus the exact test and Clopper-Pearson intervals."""
    rows = []
    for r in sets:
        cp = stats.clopper_pearson_interval(r["critical"], r["trials"])
        sdc = stats.clopper_pearson_interval(r["sdc"], r["trials"])
        rows.append(set_row(r) + (_fmt(r.get("p_exact_holm")), f"[{pct(cp[0])}, {pct(cp[1])}]",
                                  f"{pct(r['sdc'] / r['trials'])} [{pct(sdc[0])}, {pct(sdc[1])}]"))
    return rows


def _html_table(header, rows) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _frame_html(frame: pd.DataFrame) -> str:
    shown = _display(frame)
    return _html_table(shown.columns, shown.itertuples(index=False))


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; border-top: 1px solid #ccc; padding-top: 1em; margin-top: 2em; }
h3 { font-size: 1em; margin-top: 1.4em; }
table { border-collapse: collapse; font-size: 0.8em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: left; white-space: nowrap; }
th { background: #f3f3f3; } .scroll { overflow-x: auto; max-height: 28em; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; display: block; }
pre { background: #f7f7f7; padding: 0.8em; font-size: 0.75em; overflow-x: auto; }
.note { color: #555; font-size: 0.9em; }
"""

CHECK_SCRIPT = """
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var ok = images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.getElementById('figure-check').textContent = ok + ' of ' + images.length + ' figures loaded';
});
"""


def render_html(summary: dict, sections: list[Section]) -> str:
    """The report as one HTML string; every string from the results is escaped."""
    e = html.escape
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>faultsift report</title>"
             f"<style>{CSS}</style></head><body>",
             "<h1>faultsift study report</h1>",
             f"<p class='note'>Started {e(str(summary.get('started')))}, finished {e(str(summary.get('finished')))}. "
             "Rates are critical SDCs (top-1 differs from the golden top-1) per trial (input x fault). Intervals: "
             "Wilson and Clopper-Pearson (trials as independent), cluster bootstraps over faults and over inputs; "
             "ratios to the random set with a paired (faults x inputs) bootstrap; p Holm: bootstrap test (the inputs "
             "drawn are part of the uncertainty); p exact: sign test over faults of which set fails more often per "
             "fault, conditional on the chosen inputs (these inputs against the random set's, on this fault "
             "population); both Holm-adjusted over the sets compared.</p>",
             "<h2>Contents</h2><ul>"]
    parts += [f"<li><a href='#s{i}'>{e(s.title)}</a></li>" for i, s in enumerate(sections)]
    parts.append("<li><a href='#provenance'>Provenance</a></li></ul>")
    for i, section in enumerate(sections):
        parts.append(f"<h2 id='s{i}'>{e(section.title)}</h2>")
        parts.append("<div class='scroll'>" + _html_table(SET_HEADER, _set_rows(section.sets)) + "</div>")
        parts += [f"<p class='note'>{e(n)}</p>" for n in section.notes]
        for caption, png in section.figures.items():
            data = base64.b64encode(png).decode()
            parts.append(f"<h3>{e(caption)}</h3><img alt='{e(caption)}' src='data:image/png;base64,{data}'>")
        for caption, frame in section.tables.items():
            parts.append(f"<h3>{e(caption)}</h3><div class='scroll'>{_frame_html(frame)}</div>")
    parts.append("<h2 id='provenance'>Provenance</h2>")
    parts.append(_html_table(("package", "version"), [(k, _fmt(v)) for k, v in summary.get("versions", {}).items()]))
    campaigns = [(m, fm, r) for m, info in summary["models"].items() for fm, r in info["fault_models"].items()]
    parts.append(_html_table(("model", "fault model", "faults", "seed", "trials", "screening", "seconds"),
                             [(m, fm, r.get("n_faults"), r.get("seed"), sum((r.get("outcomes") or {}).values()),
                               json.dumps(r.get("screening")), r.get("seconds")) for m, fm, r in campaigns]))
    parts.append("<h3>Study spec</h3><pre>" + e(json.dumps(summary.get("config", {}), indent=2)) + "</pre>")
    parts.append(f"<p class='note' id='figure-check'>figures not checked</p><script>{CHECK_SCRIPT}</script>")
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(summary: dict, sections: list[Section]) -> str:
    """The report's tables as Markdown (figures are in the HTML report)."""
    out = ["# faultsift study report", "", "Tables of `report.html` (figures there); CSV copies in `report/`.", ""]
    for section in sections:
        out += [f"## {section.title}", ""]
        out += [frame_markdown(pd.DataFrame(_set_rows(section.sets), columns=list(SET_HEADER))), ""]
        out += [*section.notes, ""]
        for caption, frame in section.tables.items():
            out += [f"### {caption}", "", frame_markdown(_display(frame)), ""]
    out += ["## Provenance", "", "```json", json.dumps({"versions": summary.get("versions"),
                                                        "config": summary.get("config")}, indent=2), "```", ""]
    return "\n".join(out)
