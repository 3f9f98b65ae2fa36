"""Result tables of a study, as rows of strings (for rich and Markdown).

Example::

    print(markdown_report(summary))
"""

from __future__ import annotations

import math

HEADER = ("set", "trials", "crit.", "rate % [Wilson]", "boot faults", "boot inputs",
          "x random [95%]", "p Holm", "sig.", "top input")


def _is_num(x) -> bool:
    return isinstance(x, (int, float)) and not (isinstance(x, float) and math.isnan(x))


def pct(x) -> str:
    if x == "inf" or (isinstance(x, float) and math.isinf(x)):
        return "inf"
    return f"{100 * x:.2f}" if _is_num(x) else "n/a"


def interval(low, high) -> str:
    return f"[{pct(low)}, {pct(high)}]"


def ratio_text(row: dict) -> str:
    ratio = row.get("ratio_vs_random")
    if not _is_num(ratio):
        return "undefined" if row["set"] != "random" else "0 critical"
    if row["set"] == "random":
        return "1 (reference)"

    def num(x):
        if x == "inf" or (isinstance(x, float) and math.isinf(x)):
            return "inf"
        return f"{x:.2f}" if _is_num(x) else "n/a"

    return f"{num(ratio)} [{num(row.get('ratio_low'))}, {num(row.get('ratio_high'))}]"


def set_row(row: dict) -> tuple[str, ...]:
    """One table row of strings for a set summary."""
    p = row.get("p_holm")
    share = row.get("top_input_share")
    top = f"{100 * share:.0f}% (#{row['top_input_id']})" if _is_num(share) else "-"
    signif = "-" if row.get("significant") is None else ("yes" if row["significant"] else "no")
    return (
        row["set"],
        f"{row['trials']:,}",
        f"{row['critical']:,}",
        f"{pct(row['rate'])} {interval(row['ci_low'], row['ci_high'])}",
        interval(row["boot_faults_low"], row["boot_faults_high"]),
        interval(row["boot_inputs_low"], row["boot_inputs_high"]),
        ratio_text(row),
        f"{p:.3g}" if _is_num(p) else "-",
        signif,
        top,
    )


def campaign_title(model: str, result: dict) -> str:
    n_inputs = result["sets"][0]["n_inputs"] if result["sets"] else 0
    title = f"{model} / {result['fault_model']}: {result['n_faults']:,} faults x {n_inputs} inputs per set"
    if result.get("screening"):
        s = result["screening"]
        title += (f"; fi-ranked screened {s['inputs']:,} inputs x {s['faults']:,} faults "
                  f"(seed {s['seed']}), {s['inputs_with_critical']} with a critical SDC")
    return title


def markdown_table(rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def markdown_report(summary: dict) -> str:
    """The whole study as Markdown: one table per model and fault model, then the pools."""
    out = ["# faultsift study results", "",
           "Critical-SDC rate per input set (percent), 95% intervals: Wilson (trials as independent), and "
           "cluster bootstraps over faults and over inputs. `x random`: rate ratio to the random set with a "
           "two-way (faults x inputs) paired bootstrap interval, `undefined` when the random set has no "
           "critical SDC; `p Holm`: bootstrap test of the difference, Holm-adjusted over the sets compared; "
           "`top input`: share of the set's critical SDCs caused by its most vulnerable input (its id).", ""]
    for model, info in summary["models"].items():
        for result in info["fault_models"].values():
            out += [f"## {campaign_title(model, result)}", "", markdown_table([set_row(r) for r in result["sets"]]), ""]
    out += ["## Input pools (margin = top-1 minus top-2 probability)", "",
            "| model | pool | inputs | accuracy | margin < 0.01 | margin < 0.1 | median margin |", "|---|---|---|---|---|---|---|"]
    for model, info in summary["models"].items():
        for pool, p in info["pools"].items():
            out.append(f"| {model} | {pool} | {p['inputs']} | {100 * p['accuracy']:.1f}% | "
                       f"{100 * p['margin_below_0.01']:.1f}% | {100 * p['margin_below_0.1']:.1f}% | "
                       f"{p['margin_quantiles']['0.5']:.3f} |")
    return "\n".join(out) + "\n"


def frame_markdown(frame) -> str:
    """A DataFrame as a Markdown table (cells as ``str``; ``|`` escaped)."""
    cells = [[str(c).replace("|", "\\|") for c in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(str(c) for c in frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])
