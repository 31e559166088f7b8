"""How `pixeldrop serve` runs uvicorn: with the limits a server anyone can reach needs.

With uvicorn's defaults a client can hold the server: its httptools parser reads request heads
of any size, nothing times out a head that never ends (the keep-alive timer only runs between
requests) nor a body shorter than its Content-Length, and connections are unlimited. Here, with
every number a setting (settings.py, "Server limits"):

- h11 parses requests, because its `max_incomplete_event_size` bounds the request line and
  headers together (`max_header_bytes`; past it, uvicorn answers 400 and closes);
- a request head must arrive within `header_timeout_seconds` of the connection opening or of the
  previous answer, or the connection is closed; bytes trickling in do not restart that clock;
- a request with more than `max_header_count` headers gets 431;
- past `max_connections` open connections or requests in flight, a request gets 503: uvicorn's
  `limit_concurrency` rule, answered in the API's JSON error shape, with Retry-After;
- the body must arrive within `body_timeout_seconds` of the app starting to read it, or `receive`
  raises BodyTimeout, which the app answers like any domain error (408), on every route.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from pixeldrop.errors import BodyTimeout, PixeldropError, TooManyConnections, TooManyHeaders
from pixeldrop.settings import Settings

from .statuses import headers_for, json_error, status_for


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn.run's keyword arguments that apply the settings' server limits."""
    return {
        "http": functools.partial(LimitedH11Protocol, settings=settings),
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "timeout_keep_alive": settings.keep_alive_seconds,
        "ws": "none",  # no WebSocket routes: an upgrade request stays a plain request, under these limits
    }


class BodyDeadline:
    """An ASGI `receive` that gives the body `seconds` to arrive, counted from the app's first read.

    Once the body is in, it is the server's `receive` again: waiting for a disconnect has no deadline.
    """

    def __init__(self, receive: Receive, seconds: float) -> None:
        self.receive = receive
        self.seconds = seconds
        self.deadline: float | None = None
        self.body_read = False

    async def __call__(self) -> Message:
        if self.body_read:
            return await self.receive()
        if self.deadline is None:
            self.deadline = asyncio.get_running_loop().time() + self.seconds
        try:
            async with asyncio.timeout_at(self.deadline):
                message = await self.receive()
        except TimeoutError:
            raise BodyTimeout(f"The request body did not arrive within {self.seconds:g} s.") from None
        self.body_read = not message.get("more_body", False)
        return message


class LimitedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, with a clock on request heads and pixeldrop's admission checks."""

    def __init__(self, *args: Any, settings: Settings, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings = settings
        self.head_timer: asyncio.TimerHandle | None = None
        self.app = functools.partial(self._admit, self.app)  # every request passes _admit first

    async def _admit(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self._refusal(scope)
        if refusal is None:
            await app(scope, BodyDeadline(receive, self.settings.body_timeout_seconds), send)
            return
        headers = {**headers_for(refusal), "Connection": "close"}
        await json_error(status_for(refusal), refusal.message, headers)(scope, receive, send)

    def _refusal(self, scope: Scope) -> PixeldropError | None:
        limit = self.settings.max_connections  # this connection and this request's task count too
        if len(self.connections) > limit or len(self.tasks) > limit:
            return TooManyConnections("The server has too many connections open; try again shortly.", retry_after=1)
        if len(scope["headers"]) > self.settings.max_header_count:
            return TooManyHeaders(f"The request has more than {self.settings.max_header_count} headers.")
        return None

    # The head clock runs while a request head is awaited: from the connection opening, and from
    # each answer until the next head is in.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_clock()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._answering():
            self._stop_head_clock()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self._answering():  # else a pipelined request's head was already in
            self._start_head_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_clock()
        super().connection_lost(exc)

    def _answering(self) -> bool:
        """Whether a request's head is in and its answer not finished."""
        return self.cycle is not None and not self.cycle.response_complete

    def _start_head_clock(self) -> None:
        self._stop_head_clock()
        if not self.transport.is_closing():
            self.head_timer = self.loop.call_later(self.settings.header_timeout_seconds, self.transport.close)

    def _stop_head_clock(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None
