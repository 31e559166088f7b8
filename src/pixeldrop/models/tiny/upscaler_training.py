"""The training stage of the cascade's 512 px upscaler (`architecture.Upscaler`), and its score.

It learns from the Noto emoji SVGs rendered at 512 px (`data.render_icons`), composed the way the
caption set is, so that it paints sharp edges and flat fills where a resize would blur them.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import architecture as arch
from .data import downsample, is_held_out_icon, on_background, random_composition, render_icons
from .stage_tools import log_record, progress_bar, save_atomically, to_tensor, to_uint8

if TYPE_CHECKING:
    from .train import TrainConfig


def train_upscaler(cfg: TrainConfig, small: arch.AutoencoderKL) -> arch.CascadeAutoencoder:
    """Teach the cascade to paint SVG renders at 512 px from the latents of their 64 px view.

    Two phases. First the upscaler learns alone, from the 64 px decoder's pictures. Then, from
    `upscaler_joint_from` steps, the 64 px decoder fine-tunes with it (its L1/MSE training left
    blotches that an upscaler can only enlarge) and a small patch discriminator joins (hinge
    loss, as in the autoencoders of taming-transformers and Stable Diffusion: pixel losses
    alone leave soft the edges they cannot place exactly). The encoder stays frozen, so the
    latent space (the UNet's world) does not move; an L1 term on the 64 px picture keeps it a
    picture. Latents are sampled, not the mean, so the cascade copes with imprecise ones.
    """
    path = cfg.work_dir / "upscaler.pt"
    cascade = arch.CascadeAutoencoder.around(small)
    cascade.requires_grad_(False)
    decoder = [p for m in (cascade.decoder, cascade.post_quant_conv) for p in m.parameters()]
    cascade.upscaler.requires_grad_(True)
    cascade.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW([
        {"params": cascade.upscaler.parameters(), "lr": cfg.upscaler_lr},
        {"params": decoder, "lr": cfg.upscaler_lr / 5},
    ], weight_decay=0.0)
    # Module.to takes memory_format at run time (documented); torch's overloads of `to` leave it out.
    critic = _patch_discriminator().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    critic_opt = torch.optim.AdamW(critic.parameters(), lr=2e-4, betas=(0.5, 0.9), weight_decay=0.0)
    step = 0
    if path.exists():
        # Bandit B614: the training run's own checkpoint, in the operator's work folder (train.CHECKPOINTS).
        state = torch.load(path, weights_only=False)  # nosec B614
        cascade.load_state_dict(state["model"])
        step = state["step"]
        if "opt" in state:
            opt.load_state_dict(state["opt"])
            critic.load_state_dict(state["critic"])
            critic_opt.load_state_dict(state["critic_opt"])
    if step >= cfg.upscaler_steps:
        return cascade.eval()
    icons = render_icons(cfg.work_dir)
    train_icons = [p for p in icons if not is_held_out_icon(p)]
    eval_renders = np.stack([on_background(Image.open(p)) for p in icons if is_held_out_icon(p)][:32])
    rng = np.random.default_rng(cfg.seed + 104_729 * step)
    base_lrs = [cfg.upscaler_lr, cfg.upscaler_lr / 5]  # the upscaler's, the decoder's
    cascade.train()
    with progress_bar() as progress:
        task = progress.add_task("512 px upscaler", total=cfg.upscaler_steps, completed=step, status="")
        while step < cfg.upscaler_steps:
            renders = np.stack([random_composition(train_icons, rng) for _ in range(cfg.upscaler_batch_size)])
            target = to_tensor(renders).contiguous(memory_format=torch.channels_last)
            view = to_tensor(np.stack([downsample(r) for r in renders]))
            factor = _warmup_cosine(step, cfg.upscaler_steps, warmup=100)
            for group, lr in zip(opt.param_groups, base_lrs, strict=True):
                group["lr"] = lr * factor
            joint = step >= cfg.upscaler_joint_from
            for parameter in decoder:
                parameter.requires_grad_(joint)
            with torch.no_grad():
                latents = cascade.encode(view).latent_dist.sample()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                pictures = cascade.decode_small(latents).float()
                images = cascade.upscaler(pictures.clamp(-1, 1)).float()
            loss = F.l1_loss(images, target) + 0.5 * _edge_loss(images, target)
            if joint:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    critic_loss = (F.relu(1 - critic(target).float()).mean()
                                   + F.relu(1 + critic(images.detach()).float()).mean())
                critic_opt.zero_grad(set_to_none=True)
                critic_loss.backward()
                critic_opt.step()
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    adversarial = -critic(images).float().mean()
                loss = loss + 0.5 * F.l1_loss(pictures, view) + cfg.upscaler_adversarial_weight * adversarial
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for params in (cascade.upscaler.parameters(), decoder):  # apart: neither's norm throttles the other
                torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
            progress.update(task, completed=step, status=f"loss {loss.item():.4f}")
            if step % cfg.checkpoint_every == 0 or step == cfg.upscaler_steps:
                scores = upscaler_scores(cascade, eval_renders, cfg.work_dir / "samples" / f"upscaler-{step:05d}.jpg")
                cascade.train()
                progress.update(task, status=f"held-out PSNR {scores['psnr']:.2f} dB "
                                              f"(Lanczos {scores['psnr_lanczos']:.2f})")
                log_record(cfg.work_dir, {"stage": "upscaler", "step": step, "loss": loss.item(), "time": time.time(),
                                          "joint": joint, **scores})
                save_atomically({"model": cascade.state_dict(), "opt": opt.state_dict(), "critic": critic.state_dict(),
                                "critic_opt": critic_opt.state_dict(), "step": step}, path)
    return cascade.eval()


def _patch_discriminator() -> torch.nn.Module:
    """Judges 512 px pictures in overlapping ~70 px patches (pix2pix's PatchGAN, spectral norm)."""
    def down(channels_in: int, channels_out: int, stride: int) -> list[torch.nn.Module]:
        return [torch.nn.utils.parametrizations.spectral_norm(torch.nn.Conv2d(channels_in, channels_out, 4, stride, 1)),
                torch.nn.LeakyReLU(0.2)]

    return torch.nn.Sequential(*down(3, 32, 2), *down(32, 64, 2), *down(64, 128, 2), *down(128, 128, 1),
                               torch.nn.Conv2d(128, 1, 3, 1, 1))


def _warmup_cosine(step: int, total: int, warmup: int) -> float:
    """Learning-rate factor: linear warm-up, then cosine down to a tenth."""
    return min(1.0, (step + 1) / warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * min(step / total, 1.0))))


