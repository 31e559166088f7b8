"""The API's typed dependencies: the API key.

- `ApiKeyDep` (the ClipDrop route): the key from `x-api-key`.
- `BearerKeyDep` (the OpenAI-compatible routes): the key from `Authorization: Bearer KEY`, as
  OpenAI's clients send it, or else from `x-api-key`.

Missing: MissingApiKey (401); unknown or revoked: InvalidApiKey, the same answer either way.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
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


# FastAPI's security schemes read the headers and publish both ways in the OpenAPI document.
_bearer = HTTPBearer(auto_error=False, description="A pixeldrop API key, as OpenAI's clients send theirs.")
_x_api_key = APIKeyHeader(name="x-api-key", auto_error=False, description="A pixeldrop API key, as ClipDrop's.")


async def bearer_key(services: ServicesDep, bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
                     x_api_key: Annotated[str | None, Depends(_x_api_key)]) -> KeyInfo:
    presented = (bearer.credentials if bearer is not None else None) or x_api_key
    if not presented:
        raise MissingApiKey("No API key provided: send it as `Authorization: Bearer YOUR_KEY` (or `x-api-key`).")
    return await run_in_threadpool(accounts.verify_key, services.db, presented)


ApiKeyDep = Annotated[KeyInfo, Depends(api_key)]
BearerKeyDep = Annotated[KeyInfo, Depends(bearer_key)]
