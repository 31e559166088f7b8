"""Training pixeldrop-tiny: autoencoder, cached latents, the 512 px upscaler, then the UNet.

Every stage resumes from its last checkpoint in the work folder, so training may be stopped at
any moment (a session ends, a laptop sleeps) and started again with the same command
(`stage_tools.save_atomically`: a kill mid-write loses nothing). The upscaler's stage lives in
`upscaler_training.py`; this module runs the stages in order, exports, and seeds checkpoints
from an export.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F

# From the defining modules, as in architecture.py: diffusers' top-level names are placeholders to mypy.
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from diffusers.training_utils import EMAModel
from PIL import Image

from . import architecture as arch
from .data import build_dataset
from .stage_tools import log_record, progress_bar, save_atomically, to_tensor
from .upscaler_training import train_upscaler

# CHECKPOINTS, and bandit B614 (marked "nosec B614" on the torch.load calls here and in upscaler_training.py):
# `weights_only=False` loads only this training run's own checkpoints (vae.pt, vae_normalised.pt, unet.pt,
# upscaler.pt, with optimizer state and step counters), which stage_tools.save_atomically wrote into the
# operator's --work-dir; never a file from a user, a request or the network (an export is read back with
# from_pretrained, see seed_from_export). Whoever can write that folder can already change the code run.

SAMPLE_PROMPTS = [
    "a red apple", "a cat", "a green apple", "two dogs", "a smiling face", "a rocket",
    "a blue car", "a cat and a dog", "a pizza on a blue background", "a yellow flower",
    "a house", "a purple heart", "a sun", "an umbrella", "a guitar", "a photograph of a cat surfing",
]


@dataclass
class TrainConfig:
    work_dir: Path
    vae_steps: int = 3000
    upscaler_steps: int = 2000
    unet_steps: int = 100_000
    batch_size: int = 32
    upscaler_batch_size: int = 8
    vae_lr: float = 5e-4
    upscaler_lr: float = 5e-4  # the 64 px decoder fine-tunes at a fifth of it
    upscaler_joint_from: int = 1000  # then the 64 px decoder and a discriminator join
    upscaler_adversarial_weight: float = 0.05
    unet_lr: float = 2e-4
    # The last `unet_cooldown_steps` steps before `unet_steps` take the learning rate linearly down to
    # zero (warmup-stable-decay): a cooldown settles the weights that a constant rate keeps moving,
    # and the run can stretch later (a larger `unet_steps` restarts at the full rate, then cools again).
    unet_cooldown_steps: int = 0
    caption_dropout: float = 0.1
    # Share of each UNet batch drawn from the icon sources (sources.SOURCES); the rest from the
    # emoji and their augmentations. They are 58% of the rows: drawn uniformly, the emoji, which
    # the model knows best and people ask for most, would lose over half of their steps.
    icon_share: float = 0.5
    ema_decay: float = 0.999
    checkpoint_every: int = 250
    sample_every: int = 1000
    threads: int = 1
    seed: int = 0


def train_vae(cfg: TrainConfig, data: dict) -> AutoencoderKL:
    path = cfg.work_dir / "vae.pt"
    vae = arch.new_vae()
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    step = 0
    if path.exists():
        state = torch.load(path, weights_only=False)  # nosec B614 # our own checkpoint: see CHECKPOINTS
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
    if step >= cfg.vae_steps:
        return vae.eval()
    train_idx = np.flatnonzero(~data["held_out"])
    eval_images = to_tensor(data["images"][np.flatnonzero(data["held_out"])[:256]])
    rng = np.random.default_rng(cfg.seed + step)
    vae.train()
    with progress_bar() as progress:
        task = progress.add_task("autoencoder", total=cfg.vae_steps, completed=step, status="")
        while step < cfg.vae_steps:
            x = to_tensor(data["images"][rng.choice(train_idx, cfg.batch_size)])
            with torch.autocast("cpu", dtype=torch.bfloat16):
                posterior = vae.encode(x).latent_dist
                recon = vae.decode(posterior.sample()).sample.float()
            kl = posterior.kl().mean() / (4 * arch.LATENT_SIZE**2)
            loss = F.l1_loss(recon, x) + F.mse_loss(recon, x) + 1e-6 * kl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % cfg.checkpoint_every == 0 or step == cfg.vae_steps:
                psnr = _psnr(vae, eval_images)
                vae.train()
                progress.update(task, status=f"loss {loss.item():.4f} held-out PSNR {psnr:.1f} dB")
                log_record(cfg.work_dir, {"stage": "vae", "step": step, "loss": loss.item(), "psnr": psnr})
                save_atomically({"model": vae.state_dict(), "opt": opt.state_dict(), "step": step}, path)
            progress.update(task, completed=step)
    return vae.eval()


@torch.no_grad()
def _psnr(vae: AutoencoderKL, images: torch.Tensor) -> float:
    vae.eval()
    recon = vae.decode(vae.encode(images).latent_dist.mode()).sample.clamp(-1, 1)
    mse = F.mse_loss((recon + 1) / 2, (images + 1) / 2).item()
    return 10 * math.log10(1.0 / max(mse, 1e-10))


@torch.no_grad()
def normalise_latents(vae: AutoencoderKL, data: dict) -> None:
    """Fold a per-channel shift and scale into the VAE's 1x1 convolutions.

    Latents must be roughly zero-mean unit-variance per channel for diffusion, but diffusers'
    Stable Diffusion pipeline only knows one scalar `scaling_factor`. Folding the statistics
    into `quant_conv` (encoder side) and `post_quant_conv` (decoder side) gives normalised
    latents with scaling_factor 1.0, so the stock pipeline needs no change.
    """
    means = []
    for start in range(0, len(data["images"]), 256):
        means.append(vae.encode(to_tensor(data["images"][start : start + 256])).latent_dist.mean)
    latents = torch.cat(means)
    mu = latents.mean(dim=(0, 2, 3))
    sigma = latents.std(dim=(0, 2, 3))
    c = mu.numel()
    quant = vae.quant_conv  # outputs [mean (c), logvar (c)]
    post = vae.post_quant_conv  # consumes z = z_norm * sigma + mu
    if quant is None or quant.bias is None or post is None or post.bias is None:
        raise ValueError("the autoencoder has no quant_conv/post_quant_conv (with biases) to fold the statistics into")
    quant.weight[:c] /= sigma.view(-1, 1, 1, 1)
    quant.bias[:c] = (quant.bias[:c] - mu) / sigma
    quant.bias[c:] -= 2 * torch.log(sigma)
    post.bias += (post.weight[:, :, 0, 0] @ mu)
    post.weight *= sigma.view(1, -1, 1, 1)


@torch.no_grad()
def cache_latents(cfg: TrainConfig, vae: AutoencoderKL | None, data: dict) -> dict:
    """Latent mean and std of every image, from the normalised autoencoder (`vae` is the
    freshly trained one to normalise, or None when `vae_normalised.pt` exists already)."""
    path = cfg.work_dir / "latents.npz"
    if not path.exists():
        if not (cfg.work_dir / "vae_normalised.pt").exists():
            if vae is None:
                raise ValueError("no vae_normalised.pt in the work folder: pass the trained autoencoder")
            normalise_latents(vae, data)
            save_atomically({"model": vae.state_dict(), "step": cfg.vae_steps, "normalised": True},
                            cfg.work_dir / "vae_normalised.pt")
        vae = normalised_vae(cfg)
        means, stds = [], []
        for start in range(0, len(data["images"]), 256):
            dist = vae.encode(to_tensor(data["images"][start : start + 256])).latent_dist
            means.append(dist.mean.half().numpy())
            stds.append(dist.std.half().numpy())
        np.savez(path.with_suffix(".tmp.npz"), mean=np.concatenate(means), std=np.concatenate(stds))
        os.replace(path.with_suffix(".tmp.npz"), path)
    return dict(np.load(path))


def normalised_vae(cfg: TrainConfig) -> AutoencoderKL:
    vae = arch.new_vae()
    vae.load_state_dict(torch.load(cfg.work_dir / "vae_normalised.pt", weights_only=False)["model"])  # nosec B614
    return vae.eval()



@torch.no_grad()
def cache_text(cfg: TrainConfig, pipe: StableDiffusionPipeline, captions: np.ndarray) -> np.ndarray:
    """Token states for every caption, computed by the pipeline's own `encode_prompt`.

    Using the pipeline itself guarantees the UNet trains on exactly what it will see at
    generation time (same tokenizer padding, same truncation).
    """
    path = cfg.work_dir / "text.npy"
    if not path.exists():
        out = np.zeros((len(captions), arch.MAX_TOKENS, arch.TEXT_DIM), dtype=np.float16)
        with progress_bar() as progress:
            task = progress.add_task("text states", total=len(captions), status="")
            for start in range(0, len(captions), 256):
                batch = [str(c) for c in captions[start : start + 256]]
                embeds, _ = pipe.encode_prompt(batch, "cpu", 1, False)
                out[start : start + len(batch)] = embeds.half().numpy()
                progress.update(task, advance=len(batch))
        np.save(path.with_suffix(".tmp.npy"), out)
        os.replace(path.with_suffix(".tmp.npy"), path)
    return np.load(path, mmap_mode="r")


def build_pipeline(vae: AutoencoderKL, unet: UNet2DConditionModel) -> StableDiffusionPipeline:
    tokenizer, text_encoder = arch.load_text_encoder()
    # The ignores are for diffusers' annotations, narrower than what the pipeline takes: `text_encoder` is
    # typed CLIPTextModel (any transformers encoder works), `scheduler` as the KarrasDiffusionSchedulers enum
    # (meant: one of those scheduler classes), and safety_checker/feature_extractor without the None its
    # docs allow (with requires_safety_checker=False).
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,  # type: ignore[arg-type]
        scheduler=arch.sampling_scheduler(), safety_checker=None, feature_extractor=None,  # type: ignore[arg-type]
        requires_safety_checker=False,
    )


def _batch_rows(rng: np.random.Generator, icons: np.ndarray, emoji: np.ndarray, size: int,
                icon_share: float) -> np.ndarray:
    """Row numbers of one batch: `icon_share` of them icons, the rest emoji (all of one kind
    where the other has no rows)."""
    n_icons = round(size * icon_share) if len(icons) and len(emoji) else (size if len(icons) else 0)
    return np.concatenate([rng.choice(icons, n_icons), rng.choice(emoji, size - n_icons)])


def unet_learning_rate(cfg: TrainConfig, step: int) -> float:
    """The UNet's rate at `step`: 500 steps of warm-up, constant, then the cooldown to zero."""
    warmup = min(1.0, (step + 1) / 500)
    left = cfg.unet_steps - step
    cooldown = min(1.0, left / cfg.unet_cooldown_steps) if cfg.unet_cooldown_steps else 1.0
    return cfg.unet_lr * min(warmup, cooldown)


