"""OpenAI's Images API, so that the official `openai` clients work unchanged with
`base_url="http://HOST:PORT/v1"` and a pixeldrop key as `api_key`:

- POST /v1/images/generations: 1 to 4 images of one prompt, paid like the ClipDrop route
  (PaidGeneration: n places, one reservation of n prices, charged together or refunded), answered
  as base64 or as URLs. Image i of a request with seed S has seed S + i; each item says its seed.
- GET /v1/images/files/{image_id}: an image answered as a URL, for a key of the same account,
  for `image_url_seconds` (images_store.py; another account's, or an expired one, is 404).
- GET /v1/models: the one model this server serves.

Errors on these routes, and only on them, come in OpenAI's shape, `{"error": {"message", "type",
"param", "code"}}`: OpenAIRoute renders the domain's errors with the status from the one table
(http/statuses.py's OPENAI_STATUS, where a key that cannot be used is 401, as OpenAI answers), and
the app's handler (api/errors.py) renders Starlette's own 404 and 405 under PATHS so too.
The JSON body is read with the ClipDrop route's bound and checked strictly by a pydantic model:
a wrong type, an unknown field or a missing prompt is 400 naming the field as `param`.
"""

from __future__ import annotations

import base64
import functools
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from PIL import Image
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from pixeldrop import errors, images_store
from pixeldrop.accounts import KeyInfo
from pixeldrop.generation import OUTPUT_SIZE, default_model
from pixeldrop.generation.formats import FORMATS
from pixeldrop.generation.metadata import ServedModel, public_model_name
from pixeldrop.http.bodies import read_body
from pixeldrop.http.disconnect import until_disconnected
from pixeldrop.http.idempotency import OPENAPI_PARAMETER as IDEMPOTENCY_PARAMETER
from pixeldrop.http.idempotency import OPENAPI_REPLAYED_HEADER, REPLAYED, Keeper, idempotency_key, idempotent
from pixeldrop.http.services import Services, ServicesDep, base_url
from pixeldrop.http.statuses import OPENAI_STATUS, headers_for, status_for
from pixeldrop.prompts import VISIBLE_CHARACTER, validate_prompt
from pixeldrop.seeds import MAX_SEED, consecutive_seeds, parse_seed
from pixeldrop.settings import ImageFormat, Settings

from .deps import BearerKeyDep
from .documented import IMAGE_CONTENT
from .forms import media_type

log = logging.getLogger(__name__)

MAX_IMAGES = 4
SIZE = f"{OUTPUT_SIZE}x{OUTPUT_SIZE}"
SIZES = (SIZE, "auto")
PATHS = ("/v1/images", "/v1/models")  # this surface's paths, and any path below them


def serves(path: str) -> bool:
    """Whether `path` is this surface's, so that its errors come in OpenAI's shape (known route or not)."""
    return any(path == prefix or path.startswith(prefix + "/") for prefix in PATHS)


# --- Errors, in OpenAI's shape -------------------------------------------------------------------

class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorAnswer(BaseModel):
    error: ErrorDetail


def _error_type(status: int) -> str:
    """OpenAI's `type` for a status."""
    if status == 402:
        return "insufficient_quota"
    if status == 429:
        return "requests"
    return "server_error" if status >= 500 else "invalid_request_error"


# OpenAI's `code` for the errors its clients look at; None for the rest, as OpenAI's often is.
_CODES: dict[type[errors.PixeldropError], str] = {
    errors.InvalidApiKey: "invalid_api_key",
    errors.OutOfCredits: "insufficient_quota",
    errors.RateLimited: "rate_limit_exceeded",
}


def openai_error(error: errors.PixeldropError) -> JSONResponse:
    """A domain error as OpenAI answers errors: the status from the one table, its headers too."""
    code = next((_CODES[cls] for cls in type(error).__mro__ if cls in _CODES), None)
    param = error.param if isinstance(error, errors.InvalidParameter) else None
    return error_answer(status_for(error, OPENAI_STATUS), error.message, headers_for(error), param=param, code=code)


