"""The UNet, the text encoder and TAESD's decoder in int8 on CPUs: post-training quantization
through PyTorch 2 export.

Why: on a CPU nearly all of a Stable Diffusion image is the UNet, and oneDNN's int8 convolutions
and matrix products (AVX512-VNNI on Intel and AMD, AMX-INT8 on recent Xeons) do four times the
work per instruction of fp32. Measured on the SD-Turbo UNet at 512x512 on a 2-core Xeon without
AMX: 4.0 s compiled in fp32, 1.45 s in int8 (bench/README.md, with the image error it costs).
TAESD's decoder, all convolutions and ReLUs, goes from 0.60 s compiled in fp32 to 0.15 s.

How (torchao's PT2E flow with `X86InductorQuantizer`, the route PyTorch documents for x86):
1. The pipeline makes a few images from `CALIBRATION_PROMPTS` in fp32, as it would for a user,
   while hooks record every input of the text encoder (token ids), of the UNet (real text
   states, real latents at every timestep) and of TAESD's decoder (final latents).
2. Each is exported at batch size 1 (`torch.export`), observers are inserted (`prepare_pt2e`),
   the recorded inputs run through it and fix the activation ranges, and `convert_pt2e` turns it
   into a graph of int8 weights and quantize/dequantize pairs. The UNet's and the decoder's
   activations are quantized statically (ranges fixed by calibration); the text encoder's
   linear layers dynamically (each call measures its own range: transformer text encoders have
   outlier activations that a fixed range would clip). The text encoder goes first: its int8 copy is
   a quarter of its fp32 weights, which lowers the peak while the larger UNet is converted.
3. `torch.compile` with Inductor's freezing folds the weights into packed int8 tensors and fuses
   each quantize/op/dequantize chain into one oneDNN int8 kernel. That happens on the first call
   (minutes), which is why the server warms up before it takes requests.

Batches go through it one row at a time: export cannot make a batch dimension dynamic down to 1
(it specialises sizes 0 and 1), and on a CPU the UNet is compute-bound, so a batch costs what its
rows cost one after another. One graph, compiled once, whatever `max_batch` is; classifier-free
guidance's doubled batch is two rows.

Weights are per channel, activations per tensor (the quantizer's defaults); what the quantizer
leaves alone (attention's softmax, normalisations) stays fp32, as do the KL VAE (the quality
preset's decoder) and the scheduler. The results replace `pipeline.unet`, `pipeline.text_encoder`
and TAESD's `pipeline.vae.decoder` (`Int8UNet`, `Int8TextEncoder`, `Int8Decoder`) and are called
the way diffusers' pipelines call them, so every pipeline that calls its UNet as
`unet(sample, timestep, encoder_hidden_states=...)` and its text encoder as
`text_encoder(input_ids)` with nothing else (Stable Diffusion, SD-Turbo, pixeldrop-tiny) works
unchanged; others (SDXL's `added_cond_kwargs`, attention masks, clip skip) are refused at
start-up by `quantize`, not at the first request.
"""

from __future__ import annotations

import ctypes
import gc
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers import AutoencoderTiny
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput
from torch._inductor import config as inductor_config
from transformers.modeling_outputs import BaseModelOutput

log = logging.getLogger(__name__)

# Ordinary requests: the activation ranges are set by what users ask for, not by one prompt.
CALIBRATION_PROMPTS = (
    "a red apple on a wooden table",
    "a lighthouse on a cliff at sunset, watercolor",
    "portrait of an old man with a beard",
    "a cat and a dog playing in the snow",
)
# Inductor options for the quantized graph: freezing is what lets it fold weights into packed
# int8 and fuse the quantize/dequantize pairs. (Set around each call, where compiling happens:
# given to torch.compile(options=...) they reach Inductor too late for freezing, and compiling
# fails on onednn.qlinear_prepack.) The int8 weights are kept beside their packed copies (0.8 GiB
# for SD-Turbo): discarding them would make any recompilation fail instead of taking minutes.
COMPILE_OPTIONS = {"freezing": True}
# The UNet's inputs that the exported graph takes; anything else must be None or absent.
EXTRA_ARGUMENTS = ("timestep_cond", "cross_attention_kwargs", "added_cond_kwargs")

UNetInputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class UnsupportedModel(ValueError):
    """The pipeline calls its UNet or text encoder with inputs the int8 graph does not take."""


class _Positional(torch.nn.Module):
    """The UNet as a function of (sample, timestep, encoder_hidden_states) -> noise prediction:
    the shape `torch.export` needs (tensors in, a tensor out)."""

    def __init__(self, unet: torch.nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor):
        return self.unet(sample, timestep, encoder_hidden_states, return_dict=False)[0]


class _TextPositional(torch.nn.Module):
    """The text encoder as a function of token ids -> last hidden states."""

    def __init__(self, text_encoder: torch.nn.Module):
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids: torch.Tensor):
        return self.text_encoder(input_ids)[0]


class _Int8Part(torch.nn.Module):
    """A compiled int8 graph in the place of a pipeline part, with the attributes pipelines read
    from their parts (`config`, `dtype`, `device`: those of the fp32 part it replaces)."""

    def __init__(self, graph: Callable[..., torch.Tensor], config: Any, dtype: torch.dtype, device: torch.device):
        super().__init__()
        self.graph, self.config, self._dtype, self._device = graph, config, dtype, device

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def device(self) -> torch.device:
        return self._device

    def _run(self, rows: Sequence[tuple[torch.Tensor, ...]]) -> torch.Tensor:
        """The graph on each batch-1 row (made by `split_rows` or `unet_rows`), concatenated.

        Out of inference mode, which pipelines call under, and on ordinary tensors: with
        inference tensors Inductor's freezing (the int8 weight folding) does not happen and
        compiling fails (onednn.qlinear_prepack)."""
        with torch.inference_mode(False), torch.no_grad(), inductor_config.patch(COMPILE_OPTIONS):
            return torch.cat([self.graph(*row) for row in rows])


class Int8TextEncoder(_Int8Part):
    """The text encoder's calling convention (`[0]` or `.last_hidden_state` of its output)."""

    def forward(self, input_ids, attention_mask=None, output_hidden_states=None, **extra):
        _check_extra({"attention_mask": attention_mask, "output_hidden_states": output_hidden_states or None},
                     "text encoder")
        return BaseModelOutput(last_hidden_state=self._run(split_rows(input_ids)))


class Int8Decoder(_Int8Part):
    """TAESD's decoder (`vae.decoder`): latents in, image out."""

    def forward(self, latents):
        return self._run(split_rows(latents, self._dtype))


class Int8UNet(_Int8Part):
    """The UNet's calling convention."""

    def __init__(self, graph: Callable[..., torch.Tensor], config: Any, dtype: torch.dtype, device: torch.device,
                 timestep_dtype: torch.dtype = torch.float32):
        super().__init__(graph, config, dtype, device)
        # Rows are given to the graph as it was exported (dtypes included): a call that differs
        # would be compiled again, minutes.
        self.timestep_dtype = timestep_dtype

    def forward(self, sample, timestep, encoder_hidden_states, return_dict: bool = True, **extra):
        _check_extra(extra, "UNet")
        prediction = self._run(unet_rows(sample, timestep, encoder_hidden_states,
                                         (self._dtype, self.timestep_dtype, self._dtype)))
        return UNet2DConditionOutput(sample=prediction) if return_dict else (prediction,)


