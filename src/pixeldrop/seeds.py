"""Seeds: what fixes an image's noise, for every entry point (the ClipDrop route, the OpenAI
route, jobs, the playground, the CLI).

A seed is 0..MAX_SEED (an unsigned 32-bit number, as A1111 and ComfyUI take); the same prompt,
seed, model and preset on the same machine give the same pixels. A request without one gets a
random seed, and every image answer says which seed it used, so any image can be made again.
"""

from __future__ import annotations

import secrets

from pixeldrop.errors import InvalidRequest

MAX_SEED = 2**32 - 1


def random_seed() -> int:
    return secrets.randbelow(MAX_SEED + 1)


def parse_seed(value: str | int | None) -> int:
    """The seed a request asked for (a decimal string from a form, an int from JSON), or a random
    one when it asked for none. Anything else is InvalidRequest, before any credit moves."""
    if value is None or value == "":
        return random_seed()
    if isinstance(value, bool):  # JSON true is an int to Python, not a seed
        raise InvalidRequest(f"seed must be an integer from 0 to {MAX_SEED}.")
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit()):
            raise InvalidRequest(f"seed must be an integer from 0 to {MAX_SEED}.")
        value = int(text)
    if not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise InvalidRequest(f"seed must be an integer from 0 to {MAX_SEED}.")
    return value


def consecutive_seeds(first: int, count: int) -> list[int]:
    """The seeds of `count` images asked for with one seed: first, first + 1, ... (past MAX_SEED,
    on from 0), so that image i of a request can be made again alone with seed first + i."""
    return [(first + i) % (MAX_SEED + 1) for i in range(count)]
