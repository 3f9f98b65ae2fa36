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
