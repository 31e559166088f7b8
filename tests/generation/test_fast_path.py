"""The fast path computes the same function as the plain one (small configs, random weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import AutoencoderTiny, UNet2DConditionModel

from pixeldrop.generation import diffusers_backend
from pixeldrop.generation.diffusers_backend import DiffusersGenerator, pick_dtype
from pixeldrop.settings import Settings


def test_auto_precision_follows_the_hardware():
    expected = torch.bfloat16 if diffusers_backend.bf16_is_faster_here() else torch.float32
    assert pick_dtype("auto", torch.device("cpu")) == expected
    assert pick_dtype("auto", torch.device("cuda")) == torch.float16
    assert pick_dtype("fp32", torch.device("cpu")) == torch.float32
    assert pick_dtype("bf16", torch.device("cpu")) == torch.bfloat16  # asked for: no measuring


@pytest.mark.parametrize(("bf16_seconds", "fp32_seconds", "supported", "expected"), [
    (0.02, 0.04, True, torch.bfloat16),   # AMX, Zen 4: bf16 twice as fast
    (0.44, 0.24, True, torch.float32),    # AVX512-BF16 without AMX: bf16 slower, measured here
    (0.035, 0.04, True, torch.float32),   # within the margin: not worth a dtype that noise could flip
    (0.01, 0.04, False, torch.float32),   # no native bf16: never, whatever a timer says
])
def test_auto_precision_on_cpus_is_what_measures_faster(monkeypatch, bf16_seconds, fp32_seconds, supported,
                                                         expected):
    timings = {torch.bfloat16: bf16_seconds, torch.float32: fp32_seconds}
    monkeypatch.setattr(diffusers_backend, "_convolution_seconds", lambda dtype, repeats=3: timings[dtype])
    monkeypatch.setattr(diffusers_backend, "cpu_supports_bf16", lambda: supported)
    diffusers_backend.bf16_is_faster_here.cache_clear()
    try:
        assert pick_dtype("auto", torch.device("cpu")) == expected
    finally:
        diffusers_backend.bf16_is_faster_here.cache_clear()


def test_the_probe_times_a_real_convolution():
    assert 0 < diffusers_backend._convolution_seconds(torch.float32, repeats=1) < float("inf")


def test_presets_resolve_and_explicit_flags_win():
    assert (Settings(preset="fast", _env_file=None).resolved_decoder) == "tiny"
    assert (Settings(preset="quality", _env_file=None).resolved_decoder) == "full"
    assert Settings(preset="fast", decoder="full", _env_file=None).resolved_decoder == "full"
    assert Settings(preset="fast", precision="fp32", _env_file=None).resolved_precision == "fp32"
    assert Settings(_env_file=None).resolved_precision == "auto"
    assert Settings(preset="fast", _env_file=None).resolved_precision == "int8"
    assert Settings(preset="quality", _env_file=None).resolved_precision == "auto"
    assert Settings(preset="fast", _env_file=None).resolved_compile is True
    assert Settings(preset="fast", compile=False, _env_file=None).resolved_compile is False
    assert Settings(_env_file=None).resolved_compile is False


def test_bf16_channels_last_unet_matches_fp32(tiny_model):
    reference = UNet2DConditionModel.from_pretrained(tiny_model, subfolder="unet", dtype=torch.float32).eval()
    fast = DiffusersGenerator(tiny_model, device="cpu", precision="bf16").pipeline.unet
    assert fast.dtype == torch.bfloat16
    torch.manual_seed(0)
    sample, hidden, t = torch.randn(2, 4, 8, 8), torch.randn(2, 16, 32), torch.tensor([10, 900])
    with torch.inference_mode():
        expected = reference(sample, t, hidden).sample
        got = fast(sample.to(torch.bfloat16).to(memory_format=torch.channels_last), t,
                   hidden.to(torch.bfloat16)).sample.float()
    error = float((got - expected).norm() / expected.norm())
    print(f"bf16 UNet relative error: {error:.4f}")
    assert error < 0.03


@pytest.mark.parametrize("compile", [False, True])  # compiled presets compile TAESD's decoder too
def test_tiny_decoder_is_wired_as_taesd_expects(tiny_model, compile):
    generator = DiffusersGenerator(tiny_model, device="cpu", precision="fp32", decoder="tiny", compile=compile)
    pipe = generator.pipeline
    assert isinstance(pipe.vae, AutoencoderTiny) and pipe.vae.config.scaling_factor == 1.0
    assert isinstance(pipe.vae.decoder, torch._dynamo.eval_frame.OptimizedModule) == compile
    final = {}

    def keep_latents(_pipe, _step, _t, kwargs):
        final["latents"] = kwargs["latents"].clone()
        return kwargs

    image = pipe("a red apple", num_inference_steps=2, guidance_scale=0.0, output_type="np",
                 generator=torch.Generator().manual_seed(0), callback_on_step_end=keep_latents).images[0]
    taesd = AutoencoderTiny.from_pretrained(f"{tiny_model}/vae_tiny")
    with torch.inference_mode():
        decoded = taesd.decode(final["latents"]).sample  # TAESD takes the UNet's latents as they are
    manual = (decoded / 2 + 0.5).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    assert image.shape == manual.shape
    np.testing.assert_allclose(image, manual, atol=1e-4)
    assert generator.generate(["a cat"], [1])[0].size == (512, 512)
    assert generator.describe()["decoder"] == "tiny"


def test_a_local_model_without_a_tiny_decoder_needs_the_hub(tmp_path, tiny_model):
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(tiny_model, copy, ignore=shutil.ignore_patterns("vae_tiny"))
    with pytest.raises(OSError):  # offline, madebyollin/taesd cannot be fetched: a clear failure
        DiffusersGenerator(str(copy), device="cpu", precision="fp32", decoder="tiny")
