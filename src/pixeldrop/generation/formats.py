"""The image formats pixeldrop answers in, in one registry.

Each format knows what it is called in Accept headers, the media type answers carry, its file
extension and label, and how it is encoded. Content negotiation, the playground, the OpenAPI
document and `pixeldrop generate -o` all read FORMATS; the settings' `ImageFormat` names the
same keys (checked below).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import get_args

from PIL import Image

from pixeldrop.settings import ImageFormat


def _jpeg(image: Image.Image, buffer: io.BytesIO, jpeg_quality: int) -> None:
    image.convert("RGB").save(buffer, "JPEG", quality=jpeg_quality, optimize=True)


def _png(image: Image.Image, buffer: io.BytesIO, _jpeg_quality: int) -> None:
    image.save(buffer, "PNG", optimize=False)


def _webp(image: Image.Image, buffer: io.BytesIO, _jpeg_quality: int) -> None:
    image.save(buffer, "WEBP", quality=90, method=4)


@dataclass(frozen=True)
class Format:
    name: ImageFormat
    media_type: str  # what answers carry
    accepted: tuple[str, ...]  # what Accept headers may call it
    extensions: tuple[str, ...]  # the first is what downloads are named with
    label: str
    _save: Callable[[Image.Image, io.BytesIO, int], None]

    def encode(self, image: Image.Image, jpeg_quality: int) -> bytes:
        buffer = io.BytesIO()
        self._save(image, buffer, jpeg_quality)
        return buffer.getvalue()


FORMATS: dict[str, Format] = {
    # image/jpg is not registered, but ClipDrop's page names it, so clients send it.
    "jpeg": Format("jpeg", "image/jpeg", ("image/jpeg", "image/jpg"), ("jpg", "jpeg"), "JPEG", _jpeg),
    "png": Format("png", "image/png", ("image/png",), ("png",), "PNG", _png),
    "webp": Format("webp", "image/webp", ("image/webp",), ("webp",), "WebP", _webp),
}
if set(FORMATS) != set(get_args(ImageFormat)):
    raise RuntimeError("settings.ImageFormat and FORMATS must name the same formats")


def format_for_path(suffix: str) -> Format | None:
    """The format a file name's extension (`.png`, `.JPG`) asks for, if any."""
    wanted = suffix.lower().lstrip(".")
    return next((fmt for fmt in FORMATS.values() if wanted in fmt.extensions), None)
