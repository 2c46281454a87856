"""Reports of an evaluation run (the run JSON of `baimo eval run --json`): a terminal table, an HTML page and the
cost–quality frontier plot.

The HTML report is one self-contained file (inline SVG drawn by matplotlib, inline CSS, no script, no network):
the same page is written by `baimo eval report` and served by `/api/eval/runs/{id}/report` to the web UI.
The frontier plot puts each model, persona and router at (cost per item in USD, accuracy) with its Wilson 95 %
interval as an error bar, draws each router's λ sweep as a line, and marks and names the Pareto front
(baimo/evaluation/frontier.py).
"""

from __future__ import annotations

import html
import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from matplotlib import rc_context
from matplotlib.figure import Figure
from rich.table import Table

from baimo.evaluation.frontier import Point, pareto_front, points_of

COLORS = ("#4f46e5", "#10b981", "#f59e0b", "#f43f5e", "#0ea5e9", "#a855f7", "#84cc16", "#f97316")


def fmt_cost(usd: float | None) -> str:
    """US dollars with enough digits for sub-cent per-item costs: `$0`, `$0.000123`, `$1.25`."""
    if not usd:
        return "$0"
    return f"${usd:.2f}" if usd >= 1 else f"${usd:.6f}".rstrip("0")


def fmt_accuracy(t: dict[str, Any]) -> str:
    """`71.5 % [65.0, 77.2]`: accuracy and its 95 % interval in percent; `–` when no item was scored."""
    if not t.get("scored", t.get("n")):
        return "–"
    lo, hi = t.get("ci95") or (t["accuracy"], t["accuracy"])
    return f"{100 * t['accuracy']:.1f} % [{100 * lo:.1f}, {100 * hi:.1f}]"


def fmt_share(share: dict[str, float] | None) -> str:
    """`local/qwen 80 %, remote/strong 20 %`, largest first."""
    return ", ".join(f"{m} {100 * v:.0f} %" for m, v in sorted((share or {}).items(), key=lambda kv: -kv[1]))


def target_rows(run: dict[str, Any]) -> list[list[str]]:
    """One row of text cells per target, in the column order of `COLUMNS` (shared by the table and the HTML)."""
    rows = []
    for t in run.get("targets", []):
        lat = t.get("latency_ms") or {}
        name = t["id"] if t.get("lam") is None else f"{t.get('router') or t['id']} λ={t['lam']:g}"
        score = "" if t.get("mean_score") is None else f"{t['mean_score']:.2f}"
        rows.append([name, str(t.get("n", 0)), fmt_accuracy(t), score, fmt_cost(t.get("cost_usd")),
                     fmt_cost(t.get("cost_per_item_usd")),
                     f"{t.get('prompt_tokens', 0):,} / {t.get('completion_tokens', 0):,}",
                     f"{lat.get('p50', 0):,.0f}", f"{lat.get('p95', 0):,.0f}", fmt_share(t.get("served_share")),
                     str(t.get("errors", 0))])
    return rows


COLUMNS = ("Target", "Items", "Accuracy [95 % CI]", "Mean score", "Cost", "Cost/item", "Tokens in / out",
           "p50 ms", "p95 ms", "Served by", "Errors")


def render_table(run: dict[str, Any]) -> Table:
    """The run as a rich table: one row per target (each λ of a router sweep its own row); Pareto-front members
    are marked with ★ after their name."""
    suite = run.get("suite") or {}
    table = Table(title=f"{suite.get('name', '?')} · run {run.get('run_id', '?')} · {run.get('status', '?')}",
                  title_justify="left")
    for i, col in enumerate(COLUMNS):
        table.add_column(col, justify="left" if i in (0, 9) else "right", overflow="fold")
    front = {p.label for p in pareto_front(points_of(run.get("targets", [])))}
    for row in target_rows(run):
        table.add_row(row[0] + (" ★" if row[0] in front else ""), *row[1:])
    return table


