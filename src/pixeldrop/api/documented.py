"""What the OpenAPI document says in more than one route: the ClipDrop-shaped error answers, an
image answer's media types, and the ClipDrop form's prompt and seed fields (also /v1/jobs')."""

from __future__ import annotations

from typing import Any

from pixeldrop.generation.formats import FORMATS
from pixeldrop.prompts import VISIBLE_CHARACTER
from pixeldrop.seeds import MAX_SEED

# What each error status means wherever it is answered; a route says its own words for the rest.
ERROR_TEXTS = {400: "Malformed request", 401: "Missing API key", 402: "No remaining credits",
               403: "Invalid or revoked API key", 406: "Accept header not acceptable",
               408: "Body not received in time", 413: "Body too large",
               422: "This Idempotency-Key was already used for a different request",
               429: "Rate limited", 431: "Too many headers"}

IMAGE_CONTENT: dict[str, dict] = {fmt.media_type: {} for fmt in FORMATS.values()}

PROMPT_AND_SEED: dict[str, dict[str, Any]] = {
    "prompt": {"type": "string", "minLength": 1, "maxLength": 1000, "pattern": VISIBLE_CHARACTER},
    "seed": {"type": "integer", "minimum": 0, "maximum": MAX_SEED,
             "description": "Fixes the image: the same prompt and seed give the same image. Random if left out."},
}


def error_responses(codes: tuple[int, ...], texts: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, in the ClipDrop shape `{"error": "..."}`:
    the route's own `texts` where it has them, else ERROR_TEXTS."""
    words = {**ERROR_TEXTS, **(texts or {})}
    return {code: {"description": words[code], "content": {"application/json": {"example": {"error": words[code]}}}}
            for code in codes}
