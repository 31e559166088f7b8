"""Choosing the image format from the Accept header (python-mimeparse does the matching)."""

from __future__ import annotations

import mimeparse

from pixeldrop.errors import NotAcceptable
from pixeldrop.generation.formats import FORMATS


def _media_range(part: str) -> tuple[str, str, dict]:
    """One media range, parsed as mimeparse does, except that a q which is not a number from 0 to 1
    is an error (ValueError): mimeparse would read `q=-1` or `q=nan` as q=1, fully acceptable."""
    main_type, subtype, params = mimeparse.parse_mime_type(part)
    params["q"] = params.get("q", "1")
    if not 0 <= float(params["q"]) <= 1:  # nan fails every comparison
        raise ValueError(f"q={params['q']} is not a quality from 0 to 1")
    return main_type, subtype, params


def choose_format(accept: str | None, default: str) -> str:
    """The format to answer in: `default` when the client accepts anything, else its best match.

    python-mimeparse scores each media type against the header (q-values, `image/*`, `*/*`).
    A format's score is that of its most specific match, so `image/*;q=0.5, image/jpeg;q=0.1`
    ranks JPEG at 0.1 even though its alias image/jpg only matches the wildcard.

    A header that does not parse (a range without a slash, a q outside 0..1, nan) is disregarded
    as a whole, as if absent, which RFC 9110 (12.5.1) allows: a lenient server answers the
    default rather than 406.
    """
    try:
        ranges = [_media_range(part) for part in (accept or "").split(",") if part.strip()]
    except ValueError:  # mimeparse's MimeTypeParseException is one
        return default
    if not ranges:
        return default

    def quality(fmt: str) -> float:
        matches = (mimeparse.quality_and_fitness_parsed(media, ranges) for media in FORMATS[fmt].accepted)
        return max((fitness, q) for q, fitness in matches)[1]

    # On equal quality: the default, then lossless PNG, then WebP (max keeps the first best).
    preference = [default] + [fmt for fmt in ("png", "jpeg", "webp") if fmt != default]
    best = max(preference, key=quality)
    if quality(best) <= 0:
        *first, last = [f.media_type for f in FORMATS.values()]
        raise NotAcceptable(f"Accept header not acceptable: this API answers {', '.join(first)} or {last}.")
    return best
