"""Stop work for a client that has gone: a request whose client disconnects while Baimo waits for a model's first
token is cancelled at once (the model call included) instead of running on to an answer nobody reads."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

T = TypeVar("T")


class ClientGone(Exception):
    """The client closed the connection before the response began; answered as 499 (nobody reads it)."""


async def _disconnected(request: Request) -> None:
    """Return when the ASGI server reports `http.disconnect`. Called after the body was read, so the next
    message can only be the disconnect (the server parks `receive()` until then)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def unless_client_leaves(request: Request, work: Awaitable[T]) -> T:
    """`await work`, unless the client disconnects first: then `work` is cancelled (its own clean-up runs, e.g.
    the usage row of a request abandoned before its first token) and ClientGone is raised."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):  # failing as it is cancelled: the client is gone
        await task
    raise ClientGone("the client closed the connection before the first token")
