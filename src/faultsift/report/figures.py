"""Figures (matplotlib, no display needed).

Example::

    margin_figure({"digits-vit": {"zoo:digits": m1, "zoo:digits-hard": m2}}, Path("margins.png"))
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

MARGIN_FLOOR = 1e-6


def margin_figure(margins: dict[str, dict[str, np.ndarray]], path: Path) -> None:
    """Cumulative margin distribution per model (log x axis), one line per pool."""
    fig, axes = plt.subplots(1, len(margins), figsize=(4.2 * len(margins), 3.3), squeeze=False, sharey=True)
    for ax, (model, pools) in zip(axes[0], margins.items()):
        for pool, values in pools.items():
            x = np.sort(np.clip(values, MARGIN_FLOOR, 1.0))
            ax.step(x, np.arange(1, len(x) + 1) / len(x), where="post", linewidth=1.6, label=f"{pool} (n={len(x)})")
        ax.axvline(0.01, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlim(MARGIN_FLOOR, 1.0)
        ax.set_title(model)
        ax.set_xlabel("margin (top-1 minus top-2 probability)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("fraction of inputs with margin <= x")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def png_bytes(fig) -> bytes:
    """Render a figure to PNG bytes and close it."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _num(x) -> float:
    """A summary number (``None`` -> nan, ``"inf"`` -> inf)."""
    if x is None:
        return float("nan")
    return float(x)


def rates_figure(title: str, sets: list[dict]) -> bytes:
    """Critical-SDC rate per set with Wilson and bootstrap intervals, and the ratio to random."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 0.55 * len(sets) + 1.6))
    y = np.arange(len(sets))[::-1]
    names = [s["set"] for s in sets]
    rate = np.array([100 * _num(s["rate"]) for s in sets])
    for offset, (lo, hi, label, color) in enumerate([("ci_low", "ci_high", "Wilson", "tab:blue"),
                                                      ("boot_faults_low", "boot_faults_high", "bootstrap over faults", "tab:orange"),
                                                      ("boot_inputs_low", "boot_inputs_high", "bootstrap over inputs", "tab:green")]):
        low = np.array([100 * _num(s[lo]) for s in sets])
        high = np.array([100 * _num(s[hi]) for s in sets])
        # a bootstrap bound can sit a rounding error on the wrong side of the rate
        xerr = [np.clip(rate - low, 0, None), np.clip(high - rate, 0, None)]
        ax.errorbar(rate, y + (offset - 1) * 0.18, xerr=xerr, fmt="o", capsize=3, color=color,
                    markersize=4, label=label)
    ax.set_yticks(y, names)
    ax.set_xlabel("critical-SDC rate (% of trials), 95% intervals")
    ax.set_xlim(left=0)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    ax.set_title(title, fontsize=9, loc="left")
    ratio = np.array([_num(s.get("ratio_vs_random")) for s in sets])
    low = np.array([_num(s.get("ratio_low")) for s in sets])
    high = np.array([_num(s.get("ratio_high")) for s in sets])
    finite_high = np.where(np.isinf(high), np.nan, high)
    top = np.nanmax(np.concatenate([ratio, finite_high, [2.0]])) * 2
    for yi, name, r, lo, hi in zip(y, names, ratio, low, high):
        if np.isnan(r):
            bx.text(1.0, yi, "0 critical" if name == "random" else "undefined (no critical SDC in the random set)",
                    va="center", ha="center", fontsize=7, color="grey")
            continue
        upper = top if np.isinf(hi) else hi
        xerr = [[max(r - lo, 0)], [max(upper - r, 0)]] if not np.isnan(lo) else None
        bx.errorbar([r], [yi], xerr=xerr, fmt="s", capsize=3,
                    color="tab:red")
        if np.isinf(hi):
            bx.annotate("upper bound inf", (upper, yi), fontsize=7, ha="right", va="bottom")
    bx.axvline(1.0, color="grey", linestyle=":")
    bx.set_xscale("log")
    bx.set_xlim(0.1, max(top, 10.0))
    bx.set_yticks(y, names)
    bx.set_xlabel("rate ratio to the random set (log scale), paired bootstrap 95%")
    bx.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return png_bytes(fig)


def vulnerability_scatter(title: str, vuln, score: str = "margin") -> bytes:
    """Per-input critical rate against one score (one point per input)."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    x = vuln[score].to_numpy()
    log_x = score in ("margin", "max_softmax") and (x > 0).all()
    ax.scatter(np.clip(x, MARGIN_FLOOR, None) if log_x else x, 100 * vuln["v"].to_numpy(), s=8, alpha=0.5)
    if log_x:
        ax.set_xscale("log")
    ax.set_ylim(bottom=0, top=None if (vuln["v"] > 0).any() else 1)
    ax.set_xlabel(f"{score} (golden pass)")
    ax.set_ylabel("critical-SDC rate of the input (%)")
    ax.set_title(f"{title}: {len(vuln):,} inputs x {int(vuln['trials'].iloc[0]):,} faults", fontsize=9, loc="left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return png_bytes(fig)


def gain_curves(title: str, vuln, scores) -> bytes:
    """Cumulative share of critical SDCs found when inputs are taken in each score's order."""
    from faultsift.selection.scores import SCORES

    fig, ax = plt.subplots(figsize=(6.5, 4))
    v = vuln["v"].to_numpy()
    total = v.sum()
    frac = np.arange(1, len(v) + 1) / len(v)
    if total > 0:
        ax.plot(frac, np.cumsum(np.sort(v)[::-1]) / total, color="black", linewidth=1, linestyle="--",
                label="oracle (measured rates)")
        for name in scores:
            order = np.argsort(-SCORES.get(name).oriented(vuln[name].to_numpy()), kind="stable")
            ax.plot(frac, np.cumsum(v[order]) / total, linewidth=1.3, label=name)
    else:
        ax.text(0.5, 0.5, "no critical SDC in these trials", ha="center", transform=ax.transAxes, color="grey")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="random order")
    ax.set_xscale("log")
    ax.set_xlim(1 / len(v), 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("fraction of inputs taken, most exposed first by the score (log scale)")
    ax.set_ylabel("fraction of critical SDCs found")
    ax.set_title(title, fontsize=9, loc="left")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return png_bytes(fig)


def heatmap(title: str, table, by: str) -> bytes:
    """Critical rate (%) per ``by`` value (rows) and input set (columns)."""
    grid = table.pivot(index=by, columns="set", values="rate") * 100
    grid = grid[list(dict.fromkeys(table["set"]))]
    fig, ax = plt.subplots(figsize=(1.6 * grid.shape[1] + 2.5, 0.28 * grid.shape[0] + 1.6))
    image = ax.imshow(grid.to_numpy(), aspect="auto", cmap="viridis", vmin=0)
    ax.set_xticks(range(grid.shape[1]), grid.columns, rotation=20, ha="right")
    ax.set_yticks(range(grid.shape[0]), [str(i) for i in grid.index], fontsize=7 if grid.shape[0] > 12 else 9)
    ax.set_ylabel(by)
    ax.set_title(title, fontsize=9, loc="left")
    if grid.size <= 160:
        for (r, c), value in np.ndenumerate(grid.to_numpy()):
            ax.text(c, r, f"{value:.1f}", ha="center", va="center", fontsize=6, color="white" if value < grid.to_numpy().max() / 2 else "black")
    fig.colorbar(image, ax=ax, label="critical-SDC rate (%)")
    fig.tight_layout()
    return png_bytes(fig)
