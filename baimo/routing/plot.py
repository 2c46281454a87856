"""The cost–quality plot of a router benchmark: router curves, single models, random mix and oracle (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_bench(report: dict[str, Any], path: Path, title: str = "") -> None:
    """Write a PNG of quality vs. mean cost per request from a `baimo router bench` report."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    styles = {"learned": ("tab:blue", "-", "learned router (utility, λ sweep)"),
              "threshold_rule": ("tab:orange", "--", "learned router (cheapest with P ≥ t)"),
              "oracle": ("tab:green", ":", "oracle"),
              "random": ("tab:gray", "-.", "random mix")}
    for key, (color, ls, label) in styles.items():
        curve = report.get(key, {}).get("curve")
        if not curve:
            continue
        pts = sorted((p["cost"], p["quality"]) for p in curve)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color=color, linestyle=ls, label=label, linewidth=1.6)
    for model_id, m in report["models"].items():
        ax.scatter([m["cost"]], [m["quality"]], s=55, zorder=5, label=f"{model_id} only")
    op = report.get("learned", {}).get("operating_point")
    if op:
        ax.scatter([op["cost"]], [op["quality"]], marker="*", s=180, color="tab:red", zorder=6,
                   label=f"calibrated λ={op['param']:.3g}")
    ref = report["reference"]
    ax.axhline(0.95 * ref["strong_quality"], color="tab:red", linewidth=0.7, alpha=0.5,
               label=f"95% of {ref['strong_model']}")
    ax.set_xlabel("mean cost per request (USD)")
    ax.set_ylabel("mean quality (score of the chosen model)")
    ax.set_title(title or "Cost–quality of routing")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
