"""Async jobs: `POST /v1/jobs` takes what /text-to-image/v1 takes (multipart or urlencoded), or
JSON, plus `seed`, `output_format` and `webhook_url`, and answers 202 at once; the image is made
by a job runner (pixeldrop.jobs) and fetched from `GET /v1/jobs/{id}/result`, or announced by a
signed webhook. `GET /v1/jobs/{id}` is its status, `DELETE /v1/jobs/{id}` cancels it while queued.

Keys as the ClipDrop route takes them (`x-api-key`, or `Authorization: Bearer`), one rate limit per
key for every call here, errors in the ClipDrop shape. Another account's job is not found (404).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import operator
from datetime import datetime, timedelta
from types import UnionType
from typing import TYPE_CHECKING, Any, get_args, get_type_hints

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import create_model
from starlette.concurrency import run_in_threadpool

from pixeldrop.accounts import KeyInfo
from pixeldrop.errors import InvalidRequest
from pixeldrop.generation.formats import FORMATS, format_for_path
from pixeldrop.http.bodies import read_body
from pixeldrop.http.idempotency import OPENAPI_PARAMETER as IDEMPOTENCY_PARAMETER
from pixeldrop.http.idempotency import OPENAPI_REPLAYED_HEADER, REPLAYED, Keeper, idempotency_key, idempotent
from pixeldrop.http.services import Services, ServicesDep, base_url
from pixeldrop.jobs import JobStatus, Order, Submitted, store, webhooks
from pixeldrop.prompts import validate_prompt
from pixeldrop.seeds import MAX_SEED, parse_seed

from .deps import BearerKeyDep
from .documented import IMAGE_CONTENT, PROMPT_AND_SEED, error_responses
from .errors import error_response
from .forms import FORM_TYPES, media_type, parse_form
from .negotiation import choose_format

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JOB_FIELDS = ("output_format", "webhook_url")  # besides the ClipDrop form's prompt and seed
FORMAT_NAMES = sorted({extension for fmt in FORMATS.values() for extension in fmt.extensions})


def _as_shown(annotation: Any) -> Any:
    """A JobStatus field's type as JSON shows it (JobStatus.public): times as ISO 8601 text."""
    if annotation is datetime:
        return str
    if isinstance(annotation, UnionType):
        return functools.reduce(operator.or_, map(_as_shown, get_args(annotation)))
    return annotation


# JobStatus's fields as `public()` shows them (`error` only when there is one), and where the job is.
_ANSWER_FIELDS: dict[str, Any] = {
    **{name: (_as_shown(hint), None if name == "error" else ...) for name, hint in get_type_hints(JobStatus).items()},
    **{url: (str, ...) for url in ("status_url", "result_url", "cancel_url")},
}
JobAnswer = create_model(
    "JobAnswer", __doc__="A job, as every answer here shows it (and webhook events carry it, without the URLs).",
    **_ANSWER_FIELDS)


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return error_responses(codes, {
        404: "No such job (or another account's)",
        409: "Not allowed in the job's state, or a request with this Idempotency-Key is still running",
        410: "The job's image has expired", 503: "Storage unavailable"})


KEY_PARAMETERS = [
    {"name": "x-api-key", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "The API key (or send it as `Authorization: Bearer KEY`)."},
]
JOB_FIELDS_SCHEMA: dict[str, dict[str, Any]] = {
    **PROMPT_AND_SEED,
    "output_format": {"type": "string", "enum": FORMAT_NAMES,
                      "description": "The result's format; left out, the result follows its request's Accept."},
    "webhook_url": {"type": "string", "anyOf": [{"format": "uri"}, {"enum": [""]}],
                    "maxLength": webhooks.MAX_URL_LENGTH,
                    "description": "Receives a signed JSON event when the job ends (Standard Webhooks); its host "
                                   "must resolve to public addresses. Empty: no webhook, as when left out."},
}
FORM_SCHEMA = {"type": "object", "required": ["prompt"], "properties": JOB_FIELDS_SCHEMA}
JSON_SCHEMA = {"type": "object", "required": ["prompt"], "properties": {  # in JSON, null leaves a field out
    name: field if name == "prompt" else
    {**field, "type": [field["type"], "null"], **({"enum": [*field["enum"], None]} if "enum" in field else {})}
    for name, field in JOB_FIELDS_SCHEMA.items()}}