def error_answer(status: int, message: str, headers: dict[str, str] | None = None, *, param: str | None = None,
                 code: str | None = None) -> JSONResponse:
    """An error in OpenAI's shape, with OpenAI's `type` for its status."""
    detail = ErrorDetail(message=message, type=_error_type(status), param=param, code=code)
    return JSONResponse(ErrorAnswer(error=detail).model_dump(), status_code=status, headers=headers)


class OpenAIRoute(APIRoute):
    """A route whose errors are answered in OpenAI's shape (the app's handlers answer ClipDrop's)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_in_openai_shape(request: Request) -> Response:
            try:
                return await handle(request)
            except errors.PixeldropError as error:
                return openai_error(error)
            except RequestValidationError:
                return openai_error(errors.InvalidRequest("Malformed request."))
            except ClientDisconnect:
                raise  # nobody to answer: the app logs it in one line
            except Exception:
                log.exception("unexpected error")
                return openai_error(errors.GenerationFailed("Internal error; it has been logged."))

        return handle_in_openai_shape


# --- The request ---------------------------------------------------------------------------------

def _whole_number(value: Any) -> Any:
    """JSON's 4.0 is the integer 4 (JSON Schema counts it as one); 4.5, "4" and true stay what they
    are, and the strict integer check refuses them."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


WholeNumber = Annotated[int, BeforeValidator(_whole_number)]


class GenerationBody(BaseModel):
    """POST /v1/images/generations' JSON, strictly: no coercion ("2" is not 2), no unknown fields.
    null is the default, as OpenAI takes it. The published schema is `_request_schema`."""

    model_config = ConfigDict(strict=True, extra="forbid")

    prompt: str
    model: str | None = None
    n: WholeNumber | None = Field(default=None, ge=1, le=MAX_IMAGES)
    size: str | None = None
    response_format: Literal["b64_json", "url"] | None = None
    output_format: ImageFormat | None = None
    seed: WholeNumber | None = None
    user: str | None = Field(default=None, max_length=256)  # OpenAI's end-user id: taken and ignored


@dataclass(frozen=True)
class Generation:
    """What a valid request asks for, defaults filled in."""

    fingerprint: dict[str, Any]  # what makes two requests the same one (the seed as asked: None for random)
    prompt: str
    seeds: list[int]  # one per image
    response_format: Literal["b64_json", "url"]
    output_format: ImageFormat


def parse_generation(content_type: str | None, body: bytes, settings: Settings) -> Generation:
    """The request, or InvalidParameter naming what is wrong (before any credit moves)."""
    if media_type(content_type) != "application/json":
        raise errors.InvalidParameter("The body must be JSON, sent as `Content-Type: application/json`.", None)
    try:
        asked = GenerationBody.model_validate_json(body)
    except ValidationError as error:
        raise _invalid(error) from None
    try:
        prompt = validate_prompt(asked.prompt, settings.max_prompt_chars)
    except errors.InvalidRequest as error:
        raise errors.InvalidParameter(error.message, "prompt") from None
    served = model_name(settings)
    if asked.model is not None and asked.model != served:
        raise errors.InvalidParameter(f"The model '{asked.model}' does not exist here: this server serves "
                                      f"'{served}'.", "model")
    if asked.size is not None and asked.size not in SIZES:
        raise errors.InvalidParameter(f"Invalid size '{asked.size}': pixeldrop makes {SIZE} images, so size must "
                                      f"be '{SIZE}' (or 'auto').", "size")
    try:
        first_seed = parse_seed(asked.seed)
    except errors.InvalidRequest as error:
        raise errors.InvalidParameter(error.message, "seed") from None
    seeds = consecutive_seeds(first_seed, asked.n or 1)
    response_format, output_format = asked.response_format or "b64_json", asked.output_format or "png"
    fingerprint = {"prompt": prompt, "n": len(seeds), "seed": asked.seed, "response_format": response_format,
                   "output_format": output_format}
    return Generation(fingerprint, prompt, seeds, response_format, output_format)