@torch.no_grad()
def _small_pictures(cascade: arch.CascadeAutoencoder, renders: np.ndarray) -> torch.Tensor:
    """What the 64 px autoencoder gives back for renders seen at 64 px: the upscaler's input."""
    latents = cascade.encode(to_tensor(np.stack([downsample(r) for r in renders]))).latent_dist.mean
    return cascade.decode_small(latents).clamp(-1, 1)


def _edge_loss(images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between horizontal and vertical differences: rewards edges that are as sharp as the render's."""
    return F.l1_loss(_dx(images), _dx(target)) + F.l1_loss(_dy(images), _dy(target))


def _dx(images: torch.Tensor) -> torch.Tensor:
    return images[..., :, 1:] - images[..., :, :-1]


def _dy(images: torch.Tensor) -> torch.Tensor:
    return images[..., 1:, :] - images[..., :-1, :]


@torch.no_grad()
def upscaler_scores(cascade: arch.CascadeAutoencoder, renders: np.ndarray, grid: Path | None = None) -> dict:
    """PSNR at 512 px against true renders: the cascade's picture and, as the baseline it
    replaces, the 64 px picture enlarged by Lanczos. `grid` gets rows of Lanczos | learned | render."""
    cascade.eval()
    target = to_tensor(renders)
    small_images = _small_pictures(cascade, renders)
    learned = torch.cat([cascade.upscaler(batch) for batch in small_images.split(8)]).clamp(-1, 1)
    size = renders.shape[1:3]
    lanczos = to_tensor(np.stack([np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))
                                  for image in to_uint8(small_images)]))
    if grid is not None:
        grid.parent.mkdir(exist_ok=True)
        rows = [torch.cat([lanczos[i], learned[i], target[i]], dim=2) for i in range(0, len(renders), 8)[:4]]
        Image.fromarray(to_uint8(torch.cat(rows, dim=1)[None])[0]).save(grid, quality=90)

    def psnr(images: torch.Tensor) -> float:
        return 10 * math.log10(4.0 / max(F.mse_loss(images, target).item(), 1e-10))

    return {"psnr": psnr(learned), "psnr_lanczos": psnr(lanczos)}