def _quota(services: Services, key: KeyInfo) -> dict[str, str]:
    return services.key_quota(key).headers()


def _keep(services: Services) -> timedelta:
    return timedelta(seconds=services.settings.job_result_seconds)


def _shown(request: Request, job: JobStatus) -> dict[str, Any]:
    url = f"{base_url(request)}/v1/jobs/{job.id}"
    return {**job.public(), "status_url": url, "result_url": f"{url}/result", "cancel_url": url}


# Reading the body

def _json_fields(body: bytes, max_chars: int) -> tuple[str, dict[str, Any]]:
    try:
        fields = json.loads(body)
    except ValueError:  # UnicodeDecodeError included
        raise InvalidRequest("The body is not valid JSON.") from None
    if not isinstance(fields, dict):
        raise InvalidRequest("The JSON body must be an object with a prompt field.")
    prompt = fields.get("prompt")
    if prompt is None:
        raise InvalidRequest("Missing prompt field in request.")
    if not isinstance(prompt, str):
        raise InvalidRequest("The prompt must be a string.")
    return validate_prompt(prompt, max_chars), fields


def _format(value: Any) -> str | None:
    if value is None or value == "":
        return None
    fmt = format_for_path(value) if isinstance(value, str) else None
    if fmt is None:
        raise InvalidRequest(f"output_format must be one of {', '.join(FORMAT_NAMES)}.")
    return fmt.name


async def _order(request: Request, services: Services) -> tuple[Order, dict[str, Any]]:
    """The order, and what makes two requests the same one for an Idempotency-Key (the seed as
    asked: None when the server picks one, so that a retry without a seed is the same request)."""
    settings = services.settings
    body = await read_body(request, settings.max_body_bytes)
    content_type = request.headers.get("content-type")
    sent_as = media_type(content_type)
    if sent_as == "application/json":
        prompt, fields = _json_fields(body, settings.max_prompt_chars)
        if not isinstance(fields.get("seed"), int | None):  # a number in JSON, as published
            raise InvalidRequest(f"seed must be an integer from 0 to {MAX_SEED}.")
        asked_seed = fields.get("seed")
    elif sent_as in FORM_TYPES:
        form = parse_form(content_type, body, settings.max_prompt_chars, extra=JOB_FIELDS)
        prompt, asked_seed, fields = form.prompt, form.seed, form.extra
    else:
        raise InvalidRequest("The body must be multipart/form-data, application/x-www-form-urlencoded or JSON, "
                             "with a prompt field.")
    webhook_url = fields.get("webhook_url")
    if webhook_url in (None, ""):
        webhook_url = None
    elif not isinstance(webhook_url, str):
        raise InvalidRequest("webhook_url must be a string.")
    else:
        await run_in_threadpool(webhooks.resolve, webhook_url, settings.webhook_allow_private)
    seed = None if asked_seed in (None, "") else parse_seed(asked_seed)
    order = Order(prompt, parse_seed(seed), _format(fields.get("output_format")), webhook_url)
    return order, {**dataclasses.asdict(order), "seed": seed}


# The routes

