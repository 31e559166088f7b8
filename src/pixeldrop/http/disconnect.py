"""Noticing a client that hangs up while its image is being made.

Starlette does not cancel a handler when its client disconnects: without this, an image would be
made, and charged, for nobody. `until_disconnected` runs the handler's paid work beside a task
that waits on the ASGI `receive` channel (after the body has been read, the next message a
server sends is `http.disconnect`), and cancels the work when the client goes first; the paid
block then refunds it, and a job still queued never reaches the model.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

from starlette.requests import Request

from pixeldrop.errors import ClientGone

T = TypeVar("T")


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def until_disconnected(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """`work`'s result, or ClientGone once `work` has been cancelled because the client left."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task  # its refund runs to the end
    if task.cancelled():
        raise ClientGone("The client hung up before the image was ready; nothing was charged.")
    return task.result()