def train_unet(cfg: TrainConfig, data: dict, latents: dict, pipe: StableDiffusionPipeline) -> None:
    path = cfg.work_dir / "unet.pt"
    unet = pipe.unet
    ema = EMAModel(unet.parameters(), decay=cfg.ema_decay)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.unet_lr, weight_decay=0.01)
    step = 0
    if path.exists():
        state = torch.load(path, weights_only=False)  # nosec B614 # our own checkpoint: see CHECKPOINTS
        unet.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        ema.load_state_dict(state["ema"])
        step = state["step"]
    text = cache_text(cfg, pipe, data["captions"])
    uncond = pipe.encode_prompt([""], "cpu", 1, False)[0].float()
    noise_scheduler = arch.training_scheduler()
    alphas = noise_scheduler.alphas_cumprod
    is_icon = data["kinds"] == "icon"
    train_icons, train_emoji = (np.flatnonzero(~data["held_out"] & is_icon),
                                np.flatnonzero(~data["held_out"] & ~is_icon))
    caption_ids = data["caption_ids"]
    lat_mean = torch.from_numpy(latents["mean"].astype(np.float32))
    lat_std = torch.from_numpy(latents["std"].astype(np.float32))
    rng = np.random.default_rng(cfg.seed + 7919 * step)
    unet.train()
    started, last = time.time(), step
    with progress_bar() as progress:
        task = progress.add_task("unet", total=cfg.unet_steps, completed=step, status="")
        while step < cfg.unet_steps:
            idx = _batch_rows(rng, train_icons, train_emoji, cfg.batch_size, cfg.icon_share)
            ids = caption_ids[idx]
            counts = (ids >= 0).sum(1)
            chosen = ids[np.arange(len(idx)), rng.integers(0, counts)]
            cond = torch.from_numpy(text[chosen].astype(np.float32))
            drop = torch.from_numpy(rng.random(len(idx)) < cfg.caption_dropout)
            cond[drop] = uncond
            x0 = lat_mean[idx] + lat_std[idx] * torch.randn_like(lat_mean[idx])
            noise = torch.randn_like(x0)
            t = torch.randint(0, noise_scheduler.config["num_train_timesteps"], (len(idx),))
            # add_noise is annotated with the legacy `torch.IntTensor`; it takes any integer tensor (int64 here).
            xt = noise_scheduler.add_noise(x0, noise, cast(torch.IntTensor, t))
            a = alphas[t].sqrt().view(-1, 1, 1, 1)
            s = (1 - alphas[t]).sqrt().view(-1, 1, 1, 1)
            target = a * noise - s * x0
            for group in opt.param_groups:
                group["lr"] = unet_learning_rate(cfg, step)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                pred = unet(xt, t, cond).sample.float()
            loss = F.mse_loss(pred, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
            opt.step()
            ema.step(unet.parameters())
            step += 1
            progress.update(task, completed=step, status=f"loss {loss.item():.4f}")
            if step % 50 == 0:
                log_record(cfg.work_dir, {"stage": "unet", "step": step, "loss": loss.item(),
                                          "s_per_step": (time.time() - started) / max(step - last, 1)})
            if step % cfg.checkpoint_every == 0:
                save_atomically({"model": unet.state_dict(), "opt": opt.state_dict(),
                                "ema": ema.state_dict(), "step": step}, path)
            if step % cfg.sample_every == 0:
                save_samples(cfg, pipe, ema, step)
                unet.train()


@torch.no_grad()
def save_samples(cfg: TrainConfig, pipe: StableDiffusionPipeline, ema: EMAModel, step: int) -> Path:
    ema.store(pipe.unet.parameters())
    ema.copy_to(pipe.unet.parameters())
    pipe.unet.eval()
    images = pipe(SAMPLE_PROMPTS, num_inference_steps=20, guidance_scale=5.0,
                  generator=torch.Generator().manual_seed(0), output_type="np").images
    ema.restore(pipe.unet.parameters())
    grid = (np.concatenate([np.concatenate(list(images[r * 8 : (r + 1) * 8]), 1) for r in range(2)], 0) * 255)
    out = cfg.work_dir / "samples" / f"step-{step:06d}.png"
    out.parent.mkdir(exist_ok=True)
    Image.fromarray(grid.round().astype(np.uint8)).save(out)
    return out


def ema_unet(cfg: TrainConfig) -> tuple[UNet2DConditionModel, int]:
    """The EMA weights of the last UNet checkpoint: what gets exported and evaluated."""
    unet = arch.new_unet()
    state = torch.load(cfg.work_dir / "unet.pt", weights_only=False)  # nosec B614 # see CHECKPOINTS
    ema = EMAModel(unet.parameters(), decay=cfg.ema_decay)
    ema.load_state_dict(state["ema"])
    ema.copy_to(unet.parameters())
    return unet.eval(), state["step"]


def drop_stale_caches(cfg: TrainConfig, fingerprint: str) -> None:
    """Latents, text states and the retrieval scorer belong to one dataset: when `dataset.npz` was
    rebuilt from other sources (another fingerprint), they are made again; checkpoints stay."""
    stamp = cfg.work_dir / "caches.fingerprint"
    if stamp.exists() and stamp.read_text() == fingerprint:
        return
    for name in ("latents.npz", "text.npy", "scorer.pt"):
        (cfg.work_dir / name).unlink(missing_ok=True)
    stamp.write_text(fingerprint)


def train(cfg: TrainConfig) -> None:
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed + int(time.time()))
    cfg.work_dir.mkdir(parents=True, exist_ok=True)
    (cfg.work_dir / "config.json").write_text(json.dumps(asdict(cfg), default=str, indent=2))
    data = build_dataset(cfg.work_dir)
    drop_stale_caches(cfg, str(data["fingerprint"]))
    vae = None if (cfg.work_dir / "vae_normalised.pt").exists() else train_vae(cfg, data)
    latents = cache_latents(cfg, vae, data)
    small = normalised_vae(cfg)
    if cfg.upscaler_steps > 0:  # 0: skip the 512 px upscaler, train the UNet only
        train_upscaler(cfg, small)
    # The UNet trains (and draws its progress samples) with the 64 px autoencoder: same latents.
    pipe = build_pipeline(small, arch.new_unet())
    train_unet(cfg, data, latents, pipe)


