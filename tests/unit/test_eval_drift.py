"""Drift watch pieces without a server: the built-in canary suite, the period parser, and the drop decision."""

from __future__ import annotations

import pytest

from baimo.errors import InvalidRequest
from baimo.evaluation.drift import check, every_seconds
from baimo.evaluation.suites import load_suite
from tests.support.eval_runs import make_run


def test_builtin_canary_has_twenty_numeric_items_with_distinct_questions() -> None:
    suite = load_suite("canary")
    assert (suite.name, suite.kind, len(suite.items)) == ("canary", "numeric", 20)
    assert len({i["question"] for i in suite.items}) == 20 and len({i["id"] for i in suite.items}) == 20
    assert any("\u4e00" <= ch <= "\u9fff" for i in suite.items for ch in i["question"])  # Chinese items too


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800), ("24h", 86400), ("7d", 604800), ("2w", 1209600)])
def test_every_reads_periods(text: str, seconds: int) -> None:
    assert every_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "0h", "24", "1y", "h", "-1d"])
def test_every_refuses_other_text_naming_the_option(text: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        every_seconds(text)
    assert exc.value.param == "every" and "30m, 24h, 7d or 2w" in exc.value.message


def test_a_drop_needs_significance_and_a_fall() -> None:
    before = make_run({"remote/m": [True] * 20}, run_id="before")
    assert not check("remote/m", before, None).dropped  # a first run has nothing to drop from
    fell = check("remote/m", make_run({"remote/m": [True] * 12 + [False] * 8}, run_id="now"), before)
    assert fell.dropped and (fell.lost, fell.gained, fell.previous_run_id) == (8, 0, "before")
    assert fell.p_value == pytest.approx(2 * 0.5 ** 8)
    wobble = check("remote/m", make_run({"remote/m": [True] * 17 + [False] * 3}, run_id="now"), before)
    assert not wobble.dropped and wobble.p_value == pytest.approx(0.25)  # 3 of 20 lost: p = 0.25, not flagged
    rose = check("remote/m", before, make_run({"remote/m": [False] * 20}, run_id="bad"))
    assert not rose.dropped and rose.gained == 20  # a significant rise is not a drop


def test_one_process_per_home_runs_the_watch(tmp_path) -> None:
    from baimo.evaluation.drift import _only_process

    first = _only_process(tmp_path / "run" / "canary.lock")
    assert first is not None
    assert _only_process(tmp_path / "run" / "canary.lock") is None  # another worker: skips
    first.close()
    again = _only_process(tmp_path / "run" / "canary.lock")
    assert again is not None
    again.close()
