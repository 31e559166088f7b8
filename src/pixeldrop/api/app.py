"""The FastAPI application: built from settings, with a lifespan that owns the worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from fastapi import FastAPI

from pixeldrop import web
from pixeldrop.accounts import credits
from pixeldrop.generation import Generator, GenerationWorker, load_generator
from pixeldrop.ratelimit import RateLimiter
from pixeldrop.settings import Settings
from pixeldrop.storage import Database

from .errors import install_error_handlers
from .routes import router
from .services import Services

log = logging.getLogger(__name__)


async def _refund_stale(db: Database, age: timedelta) -> None:
    """Give back reservations of processes that died mid-generation."""
    refunded = await asyncio.to_thread(credits.refund_stale, db, age)
    if refunded:
        log.warning("refunded %d reservations left by a crashed process", refunded)


async def _refund_stale_every_minute(db: Database, age: timedelta) -> None:
    while True:
        await asyncio.sleep(60)
        await _refund_stale(db, age)


def create_app(settings: Settings, generator: Generator | None = None, db: Database | None = None) -> FastAPI:
    """The app. `generator` and `db` may be given (tests, embedding); otherwise built from settings."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        database = db or await asyncio.to_thread(Database.open, settings.resolved_database_url)
        model = generator or await asyncio.to_thread(load_generator, settings)
        if settings.warm_up:
            await asyncio.to_thread(model.generate, ["warm-up"], [0])
        worker = GenerationWorker(model, settings.queue_size, settings.max_batch, settings.batch_wait_ms).start()
        app.state.services = Services(settings, database, RateLimiter(settings.redis_url), worker)
        stale_age = timedelta(seconds=settings.stale_reservation_seconds)
        await _refund_stale(database, stale_age)
        janitor = asyncio.create_task(_refund_stale_every_minute(database, stale_age))
        try:
            yield
        finally:
            janitor.cancel()
            await asyncio.to_thread(worker.stop)
            if db is None:
                database.close()

    app = FastAPI(
        title="pixeldrop",
        summary="Self-hosted text-to-image API, compatible with ClipDrop's text-to-image v1.",
        version="0.1.0",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(router)
    web.install(app, settings)  # the account pages, the playground and Stripe's webhook
    return app
