"""The ClipDrop-compatible API: its route, health and metrics, and how its errors look."""

from __future__ import annotations

from fastapi import FastAPI

from . import observability, routes
from .errors import install_error_handlers

__all__ = ["install"]


def install(app: FastAPI) -> None:
    install_error_handlers(app)
    app.include_router(routes.router)
    app.include_router(observability.router)
