"""Budgets in USD per calendar day or month (UTC) that hold under concurrency and across replicas.

A subject is "key:<id>", "team:<id>" or "persona:<name>[@<owner>]" (persona names are unique per owner). Each
has at most one budget (`limits` table, with its RPM and TPM: baimo/metering/ratelimit.py); what it spent and holds
reserved in a period is one `budget_windows` row, in nano-USD integers (1e-9 USD, so sums are exact; costs are
rounded up to whole nano-USD).

Admission reserves an upper estimate of a request's cost in every budget it is under, with one conditional UPDATE
per budget in one transaction:

    UPDATE budget_windows SET reserved = reserved + :x
     WHERE subject = :s AND period_start = :p AND spent + reserved + :x <= :limit AND spent + reserved < :limit

The database makes these atomic: SQLite serialises writers; PostgreSQL re-checks the WHERE clause against the row a
concurrent transaction just committed (READ COMMITTED's re-evaluation of updated rows), so two replicas cannot both
take the last dollar. When any budget refuses, the transaction rolls back and no budget keeps a reservation. On
completion the reservation is settled to the real cost (`reserved -= x, spent += cost`), or released on failure.
Each hold is also a `budget_reservations` row, so holds of a replica killed mid-request are given back once they are
older than any request can run (RESERVATION_TTL_S).
As long as estimates are upper bounds, spend never passes the budget; a request whose real cost exceeds its estimate
(a model's count above Baimo's conservative estimate) overspends by at most that difference.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from baimo.errors import BudgetExceeded, InvalidRequest, NotFound
from baimo.store.database import Database
from baimo.store.tables import BudgetReservation, BudgetWindow, Limit, UsageRecord, new_id, utcnow

Period = Literal["day", "month"]
PERIODS: tuple[str, ...] = ("day", "month")
NANO = 1_000_000_000  # nano-USD per USD
LIMITS_TTL_S = 1.0    # how long a replica trusts its copy of a subject's limits (changes reach all within this)
MAX_RATE = 2**31 - 1  # rpm and tpm are 32-bit integer columns (PostgreSQL's INTEGER)
RESERVATION_TTL_S = 1800.0  # a hold older than this belongs to a request that cannot still be running
RECLAIM_EVERY_S = 60.0      # how often a replica looks for such holds (on its next reservation)


def to_nano(usd: float) -> int:
    """USD -> whole nano-USD, rounded up (a reservation or a charge never comes out smaller than the cost)."""
    return max(0, math.ceil(round(usd * NANO, 3)))


def period_start(period: str, now: datetime | None = None) -> datetime:
    """The start (UTC midnight) of the calendar day or month containing `now`."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return day if period == "day" else day.replace(day=1)


def period_end(period: str, now: datetime | None = None) -> datetime:
    """When the period containing `now` ends (the next one starts), UTC."""
    start = period_start(period, now)
    if period == "day":
        return start + timedelta(days=1)
    return (start + timedelta(days=32)).replace(day=1)


def subject_label(subject: str) -> str:
    """'key:ab12' -> "key ab12", for messages."""
    kind, _, name = subject.partition(":")
    return f"{kind} {name}"


_W, _R = BudgetWindow.__table__.c, BudgetReservation.__table__.c
# Built once (SQLAlchemy then compiles each once per dialect); executed on a Core connection, without the ORM.
_RESERVE = (update(BudgetWindow.__table__)
            .where(_W.subject == bindparam("s"), _W.period_start == bindparam("p"),
                   _W.spent + _W.reserved + bindparam("x") <= bindparam("limit"),
                   _W.spent + _W.reserved < bindparam("limit"))
            .values(reserved=_W.reserved + bindparam("x")))
_HOLD = insert(BudgetReservation.__table__)
_UNHOLD = (delete(BudgetReservation.__table__).where(_R.id == bindparam("rid"))
           .returning(_R.subject, _R.period_start, _R.amount))
_SETTLE = (update(BudgetWindow.__table__).where(_W.subject == bindparam("s"), _W.period_start == bindparam("p"))
           .values(reserved=_W.reserved - bindparam("back"), spent=_W.spent + bindparam("charge")))


@dataclass(frozen=True)
class Limits:
    """One subject's budget (USD per `period`, None: none) and rate limits (None: none)."""

    subject: str
    budget_usd: float | None = None
    period: str = "month"
    rpm: int | None = None
    tpm: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {"budget_usd": self.budget_usd, "period": self.period, "rpm": self.rpm, "tpm": self.tpm}


@dataclass
class Reservation:
    """One request's holds (budget_reservations row ids, one per budget); settled or released exactly once."""

    ids: list[str] = field(default_factory=list)
    windows: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (subject, period start)
    done: bool = False


