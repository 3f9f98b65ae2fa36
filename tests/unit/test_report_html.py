"""HTML rendering escapes every string from the results; Markdown tables stay well-formed."""

import pandas as pd

from faultsift.report.html import Section, render_html, render_markdown
from faultsift.report.tables import frame_markdown

EVIL = "<script>alert('x')</script>"


def _set(name):
    return {"set": name, "strategy": name, "trials": 10, "critical": 1, "sdc": 2, "rate": 0.1, "ci_low": 0.01, "ci_high": 0.4,
            "boot_faults_low": 0.0, "boot_faults_high": 0.3, "boot_inputs_low": 0.0, "boot_inputs_high": 0.3,
            "ratio_vs_random": None, "p_holm": None, "significant": None, "top_input_share": 1.0,
            "top_input_id": 3, "p_exact_holm": None}


def test_every_result_string_is_escaped():
    summary = {"started": EVIL, "finished": "now", "versions": {"torch": EVIL},
               "config": {"models": [EVIL]}, "models": {EVIL: {"fault_models": {"bitflip": {"n_faults": 5}}}}}
    section = Section(EVIL, [_set(EVIL)], notes=[EVIL], tables={EVIL: pd.DataFrame({"site": [EVIL], "rate": [0.5]})},
                      figures={EVIL: b"\x89PNG"})
    page = render_html(summary, [section])
    assert EVIL not in page and "alert(&#x27;x&#x27;)" in page
    assert page.count("<script>") == 1  # only the report's own figure check


def test_markdown_tables_escape_pipes_and_fold_intervals():
    frame = pd.DataFrame({"site": ["a|b"], "rate": [0.25], "rate_low": [0.1], "rate_high": [0.5]})
    assert frame_markdown(frame).splitlines()[2] == "| a\\|b | 0.25 | 0.1 | 0.5 |"
    md = render_markdown({"models": {}}, [Section("t", [_set("random")], tables={"Per site": frame})])
    assert "| 20.00 [2.52, 55.61] |" in md  # SDC 2 of 10, Clopper-Pearson
    assert "| site | rate % [95%] |" in md and "| a\\|b | 25.00 [10.00, 50.00] |" in md
