"""What the routes need, built once per app: settings, database, limiter, generation engine, paid path."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from pixeldrop.generation import Engine
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

    @staticmethod
    def of(request: Request) -> Services:
        return request.app.state.services
