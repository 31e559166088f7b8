"""The int8 UNet, text encoder and TAESD decoder (generation/int8.py) compute what the fp32 ones
do, within quantization error, through the real PT2E flow and Inductor (small configs, random
weights)."""

from __future__ import annotations

import gc
import json
import shutil
import weakref

import numpy as np
import pytest
import torch
from diffusers import AutoencoderTiny, UNet2DConditionModel
from transformers import BertModel

from pixeldrop.generation import int8
from pixeldrop.generation.diffusers_backend import DiffusersGenerator


@pytest.fixture(scope="module")
def int8_generator(tiny_model):
    # Calibrates on CALIBRATION_PROMPTS, then compiles on the first call (about a minute here).
    return DiffusersGenerator(tiny_model, device="cpu", precision="int8", decoder="tiny")


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value - reference).norm() / reference.norm())


def test_the_unet_text_encoder_and_decoder_are_replaced_by_their_calibrated_int8_graphs(int8_generator):
    unet, encoder = int8_generator.pipeline.unet, int8_generator.pipeline.text_encoder
    assert isinstance(unet, int8.Int8UNet) and isinstance(encoder, int8.Int8TextEncoder)
    assert isinstance(int8_generator.pipeline.vae.decoder, int8.Int8Decoder)
    assert unet.dtype == torch.float32 and unet.config.in_channels == 4  # what pipelines read
    assert encoder.dtype == torch.float32 and encoder.config.hidden_size == 32
    description = int8_generator.describe()
    assert description["dtype"] == "int8 UNet, text encoder and decoder, float32" and description["compiled"] is True


def test_the_int8_text_encoder_tracks_the_fp32_one(int8_generator, tiny_model):
    reference = BertModel.from_pretrained(tiny_model, subfolder="text_encoder", dtype=torch.float32).eval()
    ids = int8_generator.pipeline.tokenizer(["a red apple", "a lighthouse at night"], padding="max_length",
                                            truncation=True, return_tensors="pt").input_ids
    with torch.inference_mode():
        quantized = int8_generator.pipeline.text_encoder(ids)[0]
        expected = reference(ids)[0]
    assert quantized.shape == expected.shape
    error = relative_error(quantized, expected)
    assert 0 < error < 0.1, error


def test_the_int8_unet_tracks_the_fp32_unet_row_by_row(int8_generator, tiny_model):
    reference = UNet2DConditionModel.from_pretrained(tiny_model, subfolder="unet", dtype=torch.float32).eval()
    torch.manual_seed(0)
    # A batch of three with a timestep per row, and a batch of two sharing one float timestep (the
    # graph was exported with the scheduler's int64 ones: cast, not compiled again).
    for sample, t, hidden in [(torch.randn(3, 4, 8, 8), torch.tensor([10, 500, 900]), torch.randn(3, 16, 32)),
                              (torch.randn(2, 4, 8, 8), torch.tensor(700.0), torch.randn(2, 16, 32))]:
        with torch.inference_mode():
            quantized = int8_generator.pipeline.unet(sample, t, hidden).sample
            expected = reference(sample, t, hidden).sample
        assert quantized.shape == expected.shape
        error = relative_error(quantized, expected)
        assert 0 < error < 0.1, error  # quantized (not the fp32 graph), and close to it


def test_the_int8_decoder_tracks_the_fp32_one(int8_generator, tiny_model):
    reference = AutoencoderTiny.from_pretrained(f"{tiny_model}/vae_tiny").eval()
    torch.manual_seed(0)
    latents = torch.randn(2, 4, 8, 8)
    with torch.inference_mode():
        quantized = int8_generator.pipeline.vae.decode(latents).sample
        expected = reference.decode(latents).sample
    assert quantized.shape == expected.shape and quantized.shape[:2] == (2, 3)
    error = relative_error(quantized, expected)
    assert 0 < error < 0.1, error


def test_int8_images_are_the_fp32_images_within_quantization_error(int8_generator, tiny_model):
    fp32 = DiffusersGenerator(tiny_model, device="cpu", precision="fp32", decoder="tiny")
    prompts, seeds = ["a red apple", "a blue boot"], [3, 4]
    quantized = np.stack([np.asarray(image, dtype=np.float64) for image in int8_generator.generate(prompts, seeds)])
    expected = np.stack([np.asarray(image, dtype=np.float64) for image in fp32.generate(prompts, seeds)])
    assert quantized.shape == expected.shape == (2, 512, 512, 3)
    psnr = 10 * np.log10(255**2 / np.mean((quantized - expected) ** 2))
    assert psnr > 25, psnr


def test_calls_with_inputs_the_graphs_do_not_take_are_refused():
    unet = int8.Int8UNet(lambda sample, t, states: sample, config={}, dtype=torch.float32,
                         device=torch.device("cpu"))
    sample, states = torch.zeros(1, 4, 8, 8), torch.zeros(1, 16, 32)
    assert unet(sample, torch.tensor(1), states, timestep_cond=None, return_dict=False)[0] is not None
    with pytest.raises(int8.UnsupportedModel, match="added_cond_kwargs"):
        unet(sample, torch.tensor(1), states, added_cond_kwargs={"text_embeds": sample})
    encoder = int8.Int8TextEncoder(lambda ids: ids.float(), config={}, dtype=torch.float32, device=torch.device("cpu"))
    ids = torch.ones(2, 16, dtype=torch.int64)
    assert encoder(ids)[0].shape == (2, 16) and encoder(ids, attention_mask=None).last_hidden_state is not None
    with pytest.raises(int8.UnsupportedModel, match="attention_mask"):
        encoder(ids, attention_mask=torch.ones_like(ids))
    with pytest.raises(int8.UnsupportedModel, match="output_hidden_states"):
        encoder(ids, output_hidden_states=True)


def test_the_fp32_weights_are_let_go_once_quantized(tiny_model):
    generator = DiffusersGenerator(tiny_model, device="cpu", precision="fp32")
    # The weights of convolutions and linear layers: what int8 copies replace (biases, norms stay).
    weights = [weakref.ref(module.weight) for part in (generator.pipeline.unet, generator.pipeline.text_encoder)
               for module in part.modules() if isinstance(module, torch.nn.Conv2d | torch.nn.Linear)]
    kl_decoder = generator.pipeline.vae.decoder
    parts = int8.quantize(generator.pipeline, generator._call_options())  # compiles later, on the first call
    gc.collect()
    assert isinstance(generator.pipeline.unet, int8.Int8UNet)
    # The KL VAE (the quality preset's decoder) stays as it was: only TAESD's decoder is quantized.
    assert parts == ["UNet", "text encoder"] and generator.pipeline.vae.decoder is kl_decoder
    assert all(weight() is None for weight in weights), "fp32 weights still held (GiBs for real models)"


def test_a_model_whose_recipe_declines_int8_runs_as_auto(tiny_model, tmp_path):
    folder = shutil.copytree(tiny_model, tmp_path / "model")
    recipe = json.loads((folder / "pixeldrop.json").read_text())
    (folder / "pixeldrop.json").write_text(json.dumps(recipe | {"int8": False, "precision": "fp32"}))
    generator = DiffusersGenerator(str(folder), device="cpu", precision="int8")
    assert not isinstance(generator.pipeline.unet, int8.Int8UNet) and generator.dtype == torch.float32
    assert generator.describe()["dtype"] == "float32"