class BudgetLedger:
    """Limits per subject and the spend/reservation rows, in the shared database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._cache: dict[str, tuple[float, Limits | None]] = {}
        self._known_windows: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._reclaimed_at = 0.0

    # ---- limits -----------------------------------------------------------------------------------------------
    def set_limits(self, subject: str, *, budget_usd: float | None = None, period: str | None = None,
                   rpm: int | None = None, tpm: int | None = None, clear: bool = False) -> Limits:
        """Create or change a subject's limits; arguments left None keep their value (`clear`: remove them all).
        Raises InvalidRequest (param budget/period/rpm/tpm) for negative or unknown values."""
        validate_limits(budget_usd, period, rpm, tpm)
        with self.db.session() as s:
            row = s.get(Limit, subject)
            if clear:
                if row is not None:
                    s.delete(row)
                self._cache.pop(subject, None)
                return Limits(subject)
            if row is None:
                row = Limit(subject=subject, budget_period="month")
                s.add(row)
            if budget_usd is not None:
                row.budget_usd = budget_usd
            if period is not None:
                row.budget_period = period
            if rpm is not None:
                row.rpm = rpm
            if tpm is not None:
                row.tpm = tpm
            row.updated_at = utcnow()
            s.flush()
            limits = _limits(row)
        self._cache.pop(subject, None)
        return limits

    def get_limits(self, subjects: list[str]) -> dict[str, Limits]:
        """The limits of those subjects that have any (cached for LIMITS_TTL_S seconds per replica)."""
        now = time.monotonic()
        out: dict[str, Limits] = {}
        missing = []
        for subj in subjects:
            hit = self._cache.get(subj)
            if hit is not None and now - hit[0] < LIMITS_TTL_S:
                if hit[1] is not None:
                    out[subj] = hit[1]
            else:
                missing.append(subj)
        if missing:
            with self.db.session() as s:
                rows = {r.subject: _limits(r) for r in s.scalars(select(Limit).where(Limit.subject.in_(missing)))}
            for subj in missing:
                self._cache[subj] = (now, rows.get(subj))
                if subj in rows:
                    out[subj] = rows[subj]
        return out

    def all_limits(self) -> dict[str, Limits]:
        with self.db.session() as s:
            return {r.subject: _limits(r) for r in s.scalars(select(Limit))}

    # ---- spend ------------------------------------------------------------------------------------------------
    def _seed(self, subject: str, start: datetime) -> int:
        """Spend already recorded in usage for a subject since `start` (a budget set mid-period counts it)."""
        kind, _, ident = subject.partition(":")
        since = UsageRecord.created_at >= start
        with self.db.session() as s:
            if kind == "persona":  # "name" (the local user's) or "name@owner": names are unique per owner
                name, _, owner = ident.partition("@")
                where = [UsageRecord.persona == name,
                         UsageRecord.owner == owner if owner else UsageRecord.owner.is_(None)]
            elif kind in ("key", "team"):
                where = [(UsageRecord.api_key_id if kind == "key" else UsageRecord.team_id) == ident]
            else:
                return 0
            total = s.scalar(select(func.sum(UsageRecord.cost)).where(since, *where))
        return to_nano(float(total or 0.0))

    def _ensure_window(self, subject: str, start: datetime) -> str:
        key = start.date().isoformat()
        if (subject, key) in self._known_windows:
            return key
        with self.db.session() as s:
            exists = s.get(BudgetWindow, (subject, key)) is not None
        if not exists:
            seed = self._seed(subject, start)
            dialect = postgresql if self.db.engine.dialect.name == "postgresql" else sqlite
            stmt = dialect.insert(BudgetWindow).values(subject=subject, period_start=key, spent=seed, reserved=0)
            with self.db.session() as s:
                s.execute(stmt.on_conflict_do_nothing(index_elements=["subject", "period_start"]))
        self._known_windows.add((subject, key))
        return key

    def reserve(self, budgets: list[Limits], usd: float, now: datetime | None = None) -> Reservation:
        """Reserve `usd` (an upper estimate) in every one of these budgets, all or none.

        Raises BudgetExceeded (429 insufficient_quota) naming the first budget that has no room."""
        amount = to_nano(usd)
        keys = [(b, self._ensure_window(b.subject, period_start(b.period, now))) for b in budgets
                if b.budget_usd is not None]
        reservation = Reservation()
        if not keys:
            return reservation
        self._reclaim_now_and_then()
        refused: Limits | None = None
        with self.db.engine.connect() as conn, conn.begin() as tx:
            for b, key in keys:
                limit = to_nano(b.budget_usd or 0.0)
                if conn.execute(_RESERVE, {"s": b.subject, "p": key, "x": amount, "limit": limit}).rowcount != 1:
                    refused = b
                    tx.rollback()
                    reservation.ids.clear()
                    break
                rid = new_id()
                conn.execute(_HOLD, {"id": rid, "subject": b.subject, "period_start": key, "amount": amount,
                                     "created_at": utcnow()})
                reservation.ids.append(rid)
                reservation.windows[rid] = (b.subject, key)
        if refused is not None:
            spent, reserved = self.window(refused.subject, refused.period, now)
            raise BudgetExceeded(
                f"{subject_label(refused.subject)} has no room left in its {_per(refused.period)} budget of "
                f"${refused.budget_usd:.2f} (spent ${spent:.4f}, ${reserved:.4f} reserved by requests in flight; "
                f"this request may cost up to ${usd:.4f}). It resets at "
                f"{period_end(refused.period, now).strftime('%Y-%m-%d %H:%M')} UTC.", param="model",
                headers={"x-should-retry": "false"})  # the official SDKs would otherwise retry a 429
        return reservation

    def settle(self, reservation: Reservation, usd: float) -> None:
        """Replace the reservation by the real cost `usd` in each budget it was taken from (once; later calls
        do nothing). A reservation already reclaimed as stale is charged all the same."""
        self._finish(reservation, to_nano(usd))

    def release(self, reservation: Reservation) -> None:
        """Give the reservation back without charging (the request failed before the model answered)."""
        self._finish(reservation, 0)

    def _finish(self, reservation: Reservation, charge: int) -> None:
        with self._lock:
            if reservation.done:
                return
            reservation.done = True
        for rid in reservation.ids:
            self._drop(rid, charge, reservation.windows.get(rid))

    def _drop(self, rid: str, charge: int, window: tuple[str, str] | None = None) -> None:
        """Delete one reservation row and move its amount out of `reserved` (only the deleter does, so a settle
        racing the reclaimer cannot give it back twice), charging `charge` nano-USD to its window."""
        with self.db.engine.begin() as conn:
            gone = conn.execute(_UNHOLD, {"rid": rid}).first()
            if gone is None:  # reclaimed meanwhile: the charge still counts, the hold is already back
                if charge and window is not None:
                    conn.execute(_SETTLE, {"s": window[0], "p": window[1], "back": 0, "charge": charge})
                return
            subject, key, amount = gone
            conn.execute(_SETTLE, {"s": subject, "p": key, "back": amount, "charge": charge})

    def reclaim(self, older_than_s: float = RESERVATION_TTL_S) -> int:
        """Give back reservations older than any request can run (their replica died); returns how many."""
        cutoff = utcnow() - timedelta(seconds=older_than_s)
        with self.db.session() as s:
            stale = list(s.scalars(select(BudgetReservation.id).where(BudgetReservation.created_at < cutoff)))
        for rid in stale:
            self._drop(rid, 0)
        return len(stale)

    def _reclaim_now_and_then(self) -> None:
        now = time.monotonic()
        if now - self._reclaimed_at > RECLAIM_EVERY_S:
            self._reclaimed_at = now
            self.reclaim()

    def window(self, subject: str, period: str, now: datetime | None = None) -> tuple[float, float]:
        """(spent, reserved) in USD of a subject in the current period (0, 0 before its first request)."""
        key = period_start(period, now).date().isoformat()
        with self.db.session() as s:
            row = s.get(BudgetWindow, (subject, key))
            return (row.spent / NANO, row.reserved / NANO) if row is not None else (0.0, 0.0)

    def describe(self, subject: str) -> dict[str, object] | None:
        """A subject's limits with this period's spend (for `keys list` and /api/keys), None without limits."""
        limits = self.get_limits([subject]).get(subject)
        if limits is None:
            return None
        spent, reserved = self.window(subject, limits.period)
        return {**limits.as_dict(), "spent_usd": round(spent, 9), "reserved_usd": round(reserved, 9)}


def persona_limits(name: str, owner: str | None, budget_usd: float | None) -> Limits | None:
    """A persona's monthly budget as a subject's limits (None without a budget)."""
    if budget_usd is None:
        return None
    return Limits(f"persona:{name}" + (f"@{owner}" if owner else ""), budget_usd, "month")


def validate_limits(budget_usd: float | None = None, period: str | None = None, rpm: int | None = None,
                    tpm: int | None = None) -> None:
    """Raise InvalidRequest (param budget, period, rpm or tpm) for a negative budget, an unknown period or a rate
    outside 1..MAX_RATE; None values pass."""
    if budget_usd is not None and budget_usd < 0:
        raise InvalidRequest("budget must not be negative", param="budget")
    if period is not None and period not in PERIODS:
        raise InvalidRequest(f"period must be day or month, not {period!r}", param="period")
    for name, value in (("rpm", rpm), ("tpm", tpm)):
        if value is not None and not 1 <= value <= MAX_RATE:
            raise InvalidRequest(f"{name} must be between 1 and {MAX_RATE}", param=name)


def _limits(row: Limit) -> Limits:
    return Limits(row.subject, row.budget_usd, row.budget_period or "month", row.rpm, row.tpm)


def _per(period: str) -> str:
    return "daily" if period == "day" else "monthly"


def require_subject(kind: str, value: str | None) -> str:
    """'key' + id -> "key:<id>"; raises NotFound for an empty id."""
    if not value:
        raise NotFound(f"no {kind} given", param=kind)
    return f"{kind}:{value}"
