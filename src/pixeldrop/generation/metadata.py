"""What an answer says about the model that made its image, for every surface (the API's /healthz
and PNG answers, the playground, `pixeldrop generate`): the model by a name anyone may see, and
A1111's `parameters` text that PNG answers carry (formats.py writes it).

The shipped model is pixeldrop-tiny; a model in a local folder is named by the folder's name,
never by its path on the server (an absolute path is taken for a folder even where it does not
exist, as a Ray replica's may not on the API's machine); a hub id is named as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pixeldrop.models.tiny import WEIGHTS_DIR

from .base import DEFAULT_STEPS
from .formats import a1111_parameters

SHIPPED_MODEL = "pixeldrop-tiny"


def public_model_name(model: str) -> str:
    """What anyone may see the model `model` (a hub id or a folder) called."""
    folder = Path(model)
    if folder.is_dir() and folder.resolve() == WEIGHTS_DIR.resolve():
        return SHIPPED_MODEL
    return folder.name if folder.is_dir() or folder.is_absolute() else model


def model_name_and_steps(described: Mapping[str, Any]) -> tuple[str, int]:
    """The model's public name and its denoising steps, from an engine's or generator's `describe()`."""
    return public_model_name(str(described.get("model", ""))), described.get("num_inference_steps") or DEFAULT_STEPS


def image_parameters(prompt: str, seed: int, described: Mapping[str, Any]) -> str:
    """A1111's `parameters` text for an image that the model `described` made from `prompt` and `seed`."""
    model, steps = model_name_and_steps(described)
    return a1111_parameters(prompt, steps=steps, seed=seed, model=model)
