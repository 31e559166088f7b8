"""The middleware that times every HTTP request, for `pixeldrop_http_request_duration_seconds`.

Requests are labelled by route template (`/text-to-image/v1`, `/v1/jobs/{id}`), never by raw
path, so that a scanner's random URLs cannot grow the label set: whatever matched no route is
`other`.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pixeldrop.metrics import Metrics


class RequestTimer:
    """Pure ASGI (no BaseHTTPMiddleware), so that it never buffers or reorders a response."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            route = getattr(scope.get("route"), "path", "other")
            self.metrics.request_duration.labels(route, str(status)).observe(time.perf_counter() - started)
