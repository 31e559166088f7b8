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
from PIL.PngImagePlugin import PngInfo

from pixeldrop.settings import ImageFormat


def a1111_parameters(prompt: str, *, steps: int, seed: int, model: str, size: int = 512) -> str:
    """How A1111 describes an image in its PNG `parameters` chunk, which existing tools (A1111's
    PNG Info, ComfyUI, civitai, sd-parsers) read: the prompt, then one line of settings."""
    return f"{prompt}\nSteps: {steps}, Seed: {seed}, Size: {size}x{size}, Model: {model}"


def _jpeg(image: Image.Image, buffer: io.BytesIO, jpeg_quality: int, _parameters: str | None) -> None:
    image.convert("RGB").save(buffer, "JPEG", quality=jpeg_quality, optimize=True)


def _png(image: Image.Image, buffer: io.BytesIO, _jpeg_quality: int, parameters: str | None) -> None:
    info = None
    if parameters is not None:
        info = PngInfo()
        info.add_itxt("parameters", parameters)  # iTXt: prompts are UTF-8, tEXt is Latin-1 only
    # zlib level 1, not Pillow's 6: 5.7x faster on a detailed 512x512 picture (19.5 against 112 ms
    # here, 8% larger); at 6, PNG encoding alone was 5% of a fast-preset image (bench/overhead.py).
    image.save(buffer, "PNG", compress_level=1, pnginfo=info)


def _webp(image: Image.Image, buffer: io.BytesIO, _jpeg_quality: int, _parameters: str | None) -> None:
    image.save(buffer, "WEBP", quality=90, method=4)


@dataclass(frozen=True)
class Format:
    name: ImageFormat
    media_type: str  # what answers carry
    accepted: tuple[str, ...]  # what Accept headers may call it
    extensions: tuple[str, ...]  # the first is what downloads are named with
    label: str
    _save: Callable[[Image.Image, io.BytesIO, int, str | None], None]

    def encode(self, image: Image.Image, jpeg_quality: int, parameters: str | None = None) -> bytes:
        """The image's bytes; `parameters` (see `a1111_parameters`) go into formats that carry
        text (PNG), and nowhere when None (the `image_metadata` setting turns them off)."""
        buffer = io.BytesIO()
        self._save(image, buffer, jpeg_quality, parameters)
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
