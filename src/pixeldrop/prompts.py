"""The contract's prompt rules, for every entry point (the ClipDrop API, the playground, the CLI):
1 to `max_chars` characters, some of them visible. A prompt of spaces, NULs, zero-width spaces
or BOMs would be charged for an image of nothing. The same rule is published in the OpenAPI
schema as the prompt's `pattern` (VISIBLE_CHARACTER), so clients can know it.
"""

from __future__ import annotations

import re
import sys
import unicodedata

from pixeldrop.errors import InvalidRequest

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
    """`prompt` itself, or InvalidRequest saying which rule it breaks."""
    if len(prompt) > max_chars:
        raise InvalidRequest(f"The prompt is {len(prompt)} characters long; the maximum is {max_chars}.")
    if not _ANY_VISIBLE.search(prompt):
        raise InvalidRequest("The prompt is empty.")
    return prompt
