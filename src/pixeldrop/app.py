"""The application, assembled at the top: settings, services (database, limiter, generation
engine, paid path), the request timer, and the routers of each surface: the ClipDrop API
(`api/`), the account pages and playground (`web/`). The lifespan owns the engine."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from datetime import timedelta

from fastapi import FastAPI

from pixeldrop import api, idempotency, images_store, web
from pixeldrop.generation import Generator, start_engine
from pixeldrop.http.metrics import RequestTimer
from pixeldrop.http.services import Services
from pixeldrop.jobs import JobRunner
from pixeldrop.metrics import Metrics
from pixeldrop.paid_generation import PaidGeneration
from pixeldrop.periodic import SWEEP_SECONDS, every
from pixeldrop.ratelimit import RateLimiter
from pixeldrop.settings import Settings
from pixeldrop.storage import Database


def create_app(settings: Settings, generator: Generator | None = None, db: Database | None = None) -> FastAPI:
    """The app. `generator` and `db` may be given (tests, embedding); otherwise built from settings."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        database = db if db is not None else await asyncio.to_thread(
            Database.open, settings.resolved_database_url, settings.database_busy_timeout_seconds)
        engine = await asyncio.to_thread(start_engine, settings, generator, metrics)
        metrics.watch(lambda: engine.queued, engine.replicas, lambda: engine.images_made)
        paid = PaidGeneration(database, engine, settings.credits_per_image, settings.generation_deadline_seconds,
                              timedelta(seconds=settings.stale_reservation_seconds), metrics,
                              store_prompts=settings.store_prompts)
        jobs = JobRunner(database, engine, settings, metrics)
        app.state.services = Services(settings, database, RateLimiter(settings.redis_url), engine, paid, metrics,
                                      jobs)
        await paid.sweep()
        await jobs.start()  # queued jobs (/v1/jobs) are made here, unless the run_jobs setting is off
        # Refunds that failed retried, dead processes' reservations refunded, and expired images
        # (the OpenAI route's URLs) and idempotency keys deleted.
        janitor = asyncio.create_task(every(SWEEP_SECONDS, "sweep reservations", paid.sweep))
        image_sweeper = asyncio.create_task(every(
            SWEEP_SECONDS, "delete expired images",
            functools.partial(asyncio.to_thread, images_store.delete_expired, database)))
        key_sweeper = asyncio.create_task(every(
            SWEEP_SECONDS, "forget expired idempotency keys",
            functools.partial(asyncio.to_thread, idempotency.forget_expired, database,
                              timedelta(seconds=settings.stale_reservation_seconds))))
        try:
            yield
        finally:
            janitor.cancel()
            image_sweeper.cancel()
            key_sweeper.cancel()
            await jobs.stop()  # before the engine: the jobs it was making go back to the queue
            await asyncio.to_thread(engine.stop)
            if db is None:
                database.close()

    app = FastAPI(
        title="pixeldrop",
        summary="Self-hosted text-to-image API, compatible with ClipDrop's text-to-image v1.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None, redoc_url=None,  # web/docs.py serves them, with their assets, without a CDN
    )
    metrics = Metrics()
    app.add_middleware(RequestTimer, metrics=metrics)
    api.install(app, settings)  # the ClipDrop and OpenAI routes, health, metrics, and their error shapes
    web.install(app, settings)  # the account pages, the playground and Stripe's webhook
    return app
