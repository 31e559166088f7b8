"""The OpenVINO peer for bench/generate.py: one 512x512, 1-step SD-Turbo image through OpenVINO.

    <openvino venv>/bin/python bench/peer/openvino_sd.py MODEL_DIR --decoder taesd|kl [--runs 3] [--precision f32]

The route FastSD CPU takes: optimum-intel's `OVStableDiffusionPipeline` (OpenVINO text encoder,
UNet and KL VAE decoder, exported from the diffusers folder once and cached as IR under
~/.pixeldrop/bench/openvino-ir/<hash of the model folder>), shapes fixed to batch 1 at 512x512,
compiled with the bf16 inference hint (OpenVINO falls back to f32 where the CPU has no bf16).
`--decoder taesd` decodes the latents with the folder's TAESD (`vae_tiny/`) converted by
`openvino.convert_model` (cached too) instead of the KL VAE. Runs in a venv of its own (made by
bench/generate.py) so optimum-intel's pins never touch pixeldrop's. Prints one JSON line last:
per-run seconds, peak RSS, and what ran.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

IR_ROOT = Path("~/.pixeldrop/bench/openvino-ir").expanduser()
PROMPT = "photograph of a cat surfing"
SIZE = 512


def model_hash(model: Path) -> str:
    """Changes when any file of the model folder changes (name, size or modification time)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in model.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(model)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def export(model: Path, ir_dir: Path) -> None:
    """Diffusers folder -> OpenVINO IR (optimum-intel), TAESD decoder -> IR (openvino.convert_model)."""
    import openvino as ov
    import torch
    from diffusers import AutoencoderTiny
    from optimum.intel import OVStableDiffusionPipeline

    start = time.perf_counter()
    OVStableDiffusionPipeline.from_pretrained(model, export=True, compile=False).save_pretrained(ir_dir)
    taesd = AutoencoderTiny.from_pretrained(model / "vae_tiny", torch_dtype=torch.float32).eval()
    example = torch.zeros(1, 4, SIZE // 8, SIZE // 8)
    with torch.no_grad():
        decoder = ov.convert_model(taesd.decoder, example_input=example)
    ov.save_model(decoder, ir_dir / "taesd_decoder" / "openvino_model.xml")
    (ir_dir / "done").write_text(f"{time.perf_counter() - start:.0f} s\n")


def load(ir_dir: Path, decoder: str, precision: str):
    import openvino as ov
    from optimum.intel import OVStableDiffusionPipeline

    config = {"INFERENCE_PRECISION_HINT": precision}
    pipe = OVStableDiffusionPipeline.from_pretrained(ir_dir, ov_config=config, compile=False)
    pipe.reshape(batch_size=1, height=SIZE, width=SIZE, num_images_per_prompt=1)
    # reshape() sizes the UNet for classifier-free guidance (batch 2); SD-Turbo runs without it.
    unet = pipe.unet.model
    unet.reshape({i: [1, *i.get_partial_shape()[1:]] if i.get_partial_shape().rank.get_length() > 1
                  else i.get_partial_shape() for i in unet.inputs})
    pipe.compile()
    pipe.set_progress_bar_config(disable=True)
    precision = pipe.unet.request.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    if decoder == "kl":
        return (lambda: pipe(PROMPT, num_inference_steps=1, guidance_scale=0.0).images[0]), precision

    import numpy as np
    from PIL import Image

    taesd = ov.Core().compile_model(ir_dir / "taesd_decoder" / "openvino_model.xml", "CPU", config)

    def generate():
        latents = pipe(PROMPT, num_inference_steps=1, guidance_scale=0.0, output_type="latent").images
        image = taesd(np.asarray(latents))[0][0]  # TAESD takes the latents unscaled, gives [-1, 1]
        pixels = ((image.transpose(1, 2, 0) + 1) * 127.5).clip(0, 255).round().astype(np.uint8)
        return Image.fromarray(pixels)

    return generate, precision


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("--decoder", choices=["taesd", "kl"], default="taesd")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--precision", choices=["bf16", "f32"], default="bf16", help="inference precision hint")
    parser.add_argument("--export-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    model = args.model.expanduser().resolve()
    ir_dir = IR_ROOT / model_hash(model)
    if args.export_only:
        return export(model, ir_dir)
    if not (ir_dir / "done").exists():  # in a process of its own, so its memory is not in our peak RSS
        print(f"exporting {model} to OpenVINO IR in {ir_dir} (once, a few minutes) ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, __file__, str(model), "--export-only"], check=True)
        print(f"exported in {(ir_dir / 'done').read_text().strip()}", file=sys.stderr, flush=True)

    import openvino as ov

    generate, precision = load(ir_dir, args.decoder, args.precision)
    generate()  # warm-up
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        generate()
        times.append(time.perf_counter() - start)
    what = f"OpenVINO {ov.get_version().split('-')[0]}, {precision} inference, {args.decoder} decoder"
    print(json.dumps({"times": times, "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "what": what}))


if __name__ == "__main__":
    main()
