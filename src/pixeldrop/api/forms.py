"""Reading the `prompt` and `seed` fields out of a request body, strictly.

ClipDrop clients send `multipart/form-data` (curl -F, fetch with FormData, OkHttp, Alamofire)
or `application/x-www-form-urlencoded` (Python requests with `files={}`). Parsing is done by
python-multipart and the standard library; what is added here is strictness that Starlette's
lenient form parser does not give: bytes that are not UTF-8 are an error, not replaced. Of a
field sent twice, the first counts.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import python_multipart
from python_multipart.exceptions import FormParserError

from pixeldrop.errors import InvalidRequest
from pixeldrop.prompts import validate_prompt
from pixeldrop.seeds import parse_seed

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
FIELDS = (b"prompt", b"seed")


def media_type(content_type: str | None) -> str:
    """A Content-Type header's media type, lower-case, without its parameters ("" when absent)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


@dataclass(frozen=True)
class ImageForm:
    prompt: str
    seed: int | None  # None: the client asked for none (a random one is used)
    extra: dict[str, str] = field(default_factory=dict)  # the caller's own fields, as strictly read


def _decode(value: bytes | None, field: bytes) -> str:
    try:
        return (value or b"").decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest(f"The {field.decode()} is not valid UTF-8 text.") from None


def _multipart_fields(content_type: str, body: bytes, names: tuple[bytes, ...]) -> dict[str, str]:
    found: dict[bytes, bytes | None] = {}

    def on_field(field) -> None:
        if field.field_name in names:
            found.setdefault(field.field_name, field.value)

    def on_file(file) -> None:  # `-F prompt=@file.txt` sends the prompt as a file part
        if file.field_name == b"prompt":
            file.file_object.seek(0)
            found.setdefault(file.field_name, file.file_object.read())

    headers = {"Content-Type": content_type.encode("latin-1"), "Content-Length": str(len(body)).encode()}
    try:
        python_multipart.parse_form(headers, io.BytesIO(body), on_field, on_file)
    except (FormParserError, ValueError) as error:
        raise InvalidRequest(f"Malformed multipart/form-data body: {error}") from None
    return {name.decode(): _decode(value, name) for name, value in found.items()}


def _urlencoded_fields(body: bytes, names: tuple[bytes, ...]) -> dict[str, str]:
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise InvalidRequest("The prompt is not valid UTF-8 text.") from None
    return {name.decode(): fields[name.decode()][0] for name in names if name.decode() in fields}


def parse_form(content_type: str | None, body: bytes, max_chars: int, extra: tuple[str, ...] = ()) -> ImageForm:
    """The prompt (the prompt rules apply) and the seed asked for, if any (0 to 4294967295); and
    the `extra` fields a route takes besides them (`/v1/jobs`), read as strictly, first value wins."""
    content_type = content_type or ""
    sent_as = media_type(content_type)
    names = FIELDS + tuple(name.encode() for name in extra)
    if sent_as == "multipart/form-data":
        fields = _multipart_fields(content_type, body, names)
    elif sent_as == "application/x-www-form-urlencoded":
        fields = _urlencoded_fields(body, names)
    elif sent_as == "application/json":
        raise InvalidRequest("JSON bodies are not accepted: send the prompt as multipart/form-data.")
    else:
        raise InvalidRequest("The body must be multipart/form-data with a prompt field.")
    if "prompt" not in fields:
        raise InvalidRequest("Missing prompt field in request.")
    seed = fields.get("seed", "")
    return ImageForm(validate_prompt(fields["prompt"], max_chars), parse_seed(seed) if seed else None,
                     {name: fields[name] for name in extra if name in fields})
