"""The APIs: the ClipDrop-compatible route, health and metrics, and how their errors look; and the
OpenAI-compatible image routes (openai.py), whose errors look like OpenAI's; and async jobs (jobs.py)."""

from __future__ import annotations

from fastapi import FastAPI

from pixeldrop.settings import Settings

from . import jobs, observability, openai, routes
from .errors import install_error_handlers

__all__ = ["install"]


def install(app: FastAPI, settings: Settings) -> None:
    install_error_handlers(app)
    app.include_router(routes.router)
    app.include_router(jobs.router)  # /v1/jobs: async jobs, ClipDrop-shaped errors
    app.include_router(openai.router(settings))
    app.include_router(observability.router)
