"""What every training stage shares: checkpoints written atomically, a progress bar, a JSON-lines
log, and pictures as tensors in [-1, 1].

Each checkpoint goes to a temporary file that is then renamed, so a process killed mid-write
leaves the previous checkpoint whole: any stage may be stopped at any moment and resumed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


def save_atomically(obj: object, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"), TimeRemainingColumn(),
    )


def log_record(work_dir: Path, record: dict) -> None:
    with open(work_dir / "log.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 pictures, N x H x W x 3, as the N x 3 x H x W floats in [-1, 1] the models take."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    return ((images + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
