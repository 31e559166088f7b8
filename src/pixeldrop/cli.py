"""The `pixeldrop` command: serve the API, manage accounts, keys and credits, generate locally.

Every command opens (and on first use creates and migrates) the database named by the
settings; there is no separate init step.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from pixeldrop import accounts
from pixeldrop.accounts import credits as credit_rules
from pixeldrop.accounts import passwords
from pixeldrop.errors import PixeldropError
from pixeldrop.settings import Settings
from pixeldrop.storage import Database

app = typer.Typer(help="pixeldrop: a self-hosted, ClipDrop-compatible text-to-image API.", no_args_is_help=True)
accounts_app = typer.Typer(help="Accounts.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
credits_app = typer.Typer(help="Credits.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")
app.add_typer(keys_app, name="keys")
app.add_typer(credits_app, name="credits")

err = Console(stderr=True)
out = Console()

DEMO_EMAIL = "demo@example.com"


class _State:
    overrides: dict = {}


@app.callback()
def main(
    home: Annotated[Optional[Path], typer.Option(help="State folder (env PIXELDROP_HOME).")] = None,
    database_url: Annotated[Optional[str], typer.Option(help="SQLAlchemy URL (env PIXELDROP_DATABASE_URL).")] = None,
) -> None:
    _State.overrides = {k: v for k, v in {"home": home, "database_url": database_url}.items() if v is not None}


def _settings(**overrides) -> Settings:
    return Settings(**_State.overrides, **{k: v for k, v in overrides.items() if v is not None})


def _database(settings: Settings) -> Database:
    """The database, created and migrated on first use; one clear line if it cannot be opened."""
    try:
        return Database.open(settings.resolved_database_url, settings.database_busy_timeout_seconds)
    except PixeldropError as error:
        raise _fail(error)


def _fail(error: PixeldropError) -> typer.Exit:
    err.print(f"[red]error:[/red] {error.message}", soft_wrap=True)  # one line, however long
    return typer.Exit(code=1)


@accounts_app.command("create")
def accounts_create(
    email: str,
    credits: Annotated[Optional[int], typer.Option(help="Starting credits (default: the free credits setting).")] = None,
) -> None:
    """Create an account with its free credits."""
    settings = _settings()
    db = _database(settings)
    try:
        account = accounts.create_account(db, email, settings.free_credits if credits is None else credits)
    except PixeldropError as error:
        raise _fail(error)
    out.print(f"created account {account.email} with {account.credits} credits")


@accounts_app.command("set-password")
def accounts_set_password(email: str) -> None:
    """Set the password an account signs in with on the account pages (asked for, never an argument)."""
    db = _database(_settings())
    try:
        accounts.get_account(db, email)
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
        account = passwords.set_password(db, email, password)
    except PixeldropError as error:
        raise _fail(error)
    out.print(f"password set for {account.email}; other browsers signed in to it are signed out")


@keys_app.command("create")
def keys_create(
    email: str,
    rate_limit: Annotated[Optional[int], typer.Option(help="Requests per minute for this key.")] = None,
    name: Annotated[str, typer.Option(help="A label to recognise the key by.")] = "",
) -> None:
    """Create an API key; it is printed once, alone on the last line."""
    db = _database(_settings())
    try:
        new = accounts.create_key(db, email, rate_limit_per_minute=rate_limit, name=name)
    except PixeldropError as error:
        raise _fail(error)
    err.print(f"API key {new.info.prefix} for {email}; store it now, it is not shown again:")
    print(new.key, flush=True)


@keys_app.command("list")
def keys_list(email: str) -> None:
    """List an account's keys by prefix."""
    db = _database(_settings())
    try:
        keys = accounts.list_keys(db, email)
    except PixeldropError as error:
        raise _fail(error)
    table = Table("prefix", "name", "state", "rate limit/min", "created", "last used")
    for key in keys:
        table.add_row(key.prefix, key.name, "active" if key.active else "revoked",
                      str(key.rate_limit_per_minute or "default"), f"{key.created_at:%Y-%m-%d %H:%M}",
                      f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never")
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(key_or_prefix: str) -> None:
    """Revoke a key by its prefix (or the whole key). The account keeps its credits."""
    db = _database(_settings())
    try:
        key = accounts.revoke_key(db, key_or_prefix)
    except PixeldropError as error:
        raise _fail(error)
    out.print(f"revoked {key.prefix}")


@credits_app.command("add")
def credits_add(email: str, amount: int, note: Annotated[str, typer.Option(help="Why, for the ledger.")] = "") -> None:
    """Add credits to an account (recorded in the ledger as an operator grant)."""
    db = _database(_settings())
    try:
        account = accounts.get_account(db, email)
        balance = credit_rules.add_credits(db, account.id, amount, "operator", note=note)
    except PixeldropError as error:
        raise _fail(error)
    out.print(f"{account.email} now has {balance} credits")


def _ensure_demo_account(settings: Settings, db: Database) -> None:
    """On a brand-new database, make a demo account so the first curl works right away.

    Its key is printed once, to standard output with `print`: never through `logging`, whose
    handlers write the server's log (standard error, or wherever the operator sends it).
    """
    if not settings.demo_account or accounts.count_accounts(db) > 0:
        return
    accounts.create_account(db, DEMO_EMAIL, settings.free_credits)
    new = accounts.create_key(db, DEMO_EMAIL, name="demo")
    print(
        f"First run: created account {DEMO_EMAIL} with {settings.free_credits} credits "
        f"and this API key (shown once):\n\n    {new.key}\n\n"
        f"Try: curl -X POST http://{settings.host}:{settings.port}/text-to-image/v1 "
        f"-H 'x-api-key: {new.key}' -F 'prompt=a red apple' -o result.jpg\n",
        flush=True,
    )


@app.command()
def serve(
    host: Annotated[Optional[str], typer.Option(help="Interface to listen on (env PIXELDROP_HOST).")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port (env PIXELDROP_PORT).")] = None,
    model: Annotated[Optional[str], typer.Option(help="Diffusers model id or folder (env PIXELDROP_MODEL).")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda, cuda:1...")] = None,
    preset: Annotated[Optional[str], typer.Option(help="fast (TAESD decoder) or quality (full VAE).")] = None,
    precision: Annotated[Optional[str], typer.Option(help="auto, fp32, bf16 or fp16.")] = None,
    decoder: Annotated[Optional[str], typer.Option(help="full or tiny (TAESD).")] = None,
    compile: Annotated[Optional[bool], typer.Option("--compile/--no-compile", help="torch.compile the UNet.")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Denoising steps (default: the model's).")] = None,
    guidance: Annotated[Optional[float], typer.Option(help="Guidance scale (default: the model's).")] = None,
    redis_url: Annotated[Optional[str], typer.Option(help="Redis for a shared rate limiter.")] = None,
    engine: Annotated[Optional[str], typer.Option(help="local (a worker thread here) or ray (Ray Serve replicas).")] = None,
    replicas: Annotated[Optional[int], typer.Option(help="Ray: Generator replicas.")] = None,
    autoscale: Annotated[Optional[str], typer.Option(help="Ray: MIN:MAX replicas, scaled on load.")] = None,
    ray_address: Annotated[Optional[str], typer.Option(help="Ray: join this cluster (HOST:PORT) instead of starting one.")] = None,
) -> None:
    """Serve the API."""
    import uvicorn

    from pixeldrop.api import create_app
    from pixeldrop.api.http_server import uvicorn_options

    settings = _settings(host=host, port=port, model=model, device=device, preset=preset, precision=precision,
                         decoder=decoder, compile=compile, num_inference_steps=steps, guidance_scale=guidance,
                         redis_url=redis_url, engine=engine, replicas=replicas, autoscale=autoscale,
                         ray_address=ray_address)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    db = _database(settings)
    _ensure_demo_account(settings, db)
    uvicorn.run(create_app(settings, db=db), host=settings.host, port=settings.port, **uvicorn_options(settings))


@app.command()
def generate(
    prompt: str,
    output: Annotated[Path, typer.Option("-o", "--output", help="Image file; format from its extension.")],
    seed: Annotated[int, typer.Option(help="Noise seed: the same seed gives the same image.")] = 0,
    model: Annotated[Optional[str], typer.Option(help="Diffusers model id or folder.")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Denoising steps (default: the model's).")] = None,
    guidance: Annotated[Optional[float], typer.Option(help="Guidance scale (default: the model's).")] = None,
    preset: Annotated[Optional[str], typer.Option(help="fast (TAESD decoder) or quality (full VAE).")] = None,
    precision: Annotated[Optional[str], typer.Option(help="auto, fp32, bf16 or fp16.")] = None,
    decoder: Annotated[Optional[str], typer.Option(help="full or tiny (TAESD).")] = None,
    compile: Annotated[bool, typer.Option(help="torch.compile the UNet: minutes of start-up, worth it for servers only.")] = False,
) -> None:
    """Make one image locally, with a progress bar; no server, no credits."""
    from rich.progress import Progress

    from pixeldrop.generation import load_generator

    settings = _settings(model=model, num_inference_steps=steps, guidance_scale=guidance, preset=preset,
                         precision=precision, decoder=decoder, compile=compile)
    with Progress(console=err, transient=True) as progress:
        progress.add_task("loading model", total=None)
        generator = load_generator(settings)
    with Progress(console=err) as progress:
        task = progress.add_task("generating", total=generator.steps)
        image = generator.generate([prompt], [seed], progress=lambda step: progress.update(task, completed=step))[0]
    image.save(output)
    err.print(f"saved {output} ({image.width}x{image.height})")


@app.command("train-tiny")
def train_tiny(
    work_dir: Annotated[Path, typer.Option(help="Checkpoints, caches and samples.")] = Path("~/.pixeldrop/tiny-training"),
    vae_steps: Annotated[int, typer.Option()] = 1500,
    upscaler_steps: Annotated[int, typer.Option(help="Steps for the 64 -> 512 px upscaler (0 skips it).")] = 2000,
    unet_steps: Annotated[int, typer.Option()] = 100_000,
    threads: Annotated[int, typer.Option(help="CPU threads for training.")] = 1,
    init_from: Annotated[Optional[Path], typer.Option(
        help="Start from an exported model (e.g. the shipped one) where the work folder has no checkpoint.")] = None,
    export: Annotated[Optional[Path], typer.Option(help="Only export the last checkpoint as a pipeline here.")] = None,
) -> None:
    """Train pixeldrop-tiny (resumes from the last checkpoint), or export it."""
    from pixeldrop.models.tiny import train

    config = train.TrainConfig(work_dir=work_dir.expanduser(), vae_steps=vae_steps, upscaler_steps=upscaler_steps,
                               unet_steps=unet_steps, threads=threads)
    if init_from is not None:
        written = train.seed_from_export(config, init_from)
        err.print(f"seeded {', '.join(written) or 'nothing (checkpoints exist)'} from {init_from}")
    if export is not None:
        train.export(config, export)
        err.print(f"exported pixeldrop-tiny to {export}")
        return
    train.train(config)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