def export(cfg: TrainConfig, out_dir: Path) -> Path:
    """Save the EMA weights as a diffusers pipeline folder, fp16 safetensors.

    The MiniLM text encoder is not copied (90 MB): `pixeldrop.json` names the package it comes
    from, and pixeldrop's loader passes it to `from_pretrained`. The 512 px upscaler goes in once
    its stage has run all `upscaler_steps` (until then the pipeline decodes at 64 px and the
    server enlarges), as the `vae` of class `CascadeAutoencoder`, which the recipe also names.
    """
    import shutil

    unet, unet_steps = ema_unet(cfg)
    vae = normalised_vae(cfg)
    upscaler_path = cfg.work_dir / "upscaler.pt"
    state = torch.load(upscaler_path, weights_only=False) if upscaler_path.exists() else {"step": 0}  # nosec B614
    upscaler_steps = 0
    components = {"text_encoder": {
        "package": arch.TEXT_ENCODER_PACKAGE,
        "class": "transformers.BertModel",
        "kwargs": {"add_pooling_layer": False},
    }}
    if state["step"] >= cfg.upscaler_steps > 0:
        vae, upscaler_steps = arch.CascadeAutoencoder.around(vae), state["step"]
        vae.load_state_dict(state["model"])
        cls = type(vae)
        components["vae"] = {"class": f"{cls.__module__}.{cls.__qualname__}", "subfolder": "vae"}
    pipe = build_pipeline(vae.eval(), unet)
    pipe.scheduler.register_to_config(steps_offset=1)
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.to(torch.float16).save_pretrained(tmp, safe_serialization=True)
    shutil.rmtree(tmp / "text_encoder")
    (tmp / arch.RECIPE_NAME).write_text(json.dumps({
        "description": f"pixeldrop-tiny, trained {unet_steps} UNet steps on emoji and icons (see MODEL_CARD.md)",
        "num_inference_steps": 20,
        "guidance_scale": 5.0,
        # Measured on 2 cores: bf16 0.58 s against fp32 0.39 s on an EPYC (ops too small to
        # gain); 0.59 s against 0.72 s on a Xeon with AMX. fp32 is never far from the best.
        "precision": "fp32",
        # Its UNet is too small for int8 to pay (one 16x16 latent, 17.7M parameters): with
        # --preset fast, fp32 compiled 0.60 s against int8 0.72-0.82 s per image (Xeon, no AMX).
        "int8": False,
        "components": components,
        "training": {"unet_steps": unet_steps, "upscaler_steps": upscaler_steps},
    }, indent=2) + "\n")
    card = out_dir / "MODEL_CARD.md"
    if card.exists():
        shutil.copy(card, tmp / "MODEL_CARD.md")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return out_dir


