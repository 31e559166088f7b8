"""The ClipDrop API's typed dependencies: the API key from `x-api-key` (missing: 401; unknown or
revoked: 403, the same answer either way)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from pixeldrop import accounts
from pixeldrop.accounts import KeyInfo
from pixeldrop.errors import MissingApiKey
from pixeldrop.http.services import ServicesDep


async def api_key(request: Request, services: ServicesDep) -> KeyInfo:
    # Read from the request, not declared as a Header(): the route's OpenAPI names it itself.
    presented = request.headers.get("x-api-key")
    if not presented:
        raise MissingApiKey("No api key provided.")
    return await run_in_threadpool(accounts.verify_key, services.db, presented)


ApiKeyDep = Annotated[KeyInfo, Depends(api_key)]