@router.post(
    "",
    status_code=202,
    summary="Queue an image: answered at once, made by a job runner",
    response_model=None,
    responses={202: {"model": JobAnswer, "description": "Queued; the price is reserved.",
                     "headers": {REPLAYED: OPENAPI_REPLAYED_HEADER}},
               **_errors(400, 401, 402, 403, 408, 409, 413, 422, 429, 431, 503)},
    openapi_extra={
        "requestBody": {"required": True, "content": {
            **{media: {"schema": FORM_SCHEMA} for media in FORM_TYPES}, "application/json": {"schema": JSON_SCHEMA}}},
        "parameters": [*KEY_PARAMETERS, IDEMPOTENCY_PARAMETER],
    },
)
async def submit_job(request: Request, services: ServicesDep, key: BearerKeyDep) -> Response:
    settings = services.settings
    async with services.paid.refusals(key.account_id, key.id):
        quota = _quota(services, key)
        retry_key = idempotency_key(request)
        order, asked = await _order(request, services)

    def accepted(submitted: Submitted) -> Response:
        shown = _shown(request, submitted.job)
        return JSONResponse(shown, status_code=202, headers={
            "Location": shown["status_url"], "x-remaining-credits": str(submitted.remaining), **quota})

    async def answer(keeper: Keeper) -> Response:  # the paid step, all of it
        built: list[Response] = []  # the 202, made once inside the job's transaction

        def keep(session: Session, submitted: Submitted) -> None:  # queued if and only if kept
            built.append(accepted(submitted))
            keeper.keep(session, built[0])

        await run_in_threadpool(
            store.submit, services.db, key.account_id, key.id, order, settings.credits_per_image, _keep(services),
            order.prompt if settings.store_prompts else None, keep)
        services.jobs.wake()
        return built[0]

    return await idempotent(request, key.account_id, retry_key, asked, answer, error_response)


@router.get("/{job_id}", summary="A job's status", response_model=None,
            responses={200: {"model": JobAnswer}, **_errors(401, 403, 404, 429, 503)},
            openapi_extra={"parameters": KEY_PARAMETERS})
async def job_status(job_id: str, request: Request, services: ServicesDep, key: BearerKeyDep) -> JSONResponse:
    quota = _quota(services, key)
    job = await run_in_threadpool(store.status, services.db, key.account_id, job_id, _keep(services))
    return JSONResponse(_shown(request, job), headers=quota)


@router.get(
    "/{job_id}/result",
    summary="A succeeded job's image",
    response_class=Response,
    responses={200: {"content": IMAGE_CONTENT,
                     "description": "The 512x512 image: in the job's output_format, else as Accept asks.",
                     "headers": {"seed": {"description": "The seed it was made with.", "required": True,
                                          "schema": {"type": "integer", "minimum": 0, "maximum": MAX_SEED}}}},
               **_errors(401, 403, 404, 406, 409, 410, 429, 503)},
    openapi_extra={"parameters": KEY_PARAMETERS},
)
async def job_result(job_id: str, request: Request, services: ServicesDep, key: BearerKeyDep) -> Response:
    settings = services.settings
    quota = _quota(services, key)
    image = await run_in_threadpool(store.result, services.db, key.account_id, job_id, _keep(services))
    fmt = image.output_format or choose_format(request.headers.get("accept"), settings.default_format)
    content = await run_in_threadpool(image.encoded, fmt, settings.jpeg_quality)
    return Response(content, media_type=FORMATS[fmt].media_type, headers={"seed": str(image.seed), **quota})


@router.delete("/{job_id}", summary="Cancel a queued job; its credits are refunded", response_model=None,
               responses={200: {"model": JobAnswer}, **_errors(401, 403, 404, 409, 429, 503)},
               openapi_extra={"parameters": KEY_PARAMETERS})
async def cancel_job(job_id: str, request: Request, services: ServicesDep, key: BearerKeyDep) -> JSONResponse:
    quota = _quota(services, key)
    job, remaining = await run_in_threadpool(store.cancel, services.db, key.account_id, job_id, _keep(services))
    services.jobs.wake()  # its webhook
    headers = {**quota, **({"x-remaining-credits": str(remaining)} if remaining is not None else {})}
    return JSONResponse(_shown(request, job), headers=headers)
