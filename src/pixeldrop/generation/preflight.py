"""What `serve` and `generate` check before loading anything.

Loading a model that is not there fails too, but late and loudly: diffusers takes a missing
folder for a hub id, retries the network for seconds, and ends in pages of chained tracebacks.
These checks find the same mistakes at once and say each in one sentence, without touching the
network when the answer is already known (a folder, the local Hugging Face cache, offline mode).
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import constants, model_info, try_to_load_from_cache
from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError
from huggingface_hub.utils import validate_repo_id

from pixeldrop.errors import InvalidInput

PIPELINE_INDEX = "model_index.json"  # what makes a folder or a hub repository a diffusers pipeline


def check_model(model: str) -> None:
    """`model` is a diffusers pipeline folder, or a hub id in the local cache or on the Hub.

    A folder wins over a hub id of the same name, as in diffusers. The Hub is asked only when the
    cache lacks the model and offline mode is off, with the Hub client's own timeout for such
    checks (HF_HUB_ETAG_TIMEOUT, 10 s), so that a machine without internet gets its answer quickly.
    """
    folder = Path(model)
    if folder.is_dir():
        if not (folder / PIPELINE_INDEX).is_file():
            raise InvalidInput(f"{model} has no {PIPELINE_INDEX}: it is not a diffusers pipeline folder")
        return
    try:
        validate_repo_id(model)
    except HFValidationError:
        raise InvalidInput(f"no such folder: {model}") from None
    if isinstance(try_to_load_from_cache(model, PIPELINE_INDEX), str):
        return
    where = f"not a folder here, nor in the Hugging Face cache ({constants.HF_HUB_CACHE})"
    if constants.HF_HUB_OFFLINE:
        raise InvalidInput(f"{model} is {where}, and HF_HUB_OFFLINE forbids downloading it")
    try:
        files = model_info(model, timeout=constants.HF_HUB_ETAG_TIMEOUT).siblings or []
    except RepositoryNotFoundError:
        raise InvalidInput(f"{model} is {where}, nor a model on the Hugging Face Hub") from None
    except Exception as error:  # the Hub client's network errors have no common base of its own
        raise InvalidInput(f"{model} is {where}, and the Hugging Face Hub cannot be reached ({error})") from None
    if PIPELINE_INDEX not in {file.rfilename for file in files}:
        raise InvalidInput(f"{model} on the Hugging Face Hub has no {PIPELINE_INDEX}: it is not a diffusers pipeline")


def check_device(device: str) -> None:
    """`device` is `auto`, or a device that torch can name and this machine has.

    A typo (`gpu`) or a GPU that is not there would otherwise surface as a traceback from inside
    the model's loading.
    """
    if device == "auto":
        return
    import torch

    try:
        wanted = torch.device(device)
    except RuntimeError:
        raise InvalidInput(f"{device} is not a device: auto, cpu, cuda, cuda:1, mps...") from None
    if wanted.type == "cpu":
        return
    accelerator = torch.accelerator.current_accelerator()
    present = accelerator is not None and accelerator.type == wanted.type
    if not present or (wanted.index or 0) >= torch.accelerator.device_count():
        raise InvalidInput(f"this machine has no {device} device")
