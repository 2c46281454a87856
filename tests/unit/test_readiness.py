"""Readiness waits for start-up loads (the personal-data detector): /readyz's `warming` list."""

import asyncio
from types import SimpleNamespace

from baimo.api.state import AppState


def test_still_warming_lists_unfinished_loads_only() -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        gate = asyncio.Event()
        slow = asyncio.create_task(gate.wait())
        done = asyncio.create_task(asyncio.sleep(0))
        await done
        state = SimpleNamespace(warming={"privacy": slow, "other": done})
        before = AppState.still_warming(state)
        gate.set()
        await slow
        return before, AppState.still_warming(state)

    before, after = asyncio.run(scenario())
    assert before == ["privacy"]
    assert after == []