def frontier_figure(run: dict[str, Any]) -> Figure:
    """The cost–quality plot of a run (a matplotlib Figure, no pyplot state: safe in server threads).

    x: cost per item in USD (symlog when the costs span more than two decades, so free local models at 0 and
    paid ones both show); y: accuracy in %, error bars the Wilson 95 % interval. Router λ sweeps are lines; the
    Pareto front is a dashed step line and its members are named."""
    fig = Figure(figsize=(7.5, 4.8), dpi=100)
    ax = fig.add_subplot()
    targets = [t for t in run.get("targets", []) if t.get("scored", t.get("n", 0))]
    sweeps: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for t in targets:
        if t.get("lam") is not None:
            sweeps[t.get("router") or t["id"]].append(t)
    color = iter(COLORS * 4)
    for t in targets:
        if t.get("lam") is not None:
            continue
        lo, hi = t.get("ci95") or (t["accuracy"], t["accuracy"])
        acc = 100 * t["accuracy"]
        ax.errorbar([t.get("cost_per_item_usd") or 0.0], [acc], yerr=[[acc - 100 * lo], [100 * hi - acc]],
                    fmt="o", color=next(color), capsize=4, label=t["id"], gid=f"target:{t['id']}")
    for router, pts in sweeps.items():
        pts = sorted(pts, key=lambda t: (t.get("cost_per_item_usd") or 0.0, t["lam"]))
        xs = [t.get("cost_per_item_usd") or 0.0 for t in pts]
        ys = [100 * t["accuracy"] for t in pts]
        c = next(color)
        ax.plot(xs, ys, "-s", color=c, markersize=4, label=f"{router} (λ sweep)", gid=f"sweep:{router}")
        lams: dict[tuple[float, float], list[str]] = defaultdict(list)  # λs that landed on the same point
        for t, x, y in zip(pts, xs, ys, strict=True):
            lams[(x, y)].append(f"{t['lam']:g}")
        widest = max(xs) or 1.0
        for (x, y), names in lams.items():
            far_right = x > 0.6 * widest  # left of the point, so the label stays inside the axes
            ax.annotate(f"λ={', '.join(names)}", (x, y), textcoords="offset points",
                        xytext=(-4, 6) if far_right else (4, -10), ha="right" if far_right else "left", fontsize=7,
                        color=c)
    front = pareto_front(points_of(targets))
    if front:
        ax.step([p.cost for p in front], [100 * p.accuracy for p in front], where="post", linestyle="--",
                color="#71717a", linewidth=1, label="Pareto front", gid="pareto-front")
        tied: dict[tuple[float, float], list[str]] = defaultdict(list)  # equal points share one label
        for p in front:
            tied[(p.cost, p.accuracy)].append(p.label)
        right = max(p.cost for p in front) or 1.0
        for (cost, acc), names in tied.items():
            far_right, top = cost > 0.6 * right, acc > 0.8  # keep the label inside the axes
            ax.annotate("\n".join(f"★ {n}" for n in _merge_sweep_labels(names)), (cost, 100 * acc),
                        textcoords="offset points", xytext=(-6 if far_right else 6, -8 if top else 8),
                        ha="right" if far_right else "left", va="top" if top else "bottom", fontsize=8,
                        fontweight="bold")
    _cost_scale(ax, [p.cost for p in points_of(targets)])
    suite = run.get("suite") or {}
    ax.set_title(f"Cost–quality frontier · {suite.get('name', '')} ({suite.get('items', '?')} items)", fontsize=10)
    ax.set_xlabel("cost per item (USD)")
    ax.set_ylabel("accuracy (%), 95 % CI")
    ax.set_ylim(-3, 106)
    ax.grid(True, alpha=0.3)
    if targets:
        ax.legend(fontsize=7, loc="best", framealpha=0.85)
    fig.tight_layout()
    return fig


def _merge_sweep_labels(names: list[str]) -> list[str]:
    """`["auto λ=0", "auto λ=0.1", "m"]` -> `["auto λ=0, 0.1", "m"]`: one line per router for tied λ points."""
    out: list[str] = []
    lams: dict[str, list[str]] = defaultdict(list)
    for name in names:
        router, sep, lam = name.partition(" λ=")
        if sep:
            if router not in lams:
                out.append(router)
            lams[router].append(lam)
        else:
            out.append(name)
    return [f"{n} λ={', '.join(lams[n])}" if n in lams else n for n in out]


