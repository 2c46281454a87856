"""What keys and tenancy cost per request (issue 11 §1): resolving the caller, and owner-filtered lists.

1. Resolving `Authorization: Bearer` to a Principal (baimo/metering/keys.py) on a real SQLite database with
   `--keys` keys: auth off (the baseline: no lookup), a key found in the 1.5 s cache, and a key looked up in the
   database every time (the cache disabled: what each replica pays once per key per 1.5 s).
2. Listing conversations, newest first, 50 a page, from `--rows` conversations spread over `--owners` owners:
   unfiltered (the local user / an admin: the baseline) against one owner's page (WHERE owner = ..., served by
   ix_conversations_owner_updated).
Both run in alternating rounds so that machine load drifts into every variant alike; the table gives the median
per call and the ratio to the baseline measured in the same run.

    .venv/bin/python bench/tenancy.py                        # 2,000 keys, 20,000 conversations, 40 owners
    .venv/bin/python bench/tenancy.py --keys 200 --rows 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table  # noqa: E402


def timed(fn: Callable[[], object], n: int) -> float:
    """Median seconds per call over n calls."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=2000)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--owners", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=300, help="calls per variant per round")
    args = ap.parse_args()

    from sqlalchemy import insert

    from baimo.metering import keys as keys_module
    from baimo.metering.keys import KeyStore
    from baimo.metering.principal import LOCAL, Principal
    from baimo.store.conversations import ConversationStore
    from baimo.store.database import Database
    from baimo.store.tables import Conversation, new_id, utcnow

    home = Path(tempfile.mkdtemp(prefix="baimo-bench-tenancy-"))
    db = Database(f"sqlite:///{home / 'baimo.db'}")
    off = KeyStore(Database(f"sqlite:///{home / 'empty.db'}"))
    store = KeyStore(db)
    secrets_ = [store.create(f"k{i}", team=f"t{i % args.owners}")[1] for i in range(args.keys)]
    header = f"Bearer {secrets_[len(secrets_) // 2]}"
    owners = [Principal(key_id="x", user="u", team_id=f"team{i}") for i in range(args.owners)]
    with db.session() as s:
        s.execute(insert(Conversation), [{"id": new_id(), "title": f"c{i}", "owner": owners[i % args.owners].owner,
                                          "created_at": utcnow(), "updated_at": utcnow()} for i in range(args.rows)])
    conversations = ConversationStore(db)

    def uncached() -> object:
        store._resolved.clear()
        return store.resolve(header)

    variants: dict[str, Callable[[], object]] = {
        "resolve: auth off": lambda: off.resolve(None),
        "resolve: key, cached": lambda: store.resolve(header),
        "resolve: key, database": uncached,
        "list: unfiltered": lambda: conversations.list(limit=50, who=LOCAL),
        "list: one owner": lambda: conversations.list(limit=50, who=owners[7]),
    }
    assert keys_module.PRINCIPAL_TTL_S > 0
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, fn in variants.items():
            results[name].append(timed(fn, args.calls))
    med = {name: statistics.median(v) for name, v in results.items()}
    rows = []
    for name in variants:
        base = med["resolve: auth off"] if name.startswith("resolve") else med["list: unfiltered"]
        rows.append([name, f"{med[name] * 1e6:.1f}", f"{med[name] / base:.2f}x"])
    print_table(f"Keys and tenancy: median per call ({args.keys} keys, {args.rows} conversations over "
                f"{args.owners} owners, {args.rounds} rounds x {args.calls} calls)", ["variant", "µs", "ratio"], rows,
                ["ratios: resolve rows against 'auth off', list rows against 'unfiltered', same run"])


if __name__ == "__main__":
    main()
