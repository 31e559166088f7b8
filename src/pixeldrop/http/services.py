"""What the routes need, built once per app: settings, database, limiter, generation engine, paid
path, metrics, job runner. Endpoints take them as a typed dependency (`services: ServicesDep`);
helpers that already hold the request use `Services.of(request)`, the same accessor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from starlette.requests import Request

from pixeldrop.generation import Engine
from pixeldrop.jobs import JobRunner
from pixeldrop.metrics import Metrics
from pixeldrop.paid_generation import PaidGeneration
from pixeldrop.ratelimit import RateLimiter
from pixeldrop.settings import Settings
from pixeldrop.storage import Database


@dataclass
class Services:
    settings: Settings
    db: Database
    limiter: RateLimiter
    engine: Engine
    paid: PaidGeneration
    metrics: Metrics
    jobs: JobRunner

    @staticmethod
    def of(request: Request) -> Services:
        return request.app.state.services


ServicesDep = Annotated[Services, Depends(Services.of)]
