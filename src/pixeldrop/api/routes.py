"""The ClipDrop text-to-image v1 route, and health."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from pixeldrop.generation.formats import FORMATS
from pixeldrop.http.bodies import read_body
from pixeldrop.http.disconnect import until_disconnected
from pixeldrop.http.idempotency import OPENAPI_PARAMETER as IDEMPOTENCY_PARAMETER
from pixeldrop.http.idempotency import OPENAPI_REPLAYED_HEADER, REPLAYED, Keeper, idempotency_key, idempotent
from pixeldrop.http.services import ServicesDep
from pixeldrop.seeds import MAX_SEED, parse_seed

from .deps import ApiKeyDep
from .documented import IMAGE_CONTENT, PROMPT_AND_SEED, error_responses
from .errors import error_response
from .forms import FORM_TYPES, parse_form
from .negotiation import choose_format

router = APIRouter()

IMAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": IMAGE_CONTENT, "description": "A 512x512 image.",
          "headers": {"seed": {"description": "The seed the image was made with: send it to make the image again.",
                               "required": True, "schema": {"type": "integer", "minimum": 0, "maximum": MAX_SEED}},
                      REPLAYED: OPENAPI_REPLAYED_HEADER}},
    **error_responses((400, 401, 402, 403, 406, 408, 409, 413, 422, 429, 431, 500, 503), {
        409: "A request with this Idempotency-Key is still being answered", 500: "Generation failed",
        503: "Busy: queue full, deadline passed or storage unavailable"}),
}
FORM_SCHEMA = {"type": "object", "required": ["prompt"], "properties": PROMPT_AND_SEED}


@router.post(
    "/text-to-image/v1",
    responses=IMAGE_RESPONSES,
    response_class=Response,
    summary="Generate a 512x512 image from a text prompt",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {media: {"schema": FORM_SCHEMA} for media in FORM_TYPES},
        },
        "parameters": [{"name": "x-api-key", "in": "header", "required": True, "schema": {"type": "string"}},
                       IDEMPOTENCY_PARAMETER],
    },
)
async def text_to_image(request: Request, services: ServicesDep, key: ApiKeyDep) -> Response:
    settings = services.settings
    async with services.paid.refusals(key.account_id, key.id):
        quota = services.key_quota(key)
        fmt = choose_format(request.headers.get("accept"), settings.default_format)
        body = await read_body(request, settings.max_body_bytes)
        form = parse_form(request.headers.get("content-type"), body, settings.max_prompt_chars)
        retry_key = idempotency_key(request)

    prompt, seed = form.prompt, parse_seed(form.seed)
    parameters = services.engine.model.image_parameters(prompt, seed) if settings.image_metadata else None

    async def paid_image(keeper: Keeper) -> Response:
        async with services.paid.image(key.account_id, key.id, prompt=prompt) as purchase:
            image = await purchase.generate(prompt, seed)
            # Encoded before the block ends: an image that cannot be delivered is not charged.
            image_bytes = await run_in_threadpool(FORMATS[fmt].encode, image, settings.jpeg_quality, parameters)
            response = Response(
                content=image_bytes,
                media_type=FORMATS[fmt].media_type,
                headers={
                    "x-remaining-credits": str(purchase.remaining),
                    "x-credits-consumed": str(purchase.charged),
                    **quota.headers(),
                    "seed": str(seed),
                },
            )
            purchase.on_charge(lambda session: keeper.keep(session, response))  # charged if and only if kept
        return response

    async def answer(keeper: Keeper) -> Response:
        return await until_disconnected(request, paid_image(keeper))

    asked = {"prompt": prompt, "seed": form.seed, "format": fmt}
    return await idempotent(request, key.account_id, retry_key, asked, answer, error_response)


def _is_operator(request: Request, token: str | None) -> bool:
    """Whether the request carries `Authorization: Bearer <operator token>` (compared in constant time)."""
    if not token:
        return False
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode("latin-1"), token.encode())


# Monitors probe with HEAD. Registered after GET, so that a 405 lists GET (the first route that
# matches the path decides `Allow`); kept out of the schema, where it would repeat GET's id.
@router.head("/healthz", include_in_schema=False)
@router.get("/healthz", summary="Liveness, model and queue state")
async def healthz(request: Request, services: ServicesDep) -> JSONResponse:
    engine = services.engine
    return JSONResponse({
        "status": "ok",
        "model": engine.model.described if _is_operator(request, services.settings.operator_token)
        else engine.model.public(),
        "engine": engine.name,
        "replicas": await run_in_threadpool(engine.replicas),  # Ray's controller answers this one
        "queue": {"waiting": engine.queued, "busy": engine.busy, "capacity": services.settings.queue_size},
        "images_made": engine.images_made,
        "database": services.db.dialect,
        "rate_limiter": "redis" if services.settings.redis_url else "memory",
    })
