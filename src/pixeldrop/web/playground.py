"""The playground: a signed-in user types a prompt (and, if they like, a seed) and sees the image.

It is paid exactly like the API: the same per-image price, the same `PaidGeneration.image` (queue
place, reserve, generate, settle or refund), the same limiter (per account here, as there is no key), and the
same usage rows, shown on the account page with "Playground" where a key prefix would be.

Each image is kept in the account's history (accounts/gallery.py, the last few, with the prompt
where the operator stores prompts) inside the paid block, so an image that cannot be kept is not
charged. A successful Generate answers with a redirect to `/playground?image=ID`, which shows
that image (and its seed, also as a `seed` header): reloading it shows the image again, and
neither makes nor charges another. The history's images are served to their account only.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response

from pixeldrop.accounts import AccountInfo, credits, gallery
from pixeldrop.errors import InvalidRequest, PixeldropError, RateLimited
from pixeldrop.generation.formats import FORMATS
from pixeldrop.http.disconnect import until_disconnected
from pixeldrop.http.services import Services
from pixeldrop.http.statuses import status_for
from pixeldrop.prompts import validate_prompt
from pixeldrop.seeds import MAX_SEED, parse_seed

from .pages import PageRoute, render, retry_headers
from .sessions import current_account, require_csrf

router = APIRouter(route_class=PageRoute, include_in_schema=False)

EXAMPLE_PROMPT = "a red apple"  # the placeholder: a prompt the default model draws well


async def _history(request: Request, account: AccountInfo) -> list[gallery.GalleryImage]:
    return await run_in_threadpool(gallery.recent, Services.of(request).db, account.id)


def _page(request: Request, account: AccountInfo, history: list[gallery.GalleryImage], status_code: int = 200,
          headers: dict[str, str] | None = None, **context) -> Response:
    settings = Services.of(request).settings
    context.setdefault("fmt", settings.default_format)
    return render(request, "playground.html", status_code=status_code, headers=headers, account=account,
                  formats={name: fmt.label for name, fmt in FORMATS.items()}, cost=settings.credits_per_image,
                  max_chars=settings.max_prompt_chars, max_seed=MAX_SEED, history=history,
                  example_prompt=EXAMPLE_PROMPT, **context)


def _format_of(media_type: str) -> str:
    return next(name for name, fmt in FORMATS.items() if fmt.media_type == media_type)


@router.get("/playground")
async def playground_page(request: Request, account: Annotated[AccountInfo, Depends(current_account)],
                          image: int | None = None) -> Response:
    """The playground; with `image`, one of the account's images as the result (where Generate leads)."""
    services = Services.of(request)
    history = await _history(request, account)
    shown = next((item for item in history if item.id == image), None)
    kept = None if shown is None else await run_in_threadpool(gallery.image, services.db, account.id, shown.id)
    if shown is None or kept is None:
        return _page(request, account, history)
    media_type, data = kept
    fmt = _format_of(media_type)
    return _page(request, account, history, headers={"seed": str(shown.seed)}, prompt=shown.prompt or "", fmt=fmt,
                 used_seed=shown.seed, image_url=f"data:{media_type};base64,{base64.b64encode(data).decode()}",
                 filename=f"pixeldrop.{FORMATS[fmt].extensions[0]}", charged=services.settings.credits_per_image)


@router.get("/playground/images/{image_id}")
async def history_image(request: Request, image_id: int,
                        account: Annotated[AccountInfo, Depends(current_account)]) -> Response:
    kept = await run_in_threadpool(gallery.image, Services.of(request).db, account.id, image_id)
    if kept is None:
        raise HTTPException(404, "No such image.")
    media_type, data = kept
    return Response(data, media_type=media_type)


def _check(prompt: str, fmt: str, seed: str, max_chars: int) -> int:
    """The seed to use (random when the field is empty); InvalidRequest for a bad field."""
    validate_prompt(prompt, max_chars)
    if fmt not in FORMATS:
        raise InvalidRequest("Pick JPEG, PNG or WebP.")
    return parse_seed(seed)


def _hit(services: Services, account_id: int) -> None:
    per_minute = services.settings.rate_limit_per_minute
    try:
        services.limiter.hit(account_id, per_minute, "playground")
    except RateLimited as error:
        raise RateLimited(f"Too many images: the playground makes {per_minute} a minute at most. "
                          f"Try again in {error.retry_after} seconds.", error.retry_after, per_minute) from None


@router.post("/playground", dependencies=[Depends(require_csrf)])
async def generate(request: Request, account: Annotated[AccountInfo, Depends(current_account)],
                   prompt: Annotated[str, Form()] = "", format: Annotated[str, Form()] = "jpeg",
                   seed: Annotated[str, Form()] = "") -> Response:
    services = Services.of(request)
    settings = services.settings

    async def paid_image(used_seed: int) -> int:
        parameters = services.engine.model.image_parameters(prompt, used_seed) if settings.image_metadata else None
        async with services.paid.image(account.id, None, prompt=prompt) as purchase:
            image = await purchase.generate(prompt, used_seed)
            encoded = await run_in_threadpool(FORMATS[format].encode, image, settings.jpeg_quality, parameters)
            return await run_in_threadpool(gallery.add, services.db, account.id, FORMATS[format].media_type, encoded,
                                           prompt if settings.store_prompts else None, used_seed)

    try:
        async with services.paid.refusals(account.id, None):
            used_seed = _check(prompt, format, seed, settings.max_prompt_chars)
            _hit(services, account.id)
        image_id = await until_disconnected(request, paid_image(used_seed))
    except PixeldropError as error:
        headers = retry_headers(error) if isinstance(error, RateLimited) else None
        balance = await run_in_threadpool(credits.balance, services.db, account.id)
        return _page(request, dataclasses.replace(account, credits=balance), await _history(request, account),
                     status_code=status_for(error), headers=headers, error=error.message, prompt=prompt,
                     fmt=format if format in FORMATS else None, seed=seed)
    return RedirectResponse(f"/playground?image={image_id}", status_code=303)
