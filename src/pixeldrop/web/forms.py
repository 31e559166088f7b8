"""Page forms: at most 64 KiB, no files, refused before anything is parsed.

Every form on the pages (sign-up, sign-in, keys, the playground) is a few short fields. Starlette
parses a form of any size, spooling file parts to disk, and FastAPI parses the `Form()` fields
before any dependency runs, the CSRF check included. So `PageRoute` calls `bounded` first, on
every POST: the body is read up to `LIMIT` bytes (BodyTooLarge, 413, as soon as it passes, or
at once when Content-Length says it will), then parsed with no file parts allowed (400). What
FastAPI and the CSRF check read afterwards is that form, already parsed.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import Message, Receive

from pixeldrop.http.bodies import read_body

LIMIT = 64 * 1024
MAX_FIELDS = 16  # the largest page form has four


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body, already read, as the first message; then the client's own channel (a hang-up)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


async def bounded(request: Request) -> Request:
    """The request again, its body read within the limit and its form parsed (no file parts).

    The form is kept in `request.state.form` for the CSRF check; FastAPI's own `request.form()`
    on the returned request gets the same one, as Starlette keeps a parsed form.
    """
    body = await read_body(request, LIMIT)
    replayed = Request(request.scope, _replay(body, request.receive))
    request.state.form = await replayed.form(max_files=0, max_fields=MAX_FIELDS, max_part_size=LIMIT)
    return replayed
