"""Reports of a hand-made run: the terminal table, the self-contained HTML page with its frontier SVG, the PNG."""

from __future__ import annotations

import json
import re
from pathlib import Path

from rich.console import Console

from baimo.evaluation.report import render_table, report_html, write_report
from tests.support.eval_runs import make_run

# local/small is free but weak, remote/strong dear and strong, remote/meh dear and weak (dominated),
# baimo/auto's sweep sits between them: λ=1 is on the front (cheaper than strong, better than small)
RUN = make_run(
    {"local/small": [True] * 6 + [False] * 14, "remote/strong": [True] * 19 + [False],
     "remote/meh": [True] * 8 + [False] * 12, "auto@0": [True] * 5 + [False] * 15,
     "auto@1": [True] * 16 + [False] * 4, "auto@10": [True] * 19 + [False]},
    cost_per_item={"remote/strong": 0.01, "remote/meh": 0.012, "auto@1": 0.004, "auto@10": 0.011},
    sweep={"auto@0": ("baimo/auto", 0.0), "auto@1": ("baimo/auto", 1.0), "auto@10": ("baimo/auto", 10.0)},
    served={"auto@1": {"local/small": 0.6, "remote/strong": 0.4}})


def test_write_report_writes_json_html_and_png(tmp_path: Path) -> None:
    page = write_report(RUN, tmp_path / "out")
    assert page == tmp_path / "out" / "report.html"
    assert json.loads((tmp_path / "out" / "run.json").read_text()) == RUN
    assert (tmp_path / "out" / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_html_is_self_contained_with_the_frontier_marked_and_named() -> None:
    page = report_html(RUN)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched from the network
    assert "<script" not in page
    svg = page[page.index("<svg"):page.index("</svg>")]
    assert 'id="pareto-front"' in svg and 'id="sweep:baimo/auto"' in svg
    for name in ("local/small", "remote/strong", "remote/meh"):
        assert f'id="target:{name}"' in svg  # each model a point with its error bar
    front_names = re.findall(r"★ ([^<]+)<", svg)
    assert sorted(front_names) == ["baimo/auto λ=1", "local/small", "remote/strong"]
    rows = re.findall(r'<tr( class=front)? data-target="([^"]+)"', page)
    assert {name for mark, name in rows if mark} == {"local/small", "remote/strong", "baimo/auto λ=1"}
    assert len(rows) == 6
    assert "95.0 % [76.4, 99.1]" in page  # 19/20 with its Wilson interval
    assert "local/small 60 %, remote/strong 40 %" in page


def test_terminal_table_has_a_row_per_target_and_stars_the_front() -> None:
    console = Console(record=True, width=250)
    console.print(render_table(RUN))
    text = console.export_text()
    assert "remote/strong ★" in text and "remote/meh ★" not in text and "remote/meh" in text
    assert "30.0 % [14.5, 51.9]" in text  # 6/20
    assert text.count("★") == 3


def test_targets_on_the_same_point_share_one_label() -> None:
    run = make_run({"remote/strong": [True] * 4, "a@0": [True] * 4, "a@0.5": [True] * 4, "local/x": [False] * 4},
                   cost_per_item={"remote/strong": 0.01, "a@0": 0.01, "a@0.5": 0.01},
                   sweep={"a@0": ("baimo/auto", 0.0), "a@0.5": ("baimo/auto", 0.5)})
    page = report_html(run)
    svg = page[page.index("<svg"):page.index("</svg>")]
    assert re.findall(r"★ ([^<]+)<", svg) == ["local/x", "baimo/auto λ=0, 0.5", "remote/strong"]
    assert svg.count(">λ=0, 0.5<") == 1  # the sweep's tied λs: one annotation
