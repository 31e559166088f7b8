"""`GET /metrics` (Prometheus text format) and the middleware that times every HTTP request.

Requests are labelled by route template (`/text-to-image/v1`, `/v1/jobs/{id}`), never by raw
path, so that a scanner's random URLs cannot grow the label set: whatever matched no route is
`other`.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pixeldrop.metrics import Metrics

router = APIRouter()


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics.registry
    # The replica gauges may ask Ray's controller: not on the event loop.
    return Response(await run_in_threadpool(generate_latest, registry), media_type=CONTENT_TYPE_LATEST)


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
