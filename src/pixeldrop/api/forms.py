"""Reading the `prompt` field out of a request body, strictly.

ClipDrop clients send `multipart/form-data` (curl -F, fetch with FormData, OkHttp, Alamofire)
or `application/x-www-form-urlencoded` (Python requests with `files={}`). Parsing is done by
python-multipart and the standard library; what is added here is strictness that Starlette's
lenient form parser does not give: bytes that are not UTF-8 are an error, not replaced.
"""

from __future__ import annotations

import io
import re
import sys
import unicodedata
from urllib.parse import parse_qs

import python_multipart
from python_multipart.exceptions import FormParserError
from starlette.requests import Request

from pixeldrop.errors import BodyTooLarge, InvalidRequest

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413) as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"The request body is larger than {limit // 1024} KiB.")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"The request body is larger than {limit // 1024} KiB.")
        chunks.append(chunk)
    return b"".join(chunks)


def _decode(value: bytes | None) -> str:
    try:
        return (value or b"").decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("The prompt is not valid UTF-8 text.") from None


def _multipart_prompt(content_type: str, body: bytes) -> str | None:
    found: list[bytes | None] = []

    def on_field(field) -> None:
        if field.field_name == b"prompt":
            found.append(field.value)

    def on_file(file) -> None:  # `-F prompt=@file.txt` sends the prompt as a file part
        if file.field_name == b"prompt":
            file.file_object.seek(0)
            found.append(file.file_object.read())

    headers = {"Content-Type": content_type.encode("latin-1"), "Content-Length": str(len(body)).encode()}
    try:
        python_multipart.parse_form(headers, io.BytesIO(body), on_field, on_file)
    except (FormParserError, ValueError) as error:
        raise InvalidRequest(f"Malformed multipart/form-data body: {error}") from None
    return _decode(found[0]) if found else None


def _urlencoded_prompt(body: bytes) -> str | None:
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise InvalidRequest("The prompt is not valid UTF-8 text.") from None
    values = fields.get("prompt")
    return values[0] if values else None


def parse_prompt(content_type: str | None, body: bytes, max_chars: int) -> str:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type == "multipart/form-data":
        prompt = _multipart_prompt(content_type, body)
    elif media_type == "application/x-www-form-urlencoded":
        prompt = _urlencoded_prompt(body)
    elif media_type == "application/json":
        raise InvalidRequest("JSON bodies are not accepted: send the prompt as multipart/form-data.")
    else:
        raise InvalidRequest("The body must be multipart/form-data with a prompt field.")
    if prompt is None:
        raise InvalidRequest("Missing prompt field in request.")
    return validate_prompt(prompt, max_chars)


# Characters that show nothing: controls (NUL...), formats (zero-width space, BOM...), spaces and
# separators; and the other default-ignorable code points, which Unicode files under letters and
# marks (Hangul fillers, variation selectors...).
_INVISIBLE_CATEGORIES = {"Cc", "Cf", "Zs", "Zl", "Zp"}
_INVISIBLE_OTHERS = [(0x034F, 0x034F), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180D), (0x180F, 0x180F),
                     (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFFA0, 0xFFA0), (0xE0100, 0xE01EF)]


def _invisible_class() -> str:
    """The invisible characters as the body of a regex class, built once from the rules above
    (literal characters, so that the pattern means the same to Python and to JSON Schema tools)."""
    others = {code for first, last in _INVISIBLE_OTHERS for code in range(first, last + 1)}
    category = unicodedata.category
    ranges, start = [], None
    for code in range(sys.maxunicode + 2):
        invisible = code <= sys.maxunicode and (code in others or category(chr(code)) in _INVISIBLE_CATEGORIES)
        if invisible and start is None:
            start = code
        elif not invisible and start is not None:
            ranges.append(chr(start) if start == code - 1 else f"{chr(start)}-{chr(code - 1)}")
            start = None
    return "".join(ranges)


# A prompt must match this somewhere: the OpenAPI schema publishes it as the prompt's `pattern`.
VISIBLE_CHARACTER = f"[^{_invisible_class()}]"
_ANY_VISIBLE = re.compile(VISIBLE_CHARACTER)


def validate_prompt(prompt: str, max_chars: int) -> str:
    """The contract's prompt rules (1 to `max_chars` characters, some of them visible), for every entry point.

    A prompt of spaces, NULs, zero-width spaces or BOMs would be charged for an image of nothing.
    """
    if len(prompt) > max_chars:
        raise InvalidRequest(f"The prompt is {len(prompt)} characters long; the maximum is {max_chars}.")
    if not _ANY_VISIBLE.search(prompt):
        raise InvalidRequest("The prompt is empty.")
    return prompt
