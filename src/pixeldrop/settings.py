"""All of pixeldrop's configuration, in one typed object.

Values come from `PIXELDROP_*` environment variables (and a `.env` file in the working folder);
CLI flags override them by passing keyword arguments to `Settings(...)`. Nothing else in the
code reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ImageFormat = Literal["jpeg", "png", "webp"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
Decoder = Literal["full", "tiny"]
Preset = Literal["fast", "quality"]

# What each preset means; an explicit --precision or --decoder wins over the preset.
PRESETS: dict[str, dict] = {
    # TAESD decoder (~10x cheaper decode), bf16 where the CPU has it, compiled UNet.
    "fast": {"precision": "auto", "decoder": "tiny", "compile": True},
    # The model's own VAE, bf16 where the CPU has it, compiled UNet.
    "quality": {"precision": "auto", "decoder": "full", "compile": True},
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PIXELDROP_", env_file=".env", extra="ignore")

    home: Path = Field(default=Path("~/.pixeldrop"), description="Folder for the database and models.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite at $PIXELDROP_HOME/pixeldrop.db."
    )
    redis_url: str | None = Field(default=None, description="Redis for a shared rate limiter.")

    host: str = "127.0.0.1"
    port: int = 8000

    # Generation
    model: str | None = Field(
        default=None, description="Diffusers model: hub id or local folder. Default: pixeldrop-tiny."
    )
    num_inference_steps: int | None = Field(default=None, ge=1, le=1000)
    guidance_scale: float | None = Field(default=None, ge=0.0, le=50.0)
    preset: Preset | None = Field(default=None, description="fast (TAESD decoder) or quality (full VAE).")
    precision: Precision | None = None
    decoder: Decoder | None = None
    compile: bool | None = Field(default=None, description="torch.compile the UNet (minutes at start-up).")
    device: str = "auto"
    queue_size: int = Field(default=32, ge=1, description="Requests waiting for the model at most.")
    max_batch: int = Field(default=1, ge=1, description="Requests that may share one pipeline call.")
    batch_wait_ms: float = Field(default=5.0, ge=0.0)
    warm_up: bool = True

    # API contract
    default_format: ImageFormat = "jpeg"
    jpeg_quality: int = Field(default=92, ge=1, le=100)
    max_body_bytes: int = 64 * 1024
    max_prompt_chars: int = 1000

    # Accounts and credits
    free_credits: int = Field(default=100, ge=0)
    credits_per_image: int = Field(default=2, ge=0)
    rate_limit_per_minute: int = Field(default=60, ge=1)
    stale_reservation_seconds: int = Field(
        default=600, description="A reservation older than this belongs to a crashed worker: refunded."
    )
    demo_account: bool = Field(default=True, description="On an empty database, make a demo account and print its key.")

    # Account pages (sign-up, keys, usage, playground)
    signups_open: bool = Field(
        default=True, description="Anyone may create an account at /signup; when false, only `pixeldrop accounts create`."
    )
    session_secret: str | None = Field(
        default=None, description="Signs session cookies; default: generated once into $PIXELDROP_HOME/session_secret."
    )
    public_url: str | None = Field(
        default=None, description="The URL users reach the service at (Stripe's return links); default: the request's."
    )
    login_attempts_per_minute: int = Field(default=10, ge=1, description="Sign-in attempts per email per minute.")
    login_attempts_per_ip_per_minute: int = Field(default=30, ge=1, description="Sign-in and sign-up attempts per client IP.")

    # Buying credits with Stripe Checkout: disabled unless both keys are set
    stripe_secret_key: str | None = None
    stripe_webhook_secret: str | None = None
    stripe_api_base: str = "https://api.stripe.com"
    currency: str = Field(default="usd", description="ISO currency code of the pack prices.")
    pack_prices: dict[int, int] = Field(
        default={500: 500, 1000: 900, 5000: 4000, 10000: 7500, 50000: 30000},
        description="Credit pack -> price in the currency's smallest unit (cents); JSON in the environment.",
    )

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def resolved_precision(self) -> str:
        return self.precision or PRESETS.get(self.preset or "", {}).get("precision", "auto")

    @property
    def resolved_decoder(self) -> str:
        return self.decoder or PRESETS.get(self.preset or "", {}).get("decoder", "full")

    @property
    def resolved_compile(self) -> bool:
        if self.compile is not None:
            return self.compile
        return bool(PRESETS.get(self.preset or "", {}).get("compile", False))

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home_dir / 'pixeldrop.db'}"
