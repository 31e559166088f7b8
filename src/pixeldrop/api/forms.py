"""Reading the `prompt` field out of a request body, strictly.

ClipDrop clients send `multipart/form-data` (curl -F, fetch with FormData, OkHttp, Alamofire)
or `application/x-www-form-urlencoded` (Python requests with `files={}`). Parsing is done by
python-multipart and the standard library; what is added here is strictness that Starlette's
lenient form parser does not give: bytes that are not UTF-8 are an error, not replaced.
"""

from __future__ import annotations

import io
from urllib.parse import parse_qs

import python_multipart
from python_multipart.exceptions import FormParserError

from pixeldrop.errors import InvalidRequest
from pixeldrop.prompts import validate_prompt

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


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
    content_type = content_type or ""
    media_type = content_type.split(";", 1)[0].strip().lower()
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
