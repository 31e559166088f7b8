"""What answers say about the model: worked out once, when the engine starts, from the generator's
`describe()`; a model folder by its name, never by where it is on the server."""

from __future__ import annotations

import asyncio

from PIL import Image

from pixeldrop.generation import GenerationWorker
from pixeldrop.generation.base import DEFAULT_STEPS
from pixeldrop.generation.metadata import ServedModel


class InAFolder:
    """A model in a folder on the server, counting how often it is asked to describe itself."""

    steps = 4

    def __init__(self, folder: str):
        self.folder = folder
        self.described = 0

    def generate(self, prompts, seeds, progress=None):
        return [Image.new("RGB", (512, 512), (seed % 256, 0, 0)) for seed in seeds]

    def describe(self):
        self.described += 1
        return {"model": self.folder, "num_inference_steps": self.steps, "dtype": "float32"}


def test_the_engine_describes_its_model_once_for_every_image(tmp_path):
    folder = tmp_path / "my-model"
    folder.mkdir()
    model = InAFolder(str(folder))
    engine = GenerationWorker(model, max_batch=1).start()
    try:
        async def three_images() -> None:
            for seed in range(3):
                await engine.generate(engine.admit(), "a red apple", seed)

        asyncio.run(three_images())
        parameters = [engine.model.image_parameters("a red apple", seed) for seed in range(3)]
    finally:
        engine.stop()
    assert model.described == 1, "not once per image"
    assert engine.images_made == 3
    assert parameters[2] == "a red apple\nSteps: 4, Seed: 2, Size: 512x512, Model: my-model"
    assert str(tmp_path) not in engine.model.public()["model"] and engine.model.public()["dtype"] == "float32"
    assert engine.model.described["model"] == str(folder), "the operator sees where it is"


def test_a_model_that_names_no_steps_runs_diffusers_default():
    served = ServedModel.of({"model": "stabilityai/sd-turbo"})
    assert (served.name, served.steps) == ("stabilityai/sd-turbo", DEFAULT_STEPS)
