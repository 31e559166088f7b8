"""The playground: a signed-in user types a prompt and sees the image.

It is paid exactly like the API: the same per-image price, the same `PaidGeneration.image` (queue
place, reserve, generate, settle or refund), the same limiter (per account here, as there is no key), and the
same usage rows, shown on the account page with "Playground" where a key prefix would be.
"""

from __future__ import annotations

import base64
import dataclasses
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from pixeldrop.accounts import AccountInfo, credits
from pixeldrop.errors import InvalidRequest, PixeldropError, RateLimited
from pixeldrop.generation.formats import FORMATS
from pixeldrop.http.disconnect import until_disconnected
from pixeldrop.http.services import Services
from pixeldrop.http.statuses import status_for
from pixeldrop.paid_generation import Purchase
from pixeldrop.prompts import validate_prompt

from .pages import PageRoute, render, retry_headers
from .sessions import current_account, require_csrf

router = APIRouter(route_class=PageRoute, include_in_schema=False)



def _page(request: Request, account: AccountInfo, status_code: int = 200, headers: dict[str, str] | None = None,
          **context) -> Response:
    settings = Services.of(request).settings
    context.setdefault("fmt", settings.default_format)
    return render(request, "playground.html", status_code=status_code, headers=headers, account=account,
                  formats={name: fmt.label for name, fmt in FORMATS.items()}, cost=settings.credits_per_image,
                  max_chars=settings.max_prompt_chars, **context)


@router.get("/playground")
async def playground_page(request: Request, account: Annotated[AccountInfo, Depends(current_account)]) -> Response:
    return _page(request, account)


def _check(prompt: str, fmt: str, max_chars: int) -> None:
    validate_prompt(prompt, max_chars)
    if fmt not in FORMATS:
        raise InvalidRequest("Pick JPEG, PNG or WebP.")


def _hit(services: Services, account_id: int) -> None:
    per_minute = services.settings.rate_limit_per_minute
    try:
        services.limiter.hit(account_id, per_minute, "playground")
    except RateLimited as error:
        raise RateLimited(f"Too many images: the playground makes {per_minute} a minute at most. "
                          f"Try again in {error.retry_after} seconds.", error.retry_after, per_minute) from None


@router.post("/playground", dependencies=[Depends(require_csrf)])
async def generate(request: Request, account: Annotated[AccountInfo, Depends(current_account)],
                   prompt: Annotated[str, Form()] = "", format: Annotated[str, Form()] = "jpeg") -> Response:
    services = Services.of(request)
    settings = services.settings

    async def paid_image() -> tuple[bytes, Purchase]:
        async with services.paid.image(account.id, None) as purchase:
            image = await purchase.generate(prompt, secrets.randbits(31))
            return await run_in_threadpool(FORMATS[format].encode, image, settings.jpeg_quality), purchase

    try:
        try:
            _check(prompt, format, settings.max_prompt_chars)
            _hit(services, account.id)
        except PixeldropError as error:
            await run_in_threadpool(credits.record_refusal, services.db, account.id, None, status_for(error))
            raise
        encoded, paid = await until_disconnected(request, paid_image())
    except PixeldropError as error:
        headers = retry_headers(error) if isinstance(error, RateLimited) else None
        balance = await run_in_threadpool(credits.balance, services.db, account.id)
        return _page(request, dataclasses.replace(account, credits=balance), status_code=status_for(error),
                     headers=headers, error=error.message, prompt=prompt, fmt=format if format in FORMATS else None)
    image_url = f"data:{FORMATS[format].media_type};base64,{base64.b64encode(encoded).decode()}"
    return _page(request, dataclasses.replace(account, credits=paid.remaining), prompt=prompt, fmt=format,
                 image_url=image_url, filename=f"pixeldrop.{FORMATS[format].extensions[0]}", charged=paid.charged)