def _ordinary(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """A copy of `tensor` (in `dtype` if given) that is an ordinary tensor, even when `tensor` was
    made in inference mode. A few hundred kB for a UNet row."""
    with torch.inference_mode(False):
        return tensor.to(dtype or tensor.dtype, copy=True)


def split_rows(batch: torch.Tensor, dtype: torch.dtype | None = None) -> list[tuple[torch.Tensor]]:
    """A batch (token ids, latents) as batch-1 rows: ordinary tensors, in `dtype` if given."""
    return [(_ordinary(batch[i:i + 1], dtype),) for i in range(batch.shape[0])]


def unet_rows(sample: torch.Tensor, timestep, states: torch.Tensor,
              dtypes: tuple[torch.dtype | None, ...] = (None, None, None)) -> list[UNetInputs]:
    """A batched UNet call as batch-1 calls (a 0-d timestep, shared or one per row): ordinary
    tensors, in `dtypes` (sample, timestep, states) where given."""
    timestep = torch.as_tensor(timestep)
    sample_dtype, timestep_dtype, states_dtype = dtypes
    return [(_ordinary(sample[i:i + 1], sample_dtype),
             _ordinary(timestep if timestep.ndim == 0 else timestep[i], timestep_dtype),
             _ordinary(states[i:i + 1], states_dtype)) for i in range(sample.shape[0])]


def _check_extra(extra: dict, part: str) -> None:
    given = sorted(name for name, value in extra.items() if value is not None)
    if given:
        raise UnsupportedModel(f"the int8 {part} does not take {', '.join(given)}, which this pipeline passes")


@dataclass
class Recorded:
    """The inputs of the calibration images, row by row: what each part's int8 graph is
    calibrated on (no decoder rows unless the decoder is quantized too)."""

    text: list[tuple[torch.Tensor]] = field(default_factory=list)
    unet: list[UNetInputs] = field(default_factory=list)
    decoder: list[tuple[torch.Tensor]] = field(default_factory=list)


def quantizes_decoder(pipeline) -> bool:
    """Whether the decoder is quantized too: TAESD's is (convolutions and ReLUs, 4x faster in
    int8 here); the KL VAE's is left in fp32 (its images are what the quality preset is for)."""
    return isinstance(pipeline.vae, AutoencoderTiny)


def record_inputs(pipeline, call_options: dict) -> Recorded:
    """Every text encoder, UNet and (TAESD) decoder input, row by row, of one pipeline call per
    calibration prompt (fixed seeds)."""
    recorded = Recorded()

    def record_text(module, args, kwargs):
        named = dict(zip(("input_ids", "attention_mask"), args, strict=False)) | kwargs
        _check_extra({name: named.get(name) for name in ("attention_mask", "output_hidden_states")}, "text encoder")
        recorded.text.extend(split_rows(named["input_ids"]))

    def record_unet(module, args, kwargs):
        named = dict(zip(("sample", "timestep", "encoder_hidden_states"), args, strict=False)) | kwargs
        _check_extra({name: named.get(name) for name in EXTRA_ARGUMENTS}, "UNet")
        recorded.unet.extend(unet_rows(named["sample"], named["timestep"], named["encoder_hidden_states"]))

    def record_decoder(module, args):
        recorded.decoder.extend(split_rows(args[0]))

    hooks = [pipeline.text_encoder.register_forward_pre_hook(record_text, with_kwargs=True),
             pipeline.unet.register_forward_pre_hook(record_unet, with_kwargs=True)]
    if quantizes_decoder(pipeline):
        hooks.append(pipeline.vae.decoder.register_forward_pre_hook(record_decoder))
    try:
        with torch.inference_mode():
            for seed, prompt in enumerate(CALIBRATION_PROMPTS):
                pipeline([prompt], generator=torch.Generator("cpu").manual_seed(seed), **call_options)
    finally:
        for hook in hooks:
            hook.remove()
    return recorded


def drop_unused_tensors(graph_module: torch.fx.GraphModule) -> None:
    """Delete the parameters and buffers that no node of the graph reads.

    `convert_pt2e` folds each weight into an int8 copy and leaves the fp32 original in place:
    3.2 GiB for SD-Turbo's UNet that nothing reads any more.
    """
    read = {node.target for node in graph_module.graph.nodes if node.op == "get_attr"}
    for name, _ in [*graph_module.named_parameters(), *graph_module.named_buffers()]:
        if name not in read:
            owner, _, attribute = name.rpartition(".")
            delattr(graph_module.get_submodule(owner), attribute)


def _forget_cached_modules() -> None:
    """Let go of the modules the quantization flow cached.

    torchao and torch.ao keep `assert_and_get_unique_device(module)` in an lru_cache keyed by
    the module, so the exported and observed UNets, fp32 weights and all (3.2 GiB for SD-Turbo),
    would stay alive for the life of the process.
    """
    import torchao.utils
    from torch.ao.quantization.fx import utils as fx_utils

    for owner, name in ((torchao.utils, "_assert_and_get_unique_device"), (fx_utils, "assert_and_get_unique_device")):
        cache_clear = getattr(getattr(owner, name, None), "cache_clear", None)
        if cache_clear is not None:  # private helpers: a later release may have moved them
            cache_clear()


def _return_freed_memory() -> None:
    """Free the fp32 weights just replaced and hand them back to the operating system.

    The exported and observed graphs that hold them are in reference cycles, freed only when the
    garbage collector next runs; and glibc keeps freed blocks under 32 MB in its heap, which a
    text encoder's weights are (16 MB each for SD-Turbo's). Without both, the 1.3 GiB of its fp32
    weights would stay in the process while the UNet is converted, and set the peak there.
    """
    gc.collect()
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to trim
        return
    libc.malloc_trim(0)


def _int8_graph(function: torch.nn.Module, inputs: list, dynamic: bool) -> Callable[..., torch.Tensor]:
    """`function` (tensors in, a tensor out) quantized on `inputs` (rows of its arguments) and
    compiled (lazily, on the first call). Holds none of `function`'s fp32 weights that it replaced."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86

    with torch.no_grad():
        exported = torch.export.export(function, inputs[0], strict=False).module()
        # What the function computes and does not return (a text encoder's pooled output) would
        # leave the quantizer partitions without outputs, which it cannot annotate.
        exported.graph.eliminate_dead_code()
        exported.recompile()
        quantizer = x86.X86InductorQuantizer().set_global(
            x86.get_default_x86_inductor_quantization_config(is_dynamic=dynamic))
        observed = prepare_pt2e(exported, quantizer)
        for row in inputs:
            observed(*row)
        quantized = convert_pt2e(observed)
    del observed, exported
    _forget_cached_modules()
    drop_unused_tensors(quantized)
    return torch.compile(quantized)


def quantize(pipeline, call_options: dict) -> list[str]:
    """Replace `pipeline.text_encoder`, `pipeline.unet` and TAESD's `pipeline.vae.decoder` (fp32,
    on the CPU) with their int8 versions, calibrated by running the pipeline with `call_options`
    (steps, guidance) on CALIBRATION_PROMPTS. Returns the names of the parts now in int8."""
    recorded = record_inputs(pipeline, call_options)
    log.info("quantizing to int8 on %d text encoder, %d UNet and %d decoder calls",
             len(recorded.text), len(recorded.unet), len(recorded.decoder))
    encoder = pipeline.text_encoder
    config, dtype, device = encoder.config, encoder.dtype, encoder.device
    graph = _int8_graph(_TextPositional(encoder), recorded.text, dynamic=True)
    del encoder
    pipeline.text_encoder = Int8TextEncoder(graph, config, dtype, device)
    _return_freed_memory()

    unet = pipeline.unet
    config, dtype, device = unet.config, unet.dtype, unet.device
    graph = _int8_graph(_Positional(unet), recorded.unet, dynamic=False)
    del unet
    pipeline.unet = Int8UNet(graph, config, dtype, device, timestep_dtype=recorded.unet[0][1].dtype)
    _return_freed_memory()
    parts = ["UNet", "text encoder"]

    if recorded.decoder:
        vae = pipeline.vae
        graph = _int8_graph(vae.decoder, recorded.decoder, dynamic=False)
        vae.decoder = Int8Decoder(graph, vae.config, vae.dtype, vae.device)
        _return_freed_memory()
        parts.append("decoder")
    return parts
