"""Reading a request body with a bound, for every surface (the API's forms, the pages' forms,
Stripe's webhook): refused (413) as soon as it passes the limit, or at once when Content-Length
says it will, so that nothing is buffered past it."""

from __future__ import annotations

from starlette.requests import Request

from pixeldrop.errors import BodyTooLarge


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
