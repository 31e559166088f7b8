"""All of pixeldrop's configuration, in one typed object.

Values come from `PIXELDROP_*` environment variables (and a `.env` file in the working folder);
CLI flags override them by passing keyword arguments to `Settings(...)`. Nothing else in the
code reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ImageFormat = Literal["jpeg", "png", "webp"]
Precision = Literal["auto", "fp32", "bf16", "fp16", "int8"]
Decoder = Literal["full", "tiny"]
Preset = Literal["fast", "quality"]
Engine = Literal["local", "ray"]

# What each preset means; an explicit --precision or --decoder wins over the preset.
PRESETS: dict[str, dict] = {
    # TAESD decoder (~10x cheaper decode), the UNet in int8 on CPUs (fp16 on GPUs), compiled.
    "fast": {"precision": "int8", "decoder": "tiny", "compile": True},
    # The model's own VAE, bf16 where measured faster than fp32, compiled UNet.
    "quality": {"precision": "auto", "decoder": "full", "compile": True},
}


def _replica_range(value: str) -> tuple[int, int]:
    """`"1:8"` -> (1, 8), or ValueError: the one reading of `autoscale`, for the check and for use."""
    low, colon, high = value.partition(":")
    if not (colon and low.isdigit() and high.isdigit() and int(low) <= int(high) and int(high) >= 1):
        raise ValueError(f"autoscale is MIN:MAX replicas, MIN <= MAX and MAX >= 1 (like 1:8), not {value!r}")
    return int(low), int(high)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PIXELDROP_", env_file=".env", extra="ignore")

    home: Path = Field(default=Path("~/.pixeldrop"), description="Folder for the database and models.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite at $PIXELDROP_HOME/pixeldrop.db."
    )
    redis_url: str | None = Field(default=None, description="Redis for a shared rate limiter.")

    host: str = "127.0.0.1"
    port: int = 8000

    # Server limits: what one client can hold of `pixeldrop serve` (applied in http/server.py)
    max_header_bytes: int = Field(
        default=16 * 1024, ge=1024, description="Request line and headers together; past it, 400 and closed."
    )
    max_header_count: int = Field(default=100, ge=1, description="Headers in one request; past it, 431.")
    header_timeout_seconds: float = Field(
        default=20, gt=0, description="A request's line and headers must arrive within this, or it is closed."
    )
    body_timeout_seconds: float = Field(
        default=30, gt=0, description="A request's body must arrive within this once it is read, or 408."
    )
    keep_alive_seconds: int = Field(default=5, ge=1, description="An idle connection closes after this.")
    max_connections: int = Field(
        default=256, ge=1, description="Open connections (and requests in flight) at most; past it, 503."
    )

    # Operator access
    operator_token: str | None = Field(
        default=None, description="`Authorization: Bearer <token>` shows /healthz's full model details."
    )

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
    verbose: bool = Field(
        default=False, description="Show the libraries' warnings and progress bars while a model loads."
    )

    # Engines: where the model runs (generation/__init__.py ENGINES)
    engine: Engine = Field(default="local", description="local: one worker thread here; ray: Ray Serve replicas.")
    replicas: int = Field(default=1, ge=1, description="Ray: Generator replicas (unless autoscale is set).")
    autoscale: str | None = Field(default=None, description="Ray: MIN:MAX replicas, scaled on requests in flight.")
    ray_address: str | None = Field(
        default=None, description="Ray: a cluster's HOST:PORT to join; default: start a local Ray instance."
    )
    ray_replica_cpus: float = Field(default=1.0, gt=0, description="Ray: CPUs per replica where there is no GPU.")
    ray_max_ongoing_requests: int | None = Field(
        default=None, ge=1, description="Ray: requests one replica holds at once; default: twice max_batch."
    )
    autoscale_upscale_delay_seconds: float = Field(default=30.0, ge=0)
    autoscale_downscale_delay_seconds: float = Field(default=600.0, ge=0)

    # API contract
    default_format: ImageFormat = "jpeg"
    jpeg_quality: int = Field(default=92, ge=1, le=100)
    image_metadata: bool = Field(
        default=True, description="PNG answers carry the prompt, seed, steps and model in A1111's `parameters` chunk."
    )
    max_body_bytes: int = 64 * 1024
    max_prompt_chars: int = 1000
    image_url_seconds: int = Field(
        default=3600, ge=1, description="The OpenAI route's `response_format: url` images can be fetched this long."
    )

    # Accounts and credits
    free_credits: int = Field(default=100, ge=0)
    credits_per_image: int = Field(default=2, ge=0)
    rate_limit_per_minute: int = Field(default=60, ge=1)
    generation_deadline_seconds: float = Field(
        default=300, gt=0, description="A request not answered by then (queue wait and generation) gets 503, refunded."
    )
    stale_reservation_seconds: int = Field(
        default=600, description="A reservation older than this belongs to a crashed process: refunded. "
                                 "Must exceed the generation deadline, so that no live request looks stale."
    )
    database_busy_timeout_seconds: float = Field(
        default=30, gt=0, description="How long a SQLite write waits for another's lock before answering 503."
    )
    demo_account: bool = Field(default=True, description="On an empty database, make a demo account and print its key.")
    idempotency_hours: float = Field(
        default=24, gt=0, description="An Idempotency-Key's first answer is replayed for this long; then the key "
                                      "is forgotten and may run again (pixeldrop/idempotency.py)."
    )

    # Async jobs (/v1/jobs) and their webhooks (pixeldrop/jobs/)
    run_jobs: bool = Field(
        default=True, description="Generate queued jobs in this process; false: only accept and answer them "
                                  "(other processes sharing the database run them)."
    )
    jobs_at_once: int = Field(default=2, ge=1, description="Jobs one process generates at a time.")
    job_result_seconds: int = Field(
        default=24 * 3600, ge=1, description="A job's image can be fetched this long after it is made; then 410."
    )
    webhook_retry_seconds: int = Field(
        default=6 * 3600, ge=0, description="A webhook not answered with 2xx is retried, with back-off, this long."
    )
    webhook_allow_private: bool = Field(
        default=False, description="Allow webhook URLs on private, loopback and link-local addresses (tests, "
                                   "receivers inside your own network)."
    )

    # Account pages (sign-up, keys, usage, playground)
    signups_open: bool = Field(
        default=True,
        description="Anyone may create an account at /signup; when false, only `pixeldrop accounts create`.",
    )
    session_secret: str | None = Field(
        default=None, description="Keys the account pages' CSRF tokens; default: generated once into "
                                 "$PIXELDROP_HOME/session_secret. Several servers behind one address share it."
    )
    public_url: str | None = Field(
        default=None, description="The URL users reach the service at (Stripe's return links); default: the request's."
    )
    login_attempts_per_minute: int = Field(default=10, ge=1, description="Sign-in attempts per email per minute.")
    login_attempts_per_ip_per_minute: int = Field(
        default=30, ge=1, description="Sign-in and sign-up attempts per client IP."
    )
    store_prompts: bool = Field(
        default=True, description="Keep each request's prompt, shown only to its account (recent requests, the "
                                  "playground's history); false stores none.",
    )

    # Mail (password resets, sign-up notices): disabled unless smtp_url is set
    smtp_url: str | None = Field(
        default=None, description="smtp://host:port (STARTTLS when offered) or smtps://user:pass@host:465.",
    )
    mail_from: str = Field(default="pixeldrop@localhost", description="The From address of pixeldrop's mail.")

    # Buying credits with Stripe Checkout: disabled unless both keys are set
    stripe_secret_key: str | None = None
    stripe_webhook_secret: str | None = None
    stripe_api_base: str = "https://api.stripe.com"
    currency: str = Field(default="usd", description="ISO currency code of the pack prices.")
    pack_prices: dict[int, int] = Field(
        default={500: 500, 1000: 900, 5000: 4000, 10000: 7500, 50000: 30000},
        description="Credit pack -> price in the currency's smallest unit (cents); JSON in the environment.",
    )

    @field_validator("autoscale")
    @classmethod
    def _min_max(cls, value: str | None) -> str | None:
        if value is not None:
            _replica_range(value)
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: str | None) -> str | None:
        if value:
            from pixeldrop.mail import parse_smtp_url  # mail.py reads Settings: imported here, not at the top

            parse_smtp_url(value)
        return value or None

    @model_validator(mode="after")
    def _stale_reservations_outlive_requests(self) -> Settings:
        if self.stale_reservation_seconds <= self.generation_deadline_seconds:
            raise ValueError(
                f"stale_reservation_seconds ({self.stale_reservation_seconds}) must be longer than "
                f"generation_deadline_seconds ({self.generation_deadline_seconds}): a request still being "
                "served would otherwise be refunded as if its process had crashed"
            )
        return self

    @property
    def autoscale_bounds(self) -> tuple[int, int] | None:
        """`autoscale` as (MIN, MAX) replicas; None when replicas are fixed."""
        return _replica_range(self.autoscale) if self.autoscale is not None else None

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
