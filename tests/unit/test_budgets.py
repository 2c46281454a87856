"""Budgets (reserve/settle in the real database, SQLite and PostgreSQL, under concurrency) and RPM/TPM limits."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from baimo.config import LimitsConfig, ModelConfig
from baimo.errors import BudgetExceeded, InvalidRequest
from baimo.metering.admission import Admission, estimate
from baimo.metering.budgets import BudgetLedger, Limits, period_end, period_start, persona_limits, to_nano
from baimo.metering.ratelimit import RateLimited, RateLimits, duration
from baimo.metering.usage import Usage, UsageLog
from baimo.store.database import Database
from tests.support.postgres import TempPostgres


@pytest.fixture
def db(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'b.db'}")
    yield database
    database.close()


def test_periods_are_calendar_days_and_months_in_utc() -> None:
    now = datetime(2026, 12, 31, 23, 59, tzinfo=UTC)
    assert period_start("day", now) == datetime(2026, 12, 31, tzinfo=UTC)
    assert period_end("day", now) == datetime(2027, 1, 1, tzinfo=UTC)
    assert period_start("month", now) == datetime(2026, 12, 1, tzinfo=UTC)
    assert period_end("month", now) == datetime(2027, 1, 1, tzinfo=UTC)
    assert period_end("month", datetime(2026, 2, 10, tzinfo=UTC)) == datetime(2026, 3, 1, tzinfo=UTC)


def test_nano_usd_rounds_up_and_durations_read_like_openai() -> None:
    assert to_nano(1e-9) == 1 and to_nano(1.5e-9) == 2 and to_nano(0.1 + 0.2) == 300_000_000
    assert [duration(0.02), duration(1.5), duration(360)] == ["20ms", "1.5s", "6m0s"]


def test_reserve_settle_release_and_the_message(db) -> None:
    ledger = BudgetLedger(db)
    ledger.set_limits("key:k1", budget_usd=1.0, period="day")
    budget = ledger.get_limits(["key:k1"])["key:k1"]
    holds = [ledger.reserve([budget], 0.3) for _ in range(3)]
    with pytest.raises(BudgetExceeded) as exc:
        ledger.reserve([budget], 0.3)
    assert exc.value.status_code == 429 and exc.value.code == "insufficient_quota"
    assert "key k1" in exc.value.message and "daily budget of $1.00" in exc.value.message
    ledger.settle(holds[0], 0.05)  # the real cost was lower: room comes back
    ledger.settle(holds[0], 0.05)  # twice counts once
    ledger.release(holds[1])
    assert ledger.window("key:k1", "day") == pytest.approx((0.05, 0.3))
    ledger.reserve([budget], 0.6)
    with pytest.raises(BudgetExceeded):
        ledger.reserve([budget], 0.06)


def test_a_spent_or_zero_budget_refuses_even_free_requests(db) -> None:
    ledger = BudgetLedger(db)
    zero = ledger.set_limits("persona:p", budget_usd=0.0)
    with pytest.raises(BudgetExceeded):
        ledger.reserve([zero], 0.0)


def test_all_or_none_across_key_and_team(db) -> None:
    ledger = BudgetLedger(db)
    key = ledger.set_limits("key:k", budget_usd=10.0)
    team = ledger.set_limits("team:t", budget_usd=0.5)
    with pytest.raises(BudgetExceeded) as exc:
        ledger.reserve([key, team], 1.0)
    assert "team t" in exc.value.message
    assert ledger.window("key:k", "month") == (0.0, 0.0)  # the key kept nothing


def test_spend_recorded_before_a_budget_counts_and_stale_holds_come_back(db) -> None:
    UsageLog(db).record(Usage(endpoint="chat.completions", api_key_id="k9", cost=0.75))
    ledger = BudgetLedger(db)
    budget = ledger.set_limits("key:k9", budget_usd=1.0)
    held = ledger.reserve([budget], 0.2)  # a replica dies holding this (or its request outlives the hold)
    assert ledger.window("key:k9", "month") == pytest.approx((0.75, 0.2))
    with pytest.raises(BudgetExceeded):
        ledger.reserve([budget], 0.1)
    assert ledger.reclaim(older_than_s=0) == 1
    assert ledger.window("key:k9", "month") == pytest.approx((0.75, 0.0))
    ledger.settle(held, 0.05)  # a late settlement still charges, and gives nothing back twice
    assert ledger.window("key:k9", "month") == pytest.approx((0.8, 0.0))
    ledger.reserve([budget], 0.1)


def test_limits_validation_and_clear(db) -> None:
    ledger = BudgetLedger(db)
    with pytest.raises(InvalidRequest) as exc:
        ledger.set_limits("key:x", period="week")
    assert exc.value.param == "period"
    with pytest.raises(InvalidRequest):
        ledger.set_limits("key:x", rpm=0)
    with pytest.raises(InvalidRequest) as exc:
        ledger.set_limits("key:x", tpm=2**31)  # PostgreSQL's INTEGER column would overflow
    assert exc.value.param == "tpm"
    ledger.set_limits("key:x", rpm=5)
    assert ledger.set_limits("key:x", tpm=100) == Limits("key:x", None, "month", 5, 100)  # rpm kept
    ledger.set_limits("key:x", clear=True)
    assert ledger.get_limits(["key:x"]) == {}


def _race(ledgers: list[BudgetLedger], budget: Limits, cost: float, requests: int) -> int:
    """`requests` threads spread over `ledgers` (one engine each, like replicas) reserve and settle at once."""
    barrier = threading.Barrier(requests)

    def one(i: int) -> bool:
        ledger = ledgers[i % len(ledgers)]
        barrier.wait()
        try:
            hold = ledger.reserve([budget], cost)
        except BudgetExceeded:
            return False
        ledger.settle(hold, cost)
        return True

    with ThreadPoolExecutor(requests) as pool:
        return sum(pool.map(one, range(requests)))


def _race_two_engines(url: str, subject: str, period: str) -> None:
    """Two engines on one database (like two replicas), 50 threads, a $1 budget, $0.03 requests: exactly 33 fit."""
    dbs = [Database(url), Database(url)]
    try:
        ledgers = [BudgetLedger(d) for d in dbs]
        budget = ledgers[0].set_limits(subject, budget_usd=1.0, period=period)
        admitted = _race(ledgers, budget, 0.03, 50)
        spent, reserved = ledgers[1].window(subject, period)
        assert admitted == 33 and spent == pytest.approx(0.99) and reserved == 0
    finally:
        for d in dbs:
            d.close()


def test_fifty_concurrent_reservations_never_overspend_on_sqlite(tmp_path) -> None:
    _race_two_engines(f"sqlite:///{tmp_path / 'race.db'}", "key:race", "day")


def test_fifty_concurrent_reservations_never_overspend_on_postgresql() -> None:
    pg = TempPostgres().start()
    try:
        _race_two_engines(pg.url, "team:race", "month")
    finally:
        pg.stop()


def test_rpm_and_tpm_in_memory() -> None:
    rates = RateLimits()
    key = Limits("key:a", rpm=2, tpm=1000)
    headers = rates.admit([key], 100)
    assert headers["x-ratelimit-limit-requests"] == "2" and headers["x-ratelimit-remaining-requests"] == "1"
    assert headers["x-ratelimit-limit-tokens"] == "1000" and headers["x-ratelimit-remaining-tokens"] == "900"
    rates.admit([key], 100)
    with pytest.raises(RateLimited) as exc:
        rates.admit([key], 100)
    err = exc.value
    assert err.status_code == 429 and err.code == "rate_limit_exceeded" and err.error_type == "requests"
    assert int(err.headers["retry-after"]) >= 1 and err.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(RateLimited) as exc:
        rates.admit([Limits("key:b", tpm=50)], 100)
    assert exc.value.error_type == "tokens" and "Request too large" in exc.value.message
    # a refused token request did not use up a request of the same key
    tight = Limits("key:c", rpm=1, tpm=150)
    with pytest.raises(RateLimited):
        rates.admit([tight], 200)
    assert rates.admit([tight], 100)["x-ratelimit-remaining-requests"] == "0"


def test_the_estimate_prices_the_dearest_reachable_model(db) -> None:
    cheap = ModelConfig(id="c", kind="openai", base_url="http://x", price_input=1, price_output=2)
    dear = ModelConfig(id="d", kind="openai", base_url="http://x", price_input=10, price_output=20,
                       max_output_tokens=100)
    msgs = [{"role": "user", "content": "x" * 298}]  # 3 + 4 + 100 tokens by the conservative estimate
    est = estimate([cheap, dear], msgs, None, 2, reserve_tokens=500)
    assert est.tokens == 107 + 1000  # the cheap model's reserve_tokens, twice (n=2)
    assert est.usd == pytest.approx(max(107 * 1 + 1000 * 2, 107 * 10 + 200 * 20) / 1e6)
    admission = Admission(BudgetLedger(db), RateLimits(), LimitsConfig(key_rpm=7), lambda _t: [cheap])
    limits = admission.limits_for("nokey")
    assert limits == [Limits("key:nokey", None, "month", 7, None)]  # the default RPM of every key


def test_personas_of_two_owners_with_one_name_have_separate_budgets(db) -> None:
    log = UsageLog(db)
    log.record(Usage(endpoint="chat.completions", persona="helper", owner="team:a", cost=0.5))
    log.record(Usage(endpoint="chat.completions", persona="helper", owner="team:b", cost=0.7))
    ledger = BudgetLedger(db)
    mine = persona_limits("helper", "team:a", 1.0)
    assert mine is not None and persona_limits("helper", None, None) is None
    ledger.reserve([mine], 0.1)
    assert ledger.window(mine.subject, "month") == pytest.approx((0.5, 0.1))
    with pytest.raises(BudgetExceeded) as exc:
        ledger.reserve([mine], 0.45)
    assert "persona helper@team:a" in exc.value.message


def test_redis_url_from_the_environment_wins_over_baimo_yaml(monkeypatch) -> None:
    from baimo.config import BaimoConfig, Settings, redis_url

    config = BaimoConfig.model_validate({"redis_url": "redis://yaml:6379/0", "limits": {"strategy": "moving-window"}})
    monkeypatch.delenv("BAIMO_REDIS_URL", raising=False)
    assert redis_url(Settings(), config) == "redis://yaml:6379/0"
    monkeypatch.setenv("BAIMO_REDIS_URL", "redis://env:6379/1")
    assert redis_url(Settings(), config) == "redis://env:6379/1"
    assert redis_url(Settings(), BaimoConfig()) == "redis://env:6379/1"
    monkeypatch.delenv("BAIMO_REDIS_URL")
    assert redis_url(Settings(), BaimoConfig()) is None


@pytest.mark.parametrize("strategy", ["moving-window", "fixed-window"])
def test_the_other_window_strategies_count_the_same_way(strategy: str) -> None:
    rates = RateLimits(strategy)
    key = Limits("key:s", rpm=2, tpm=500)
    assert rates.admit([key], 200)["x-ratelimit-remaining-tokens"] == "300"
    with pytest.raises(RateLimited) as exc:
        rates.admit([key], 400)
    assert exc.value.error_type == "tokens"
    rates.admit([key], 10)
    with pytest.raises(RateLimited):
        rates.admit([key], 10)


def test_an_unreachable_redis_lets_requests_through() -> None:
    from tests.support.server import free_port

    rates = RateLimits(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    assert rates.admit([Limits("key:r", rpm=1)], 10) == {}
    assert rates.admit([Limits("key:r", rpm=1)], 10) == {}
