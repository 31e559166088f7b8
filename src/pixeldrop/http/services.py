"""What the routes need, built once per app: settings, database, limiter, generation engine, paid
path, metrics, job runner. Endpoints take them as a typed dependency (`services: ServicesDep`);
helpers that already hold the request use `Services.of(request)`, the same accessor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from starlette.requests import Request

from pixeldrop.accounts import KeyInfo
from pixeldrop.generation import Engine
from pixeldrop.jobs import JobRunner
from pixeldrop.metrics import Metrics
from pixeldrop.paid_generation import PaidGeneration
from pixeldrop.ratelimit import Quota, RateLimiter
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

    def key_quota(self, key: KeyInfo) -> Quota:
        """Count one request against the key's per-minute limit (its own, else the server's), or
        raise RateLimited: what every API route does first."""
        return self.limiter.hit(key.id, key.rate_limit_per_minute or self.settings.rate_limit_per_minute)


def base_url(request: Request) -> str:
    """Where users reach this server: the configured public URL, else the one this request came by
    (links in API answers, pages and mails)."""
    return (Services.of(request).settings.public_url or str(request.base_url)).rstrip("/")


ServicesDep = Annotated[Services, Depends(Services.of)]