def seed_from_export(cfg: TrainConfig, folder: Path) -> list[str]:
    """Turn an exported pipeline (the shipped one, say) into checkpoints to train on from.

    Training checkpoints live on one machine; the shipped weights travel with the code. Seeding
    writes only the checkpoints the work folder lacks, with fresh optimiser state and the step
    counts the export recorded, and returns the names of those it wrote.
    """
    folder = Path(folder)
    cfg.work_dir.mkdir(parents=True, exist_ok=True)
    steps = json.loads((folder / arch.RECIPE_NAME).read_text()).get("training", {})
    is_cascade = json.loads((folder / "vae" / "config.json").read_text())["_class_name"] == "CascadeAutoencoder"
    vae_class = arch.CascadeAutoencoder if is_cascade else AutoencoderKL
    vae = vae_class.from_pretrained(folder / "vae", torch_dtype=torch.float32)
    written = []
    if not (cfg.work_dir / "vae_normalised.pt").exists():
        # A cascade's 64 px decoder has been fine-tuned; the encoder, hence the latents, are the same.
        small = vae.small() if is_cascade else vae
        save_atomically({"model": small.state_dict(), "step": cfg.vae_steps, "normalised": True},
                        cfg.work_dir / "vae_normalised.pt")
        written.append("vae_normalised.pt")
    if is_cascade and not (cfg.work_dir / "upscaler.pt").exists():
        save_atomically({"model": vae.state_dict(), "step": steps.get("upscaler_steps", cfg.upscaler_steps)},
                        cfg.work_dir / "upscaler.pt")
        written.append("upscaler.pt")
    if not (cfg.work_dir / "unet.pt").exists():
        unet = UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=torch.float32)
        ema = EMAModel(unet.parameters(), decay=cfg.ema_decay)
        ema.optimization_step = steps.get("unet_steps", 0)
        opt = torch.optim.AdamW(unet.parameters(), lr=cfg.unet_lr, weight_decay=0.01)
        save_atomically({"model": unet.state_dict(), "opt": opt.state_dict(), "ema": ema.state_dict(),
                        "step": steps.get("unet_steps", 0)}, cfg.work_dir / "unet.pt")
        written.append("unet.pt")
    return written
