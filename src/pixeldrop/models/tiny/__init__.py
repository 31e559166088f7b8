"""pixeldrop-tiny: the small text-to-image model pixeldrop trains itself and ships.

`WEIGHTS_DIR` is a diffusers pipeline folder; see MODEL_CARD.md in it. Training code lives in
`data.py` and `train.py` and is imported only by `pixeldrop train-tiny`.
"""

from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "weights"
