"""pixeldrop-tiny: the small text-to-image model pixeldrop trains itself and ships.

`WEIGHTS_DIR` is a diffusers pipeline folder; see MODEL_CARD.md in it. `architecture.py` holds
the model's parts (the loader imports it for the cascade autoencoder). Training, imported only by
`pixeldrop train-tiny` and the benchmarks: `data.py` builds the captioned pictures (from emoji
and the icon sets of `sources.py`), `train.py` runs the stages in order (`upscaler_training.py`
is the 512 px upscaler's, `stage_tools.py` what they share), `evaluate.py` scores a model.
"""

from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "weights"