def _invalid(error: ValidationError) -> errors.InvalidParameter:
    """Pydantic's first complaint, in words a client can act on, naming the field."""
    first = error.errors()[0]
    param = ".".join(str(part) for part in first["loc"]) or None
    kind = first["type"]
    if kind == "json_invalid":
        return errors.InvalidParameter(f"The body is not valid JSON: {first['msg']}.", None)
    if kind == "model_type":
        return errors.InvalidParameter("The body must be a JSON object.", None)
    if kind == "missing":
        return errors.InvalidParameter(f"Missing required parameter: '{param}'.", param)
    if kind == "extra_forbidden":
        return errors.InvalidParameter(f"Unknown parameter: '{param}'.", param)
    return errors.InvalidParameter(f"Invalid value for '{param}': {first['msg']}.", param)


def model_name(settings: Settings) -> str:
    """The name the served model goes by (`model`, /v1/models), from the settings, so that the
    OpenAPI document, built before the model loads, can publish it."""
    return _public_name(settings.model or default_model())


@functools.cache
def _public_name(model: str) -> str:
    """public_model_name looks at the disk; a process serves one model, so once per model will do."""
    return public_model_name(model)


# --- The answer ----------------------------------------------------------------------------------

class GeneratedImage(BaseModel):
    b64_json: str | None = Field(default=None, description="With `response_format: b64_json` (the default).")
    url: str | None = Field(default=None, description="With `response_format: url`: needs a key of the same "
                                                      "account, for 60 minutes (`PIXELDROP_IMAGE_URL_SECONDS`).")
    revised_prompt: None = None
    seed: int = Field(description="pixeldrop's extension: the seed that makes this image again.")


class ImagesAnswer(BaseModel):
    created: int
    data: list[GeneratedImage]


def _encode(images: Sequence[Image.Image], asked: Generation, settings: Settings, model: ServedModel) -> list[bytes]:
    """Each image in the asked format; PNGs carry A1111's parameters, each with its own seed."""
    return [FORMATS[asked.output_format].encode(
                image, settings.jpeg_quality,
                model.image_parameters(asked.prompt, seed) if settings.image_metadata else None)
            for image, seed in zip(images, asked.seeds, strict=True)]


async def _paid_images(services: Services, key: KeyInfo, asked: Generation, server_url: str,
                       quota_headers: dict[str, str], keeper: Keeper) -> Response:
    """Make, encode (and store) the images, paid together; the 200 answer, kept with the charge."""
    settings = services.settings
    async with services.paid.image(key.account_id, key.id, count=len(asked.seeds), prompt=asked.prompt) as purchase:
        images = await purchase.generate_each(asked.prompt, asked.seeds)
        # Encoded, and stored, before the block ends: images that cannot be delivered are not charged.
        encoded = await run_in_threadpool(_encode, images, asked, settings, services.engine.model)
        if asked.response_format == "url":
            ids = await run_in_threadpool(images_store.store, services.db, key.account_id,
                                          FORMATS[asked.output_format].media_type, encoded,
                                          timedelta(seconds=settings.image_url_seconds))
            data = [{"url": f"{server_url}/v1/images/files/{image_id}", "revised_prompt": None, "seed": seed}
                    for image_id, seed in zip(ids, asked.seeds, strict=True)]
        else:
            data = [{"b64_json": base64.b64encode(image).decode("ascii"), "revised_prompt": None, "seed": seed}
                    for image, seed in zip(encoded, asked.seeds, strict=True)]
        headers = {"x-remaining-credits": str(purchase.remaining), "x-credits-consumed": str(purchase.charged)}
        if len(asked.seeds) == 1:
            headers["seed"] = str(asked.seeds[0])  # as the ClipDrop route's answers
        response = JSONResponse({"created": int(time.time()), "data": data}, headers={**headers, **quota_headers})
        purchase.on_charge(lambda session: keeper.keep(session, response))  # charged if and only if kept
    return response


# --- Routes --------------------------------------------------------------------------------------

