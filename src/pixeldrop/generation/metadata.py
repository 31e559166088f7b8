"""What an answer says about the model that made its image, for every surface (the API's /healthz
and PNG answers, the playground, `pixeldrop generate`): the model by a name anyone may see, and
A1111's `parameters` text that PNG answers carry (formats.py writes it).

The shipped model is pixeldrop-tiny; a model in a local folder is named by the folder's name,
never by its path on the server (an absolute path is taken for a folder even where it does not
exist, as a Ray replica's may not on the API's machine); a hub id is named as it is.

An engine works its `ServedModel` out once, when it starts: the model does not change while it
runs, and looking at the disk for its name on every image would be wasted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True)
class ServedModel:
    """The model an engine runs, as answers describe it."""

    described: dict[str, Any]  # the generator's `describe()`: what /healthz shows the operator
    name: str  # what anyone may see it called
    steps: int  # denoising steps per image

    @classmethod
    def of(cls, described: Mapping[str, Any]) -> ServedModel:
        """From a generator's `describe()`."""
        return cls(dict(described), public_model_name(str(described.get("model", ""))),
                   described.get("num_inference_steps") or DEFAULT_STEPS)

    def public(self) -> dict[str, Any]:
        """`described`, with a local folder by its name rather than where it is on the server."""
        return {**self.described, "model": self.name} if isinstance(self.described.get("model"), str) \
            else self.described

    def image_parameters(self, prompt: str, seed: int) -> str:
        """A1111's `parameters` text for an image this model made from `prompt` and `seed`."""
        return a1111_parameters(prompt, steps=self.steps, seed=seed, model=self.name)
