"""The ClipDrop text-to-image v1 route, and health."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from pixeldrop import accounts
from pixeldrop.accounts import credits
from pixeldrop.errors import MissingApiKey, PixeldropError
from pixeldrop.paid_generation import generate_paid

from .errors import status_for
from .forms import parse_prompt, read_body
from .negotiation import CONTENT_TYPES, choose_format, encode_image
from .services import Services

router = APIRouter()

IMAGE_RESPONSES = {
    200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}, "description": "A 512x512 image."},
    **{code: {"description": text, "content": {"application/json": {"example": {"error": text}}}}
       for code, text in [(400, "Malformed request"), (401, "Missing API key"), (402, "No remaining credits"),
                          (403, "Invalid or revoked API key"), (406, "Accept header not acceptable"),
                          (413, "Body too large"), (429, "Rate limited"), (500, "Generation failed"),
                          (503, "Generation queue full")]},
}


@router.post(
    "/text-to-image/v1",
    responses=IMAGE_RESPONSES,
    response_class=Response,
    summary="Generate a 512x512 image from a text prompt",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                media: {"schema": {"type": "object", "required": ["prompt"],
                                   "properties": {"prompt": {"type": "string", "minLength": 1, "maxLength": 1000}}}}
                for media in ("multipart/form-data", "application/x-www-form-urlencoded")
            },
        },
        "parameters": [{"name": "x-api-key", "in": "header", "required": True, "schema": {"type": "string"}}],
    },
)
async def text_to_image(request: Request) -> Response:
    services = Services.of(request)
    settings = services.settings
    presented = request.headers.get("x-api-key")
    if not presented:
        raise MissingApiKey("No api key provided.")
    key = await run_in_threadpool(accounts.verify_key, services.db, presented)
    try:
        quota = services.limiter.hit(key.id, key.rate_limit_per_minute or settings.rate_limit_per_minute)
        fmt = choose_format(request.headers.get("accept"), settings.default_format)
        body = await read_body(request, settings.max_body_bytes)
        prompt = parse_prompt(request.headers.get("content-type"), body, settings.max_prompt_chars)
    except PixeldropError as error:
        await run_in_threadpool(credits.record_refusal, services.db, key.account_id, key.id, status_for(error))
        raise

    encoded: list[bytes] = []

    async def encode(image) -> None:
        encoded.append(await run_in_threadpool(encode_image, image, fmt, settings.jpeg_quality))

    paid = await generate_paid(services.db, services.worker, key.account_id, key.id, prompt,
                               settings.credits_per_image, finish=encode)
    return Response(
        content=encoded[0],
        media_type=CONTENT_TYPES[fmt],
        headers={
            "x-remaining-credits": str(paid.remaining),
            "x-credits-consumed": str(paid.charged),
            "RateLimit-Limit": str(quota.limit),
            "RateLimit-Remaining": str(quota.remaining),
            "RateLimit-Reset": str(quota.reset_after),
        },
    )


@router.get("/healthz", summary="Liveness, model and queue state")
async def healthz(request: Request) -> JSONResponse:
    services = Services.of(request)
    return JSONResponse({
        "status": "ok",
        "model": services.worker.generator.describe(),
        "queue": {"waiting": services.worker.queued, "busy": services.worker.busy,
                  "capacity": services.settings.queue_size},
        "images_made": services.worker.images_made,
        "database": services.db.dialect,
        "rate_limiter": "redis" if services.settings.redis_url else "memory",
    })