def _cost_scale(ax: Any, costs: list[float]) -> None:
    positive = [c for c in costs if c > 0]
    if positive and max(positive) / min(positive) > 100:
        ax.set_xscale("symlog", linthresh=min(positive))


def frontier_svg(run: dict[str, Any]) -> str:
    """The frontier plot as an SVG document (text kept as <text> elements, so names are searchable)."""
    buf = io.StringIO()
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "baimo"}):
        frontier_figure(run).savefig(buf, format="svg")
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]  # inline: no XML prolog or doctype


def frontier_png(run: dict[str, Any], path: Path) -> None:
    """The frontier plot as a PNG file (for docs and chat tools that show images)."""
    frontier_figure(run).savefig(path, format="png")


CSS = """body{font-family:system-ui,sans-serif;margin:1.5rem;color:#18181b;background:#fff}
h1{font-size:1.3rem}h2{font-size:1.05rem;margin-top:1.6rem}.meta{color:#52525b;font-size:.9rem}
table{border-collapse:collapse;font-size:.85rem}th,td{padding:.3rem .6rem;border-bottom:1px solid #e4e4e7}
th{text-align:left;background:#f4f4f5}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.front td:first-child{font-weight:600}.frontier svg{max-width:100%;height:auto}"""


def report_html(run: dict[str, Any]) -> str:
    """The run as one self-contained HTML page: suite and parameters, the frontier plot (inline SVG) and a table
    of every target (accuracy ± 95 % CI, cost, tokens, latency p50/p95, served share, errors)."""
    e = html.escape
    suite = run.get("suite") or {}
    front = {p.label for p in pareto_front(points_of(run.get("targets", [])))}
    head = "".join(f"<th>{e(c)}</th>" for c in COLUMNS)
    body = []
    for row in target_rows(run):
        on_front = row[0] in front
        shown = [row[0] + (" ★" if on_front else ""), *row[1:]]
        cells = "".join(f"<td{'' if i in (0, 9) else ' class=num'}>{e(v)}</td>" for i, v in enumerate(shown))
        body.append(f"<tr{' class=front' if on_front else ''} data-target=\"{e(row[0])}\">{cells}</tr>")
    params = ", ".join(f"{k}={v}" for k, v in (run.get("params") or {}).items() if v is not None)
    licence = f" · licence: {e(suite['license'])}" if suite.get("license") else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Baimo evaluation · {e(str(suite.get('name', '')))}</title>
<style>{CSS}</style></head><body>
<h1>Evaluation: {e(str(suite.get('name', '')))} ({e(str(suite.get('kind', '')))})</h1>
<p class="meta">run {e(str(run.get('run_id', '')))} · {e(str(run.get('status', '')))} · started
{e(str(run.get('created_at', '')))} · {e(str(suite.get('items', '')))} items from
{e(str(suite.get('source', '')))}{licence}
<br>parameters: {e(params) or 'defaults'}</p>
<h2>Cost–quality frontier</h2>
<div class="frontier" data-testid="frontier">{frontier_svg(run)}</div>
<p class="meta">★ on the Pareto front: no other target is both cheaper and more accurate.
Error bars: Wilson 95 % interval.</p>
<h2>Targets</h2>
<table data-testid="targets"><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>
</body></html>
"""


def write_report(run: dict[str, Any], out_dir: Path) -> Path:
    """Write `run.json`, `report.html` and `frontier.png` into `out_dir` (created if missing); returns the path of
    report.html. Raises OSError when the folder cannot be written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "run.json").write_text(json.dumps(run, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    page = out_dir / "report.html"
    page.write_text(report_html(run), encoding="utf-8")
    frontier_png(run, out_dir / "frontier.png")
    return page


__all__ = ["COLUMNS", "Point", "fmt_cost", "frontier_figure", "frontier_svg", "render_table", "report_html",
           "target_rows", "write_report"]