async def generate_images(request: Request, services: ServicesDep, key: BearerKeyDep) -> Response:
    settings = services.settings
    async with services.paid.refusals(key.account_id, key.id):
        quota = services.key_quota(key)
        retry_key = idempotency_key(request)
        body = await read_body(request, settings.max_body_bytes)
        asked = parse_generation(request.headers.get("content-type"), body, settings)
    async def answer(keeper: Keeper) -> Response:
        try:
            return await until_disconnected(request, _paid_images(services, key, asked, base_url(request),
                                                                  quota.headers(), keeper))
        except errors.OutOfCredits as error:
            price = services.paid.cost * len(asked.seeds)
            raise errors.OutOfCredits(f"This request costs {price} credits ({services.paid.cost} per image); the "
                                      f"account has {error.remaining}.", remaining=error.remaining) from None

    return await idempotent(request, key.account_id, retry_key, asked.fingerprint, answer, openai_error)


async def image_file(image_id: str, services: ServicesDep, key: BearerKeyDep) -> Response:
    found = await run_in_threadpool(images_store.fetch, services.db, image_id, key.account_id)
    return Response(found.data, media_type=found.media_type, headers={"Cache-Control": "private, no-store"})


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(description="0: pixeldrop does not know when the model was made.")
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


async def list_models(services: ServicesDep, key: BearerKeyDep) -> JSONResponse:
    card = ModelCard(id=model_name(services.settings), created=0, owned_by="pixeldrop")
    return JSONResponse(ModelList(data=[card]).model_dump())


def _request_schema(settings: Settings) -> dict[str, Any]:
    """GenerationBody as published: the prompt's rules and the served model's name, which the
    fuzzer (tests/probes/test_schema.py) takes at their word."""
    def optional(schema: dict[str, Any]) -> dict[str, Any]:
        return {"anyOf": [schema, {"type": "null"}], "default": None}

    return {
        "type": "object", "required": ["prompt"], "additionalProperties": False,
        "properties": {
            "prompt": {"type": "string", "minLength": 1, "maxLength": settings.max_prompt_chars,
                       "pattern": VISIBLE_CHARACTER},
            "model": optional({"type": "string", "enum": [model_name(settings)]}),
            "n": optional({"type": "integer", "minimum": 1, "maximum": MAX_IMAGES}),
            "size": optional({"type": "string", "enum": list(SIZES)}),
            "response_format": optional({"type": "string", "enum": ["b64_json", "url"]}),
            "output_format": optional({"type": "string", "enum": list(FORMATS)}),
            "user": optional({"type": "string", "maxLength": 256,
                              "description": "OpenAI's end-user identifier; accepted and ignored."}),
            "seed": optional({"type": "integer", "minimum": 0, "maximum": MAX_SEED,
                              "description": f"pixeldrop's extension; image i gets seed + i (after {MAX_SEED}, 0)."}),
        },
    }


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorAnswer, "description": "An error, in OpenAI's shape."} for status in statuses}


def router(settings: Settings) -> APIRouter:
    """The routes, documented for these settings (the served model's name, the prompt's length)."""
    routes = APIRouter(route_class=OpenAIRoute, tags=["OpenAI-compatible"])
    routes.add_api_route(
        "/v1/images/generations", generate_images, methods=["POST"], response_class=JSONResponse,
        summary="Generate 1 to 4 512x512 images (OpenAI's Images API)",
        responses={200: {"model": ImagesAnswer, "description": "The images.",
                         "headers": {REPLAYED: OPENAPI_REPLAYED_HEADER}},
                   **_errors(400, 401, 402, 408, 409, 413, 422, 429, 500, 503)},
        openapi_extra={"requestBody": {"required": True,
                                       "content": {"application/json": {"schema": _request_schema(settings)}}},
                       "parameters": [IDEMPOTENCY_PARAMETER]},
    )
    routes.add_api_route(
        "/v1/images/files/{image_id}", image_file, methods=["GET"], response_class=Response,
        summary="An image answered as a URL, for a key of the account that made it",
        responses={200: {"content": IMAGE_CONTENT, "description": "The image."},
                   **_errors(400, 401, 404)},
    )
    routes.add_api_route(
        "/v1/models", list_models, methods=["GET"], response_class=JSONResponse, summary="The model served",
        responses={200: {"model": ModelList, "description": "The one model."}, **_errors(400, 401)},
    )
    return routes
