#!/usr/bin/env python3
"""Seconds per 512x512 SD-Turbo image on this machine: pixeldrop's presets, plain diffusers, OpenVINO.

    python bench/generate.py [--runs 3] [--model DIR] [--no-peer]

Builds the real SD-Turbo architecture with random weights (from ../shared/bench/sd-turbo, once,
into ~/.pixeldrop/bench/sd-turbo-random), then times one 1-step image per configuration, each
in a process of its own so that peak RSS is its own: pixeldrop's `fast` and `quality` presets
through the same `DiffusersGenerator` the server uses, the plain fp32 `StableDiffusionPipeline`
as the baseline, and the peer to beat: OpenVINO through optimum-intel (FastSD CPU's route, bf16
inference hint) with a TAESD decoder and with the KL VAE, run by bench/peer/openvino_sd.py in a
venv of its own (~/.pixeldrop/bench/openvino-venv, made on first use, so optimum-intel's pins
never touch pixeldrop's; the first run also exports the model to OpenVINO IR, about 3 minutes).
Prints the CPU model and whether it has AMX first, the numerical difference between the fast
path's UNet and the fp32 UNet on the same inputs, and a summary as the last line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from scale import describe_cpu

SHARED = Path(__file__).resolve().parents[2] / "shared" / "bench" / "sd-turbo"
DEFAULT_MODEL = Path("~/.pixeldrop/bench/sd-turbo-random").expanduser()
PROMPT = "photograph of a cat surfing"
PEER_SCRIPT = Path(__file__).resolve().parent / "peer" / "openvino_sd.py"
PEER_VENV = Path("~/.pixeldrop/bench/openvino-venv").expanduser()
# Versions that install together (optimum-intel 2.2 caps transformers below 5.6 and huggingface-hub
# below 1.22, hence the older diffusers). torch 2.13.0 is the CPU build here. optimum-intel also
# pulls torchvision, whose PyPI wheel is linked against CUDA torch and breaks transformers'
# imports on CPU torch; the Stable Diffusion route does not use it, so it is removed again.
PEER_PINS = ["optimum-intel[openvino]==2.2.0", "openvino==2026.4.1", "torch==2.13.0", "transformers==5.5.4",
             "diffusers==0.39.0"]
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # inherited by the spawned children
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_model(target: Path) -> None:
    if (target / "model_index.json").exists():
        return
    print(f"building the random-weight SD-Turbo pipeline in {target} ...", flush=True)
    subprocess.run([sys.executable, str(SHARED / "build_random_pipeline.py"), str(target), "--fp16"], check=True)


def peer_python() -> Path:
    """The peer venv's python; creates the venv and installs PEER_PINS the first time."""
    python, stamp = PEER_VENV / "bin" / "python", PEER_VENV / "pixeldrop-pins.txt"
    if stamp.exists() and stamp.read_text() == "\n".join(PEER_PINS):
        return python
    print(f"creating the OpenVINO peer's venv in {PEER_VENV}: pip install {' '.join(PEER_PINS)}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(PEER_VENV)], check=True)
    pip = [str(python), "-m", "pip", "-q"]
    subprocess.run([*pip, "install", *PEER_PINS], check=True)
    subprocess.run([*pip, "uninstall", "-y", "torchvision"], check=True)
    stamp.write_text("\n".join(PEER_PINS))
    return python


def run_peer(model: str, decoder: str, runs: int):
    quiet = {"TRANSFORMERS_VERBOSITY": "error", "DIFFUSERS_VERBOSITY": "error", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([str(peer_python()), str(PEER_SCRIPT), model, "--decoder", decoder, "--runs", str(runs)],
                          stdout=subprocess.PIPE, text=True, check=True, env={**os.environ, **quiet})
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["times"], result["peak_rss_kb"], result["what"], None


def _quiet() -> None:
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()


def _time(generate, runs: int) -> list[float]:
    generate()  # warm-up: first-call allocations and oneDNN kernel selection
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        generate()
        times.append(time.perf_counter() - start)
    return times


def run_preset(model: str, preset: str, runs: int, queue) -> None:
    from pixeldrop.generation import load_generator
    from pixeldrop.settings import Settings

    _quiet()
    settings = Settings(model=model, preset=preset, num_inference_steps=1, guidance_scale=0.0, _env_file=None)
    generator = load_generator(settings)
    times = _time(lambda: generator.generate([PROMPT], [0]), runs)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # before the fp32 references below
    describe = generator.describe()
    compiled = ", compiled" if describe["compiled"] else ""
    what = f"{describe['dtype']}, {describe['decoder']} decoder{compiled}"
    error = (unet_error(model, generator.pipeline.unet), image_psnr(model, generator, describe["decoder"]))
    queue.put((times, peak_rss, what, error))


def unet_error(model: str, fast_unet) -> float:
    """Relative error of the preset's UNet (its precision, compiled) against the fp32 UNet, same inputs."""
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    sample, hidden, t = torch.randn(1, 4, 64, 64), torch.randn(1, 77, 1024), torch.tensor([999])
    dtype = fast_unet.dtype
    with torch.inference_mode():
        out = fast_unet(sample.to(dtype), t, hidden.to(dtype)).sample.float()
        reference = UNet2DConditionModel.from_pretrained(model, subfolder="unet", dtype=torch.float32)
        expected = reference(sample, t, hidden).sample
    return float((out - expected).norm() / expected.norm())


def image_psnr(model: str, generator, decoder: str) -> float:
    """PSNR (dB) of the preset's image against the fp32 pipeline's with the same decoder, prompt
    and seed: what the preset's precision costs in pixels."""
    import numpy as np

    from pixeldrop.generation.diffusers_backend import DiffusersGenerator

    reference = DiffusersGenerator(model, device="cpu", precision="fp32", decoder=decoder, num_inference_steps=1,
                                   guidance_scale=0.0)
    made, expected = (np.asarray(g.generate([PROMPT], [0])[0], dtype=np.float64) for g in (generator, reference))
    return float(10 * np.log10(255**2 / max(np.mean((made - expected) ** 2), 1e-12)))


def run_plain(model: str, runs: int, queue) -> None:
    import torch
    from diffusers import StableDiffusionPipeline

    _quiet()
    pipe = StableDiffusionPipeline.from_pretrained(model, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    times = _time(lambda: pipe(PROMPT, num_inference_steps=1, guidance_scale=0.0), runs)
    queue.put((times, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "float32, full decoder", None))


def in_child(target, *args):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--no-peer", action="store_true", help="skip the OpenVINO peer")
    args = parser.parse_args()
    print(describe_cpu(), flush=True)
    build_model(args.model)
    model = str(args.model)

    configurations = [("fast", in_child, (run_preset, model, "fast")),
                      ("quality", in_child, (run_preset, model, "quality")),
                      ("plain diffusers", in_child, (run_plain, model))]
    if not args.no_peer:
        configurations += [("openvino peer", run_peer, (model, "taesd")),
                           ("openvino peer (KL VAE)", run_peer, (model, "kl"))]
    results = {}
    for name, run, run_args in configurations:
        times, rss_kb, what, error = run(*run_args, args.runs)
        results[name] = statistics.median(times)
        unet = "" if error is None else (f"  UNet rel. error vs fp32: {error[0]:.4f}, "
                                         f"image PSNR vs fp32: {error[1]:.1f} dB")
        print(f"{name:22} {what:50} median {results[name]:6.2f} s/image  "
              f"(runs: {', '.join(f'{t:.2f}' for t in times)})  peak RSS {rss_kb / 2**20:.2f} GiB{unet}", flush=True)
    fast, quality, plain = results["fast"], results["quality"], results["plain diffusers"]
    summary = f"fast: {fast:.2f} s/image, quality: {quality:.2f} s/image, plain diffusers: {plain:.2f} s/image"
    if args.no_peer:
        print(f"{summary}, speed-up: {plain / fast:.1f}x")
        return
    peer, peer_kl = results["openvino peer"], results["openvino peer (KL VAE)"]
    print(f"openvino peer (KL VAE): {peer_kl:.2f} s/image, quality vs peer (KL VAE): {peer_kl / quality:.2f}x")
    print(f"{summary}, openvino peer: {peer:.2f} s/image, speed-up: {plain / fast:.1f}x, vs peer: {peer / fast:.2f}x")


if __name__ == "__main__":
    main()
