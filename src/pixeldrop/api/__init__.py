"""The HTTP API: routes, content negotiation, and the mapping of domain errors to HTTP."""

from .app import create_app

__all__ = ["create_app"]
