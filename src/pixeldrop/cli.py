"""The `pixeldrop` command: serve the API, manage accounts, keys and credits, generate locally.

Every command opens (and on first use creates and migrates) the database named by the
settings; there is no separate init step. What goes wrong is one `error:` line: exit code 2 for
a value the command cannot use (a flag, a PIXELDROP_ variable, an argument), found before
anything loads; exit code 1 for an operation refused (an unknown account, a duplicate).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, cast

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from pixeldrop import accounts
from pixeldrop.accounts import credits as credit_rules
from pixeldrop.accounts import passwords
from pixeldrop.errors import InvalidInput, PixeldropError
from pixeldrop.settings import Decoder, Engine, Precision, Preset, Settings
from pixeldrop.storage import Database

# Every group: plain click output (rich_markup_mode=None), so help has no boxes and no `<bool>`
# beside every flag, and a bad value is one `Error:` line rather than a framed panel that wraps it.
app = typer.Typer(help="pixeldrop: a self-hosted, ClipDrop-compatible text-to-image API.\n\nEvery command keeps "
                       "its state (the database, by default SQLite) in the state folder, --home.",
                  no_args_is_help=True, rich_markup_mode=None)
accounts_app = typer.Typer(help="Create accounts and set their passwords.\n\nA password lets the account sign in "
                                "to the account pages.", no_args_is_help=True, rich_markup_mode=None)
keys_app = typer.Typer(help="Create, list and revoke API keys.\n\nRequests carry their key in the x-api-key header.",
                       no_args_is_help=True, rich_markup_mode=None)
credits_app = typer.Typer(help="Add or remove an account's credits.\n\nEach change is a row in the credit ledger.",
                          no_args_is_help=True, rich_markup_mode=None)
app.add_typer(accounts_app, name="accounts")
app.add_typer(keys_app, name="keys")
app.add_typer(credits_app, name="credits")

# soft_wrap: no line is cut to the terminal's width (80 columns when the output is a file or a
# pipe), so that an email, a key prefix or a path can be copied whole from it.
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

DEMO_EMAIL = "demo@example.com"
# Options named otherwise than the setting they set; every other option is its setting's name.
FLAG_OF_SETTING = {"num_inference_steps": "--steps", "guidance_scale": "--guidance"}
# `credits add EMAIL -5` reaches AMOUNT's range check instead of failing as an unknown option `-5`.
NUMBERS_MAY_BE_NEGATIVE = {"ignore_unknown_options": True}

Email = Annotated[str, typer.Argument(metavar="EMAIL", help="The account's email address.")]
Amount = Annotated[int, typer.Argument(metavar="AMOUNT", min=1, help="How many credits, 1 or more.")]
Note = Annotated[str, typer.Option(help="Why, for the ledger.")]


def _setting_default(name: str) -> str:
    """A setting's built-in default, for --help. Options default to None, so that a PIXELDROP_
    variable or .env still applies where the flag is not given."""
    return str(Settings.model_fields[name].default)


class _State:
    overrides: dict = {}  # settings given as global options (--home, --database-url)


@app.callback()
def main(
    home: Annotated[Path | None, typer.Option(help="State folder (env PIXELDROP_HOME).",
                                              show_default=_setting_default("home"))] = None,
    database_url: Annotated[str | None, typer.Option(help="SQLAlchemy URL (env PIXELDROP_DATABASE_URL).",
                                                     show_default="SQLite in the state folder")] = None,
) -> None:
    _State.overrides = {k: v for k, v in {"home": home, "database_url": database_url}.items() if v is not None}


def _origin(name: str, given: bool) -> str:
    """Where a setting's value came from, to name it in an error: its flag, or its variable."""
    if given:
        return FLAG_OF_SETTING.get(name, "--" + name.replace("_", "-"))
    return f"PIXELDROP_{name.upper()}"


def _settings(**options) -> Settings:
    """The settings: PIXELDROP_ variables and .env, overridden by the options given (not None).

    A value pydantic refuses is one line naming its flag or variable, and exit code 2, rather
    than pydantic's report in a traceback.
    """
    given = {**_State.overrides, **{name: value for name, value in options.items() if value is not None}}
    try:
        return Settings(**given)
    except ValidationError as error:
        for problem in error.errors():
            where = _origin(str(problem["loc"][0]), problem["loc"][0] in given) if problem["loc"] else "settings"
            cause = problem.get("ctx", {}).get("error")  # a validator's own message, without "Value error, "
            _error(f"{where}: {cause if isinstance(cause, Exception) else problem['msg']}")
        raise typer.Exit(code=2) from None


def _preflight(settings: Settings, options: Mapping[str, object]) -> None:
    """Refuse a model or device that loading would fail on, before anything loads (exit code 2).

    `options` are the command's own flags, to name the flag or the variable in the error.
    """
    from pixeldrop.generation import default_model
    from pixeldrop.generation.preflight import check_device, check_model

    for name, check, value in (("model", check_model, settings.model or default_model()),
                               ("device", check_device, settings.device)):
        try:
            check(value)
        except InvalidInput as error:
            _error(f"{_origin(name, options.get(name) is not None)}: {error.message}")
            raise typer.Exit(code=2) from None


def _database(settings: Settings) -> Database:
    """The database, created and migrated on first use; one clear line if it cannot be opened."""
    try:
        return Database.open(settings.resolved_database_url, settings.database_busy_timeout_seconds)
    except PixeldropError as error:
        raise _fail(error) from None


def _error(message: str) -> None:
    err.print(f"[red]error:[/red] {escape(message)}")


def _fail(error: PixeldropError) -> typer.Exit:
    _error(error.message)
    return typer.Exit(code=1)


@accounts_app.command("create")
def accounts_create(
    email: Email,
    credits: Annotated[int | None, typer.Option(help="Starting credits.",
                                                show_default="the free credits setting")] = None,
) -> None:
    """Create an account with its free credits."""
    settings = _settings()
    db = _database(settings)
    try:
        account = accounts.create_account(db, email, settings.free_credits if credits is None else credits)
    except PixeldropError as error:
        raise _fail(error) from None
    out.print(f"created account {account.email} with {account.credits} credits")


def _read_password(prompt: str) -> str:
    """A password: typed without echo on a terminal, else the next line of standard input.

    A script pipes the password in: getpass, finding no terminal to hide it on, would warn and
    print the prompt to the script.
    """
    if sys.stdin.isatty():
        return typer.prompt(prompt, hide_input=True)
    return sys.stdin.readline().removesuffix("\n")


@accounts_app.command("set-password")
def accounts_set_password(email: Email) -> None:
    """Set the password an account signs in with.

    The account pages take it. It is asked for twice (or read from two lines of standard input),
    never taken as an argument.
    """
    db = _database(_settings())
    try:
        accounts.get_account(db, email)
        password = _read_password("New password")
        passwords.check_password_rules(password)
        if _read_password("Repeat it") != password:
            raise InvalidInput("The two passwords differ; nothing was changed.")
        account = passwords.set_password(db, email, password)
    except PixeldropError as error:
        raise _fail(error) from None
    out.print(f"password set for {account.email}; other browsers signed in to it are signed out")


@accounts_app.command("webhook-secret")
def accounts_webhook_secret(email: Email) -> None:
    """Print the secret that signs the account's job webhooks, alone on the last line.

    It is made on first use; receivers verify each event with it (Standard Webhooks).
    """
    from pixeldrop.jobs import webhooks

    db = _database(_settings())
    try:
        account = accounts.get_account(db, email)
        secret = webhooks.account_secret(db, account.id)
    except PixeldropError as error:
        raise _fail(error) from None
    err.print(f"webhook signing secret of {account.email} (the account page shows it too):")
    print(secret, flush=True)


@keys_app.command("create")
def keys_create(
    email: Email,
    rate_limit: Annotated[int | None, typer.Option(help="Requests per minute for this key.",
                                                   show_default="the rate limit setting")] = None,
    name: Annotated[str, typer.Option(help="A label to recognise the key by.")] = "",
) -> None:
    """Create an API key; it is printed once, alone on the last line."""
    db = _database(_settings())
    try:
        new = accounts.create_key(db, email, rate_limit_per_minute=rate_limit, name=name)
    except PixeldropError as error:
        raise _fail(error) from None
    err.print(f"API key {new.info.prefix} for {email}; store it now, it is not shown again:")
    print(new.key, flush=True)


@keys_app.command("list")
def keys_list(email: Email) -> None:
    """List an account's keys by prefix.

    Keys are stored hashed: the whole key is never shown again.
    """
    db = _database(_settings())
    try:
        keys = accounts.list_keys(db, accounts.get_account(db, email).id)
    except PixeldropError as error:
        raise _fail(error) from None
    # A prefix is copied whole (to revoke the key): its column never wraps; the others give way.
    table = Table(Column("prefix", no_wrap=True), "name", "state", "rate limit/min", "created", "last used")
    for key in keys:
        table.add_row(key.prefix, key.name, "active" if key.active else "revoked",
                      str(key.rate_limit_per_minute or "default"), f"{key.created_at:%Y-%m-%d %H:%M}",
                      f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never")
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_or_prefix: Annotated[str, typer.Argument(metavar="KEY_OR_PREFIX", help="The key's prefix (pd_1a2b3c4d) or "
                                                                               "the whole key.")],
) -> None:
    """Revoke a key by its prefix (or the whole key). The account keeps its credits."""
    db = _database(_settings())
    try:
        key, revoked_now = accounts.revoke_key(db, key_or_prefix)
    except PixeldropError as error:
        raise _fail(error) from None
    if revoked_now:
        out.print(f"revoked {key.prefix}")
    else:
        out.print(f"{key.prefix} was already revoked on {key.revoked_at:%Y-%m-%d %H:%M} UTC")


@credits_app.command("add", context_settings=NUMBERS_MAY_BE_NEGATIVE)
def credits_add(email: Email, amount: Amount, note: Note = "") -> None:
    """Add credits to an account.

    The ledger records them as an operator grant. AMOUNT is 1 or more: to take credits away, use
    `pixeldrop credits remove`.
    """
    db = _database(_settings())
    try:
        account = accounts.get_account(db, email)
        balance = credit_rules.add_credits(db, account.id, amount, "operator", note=note)
    except PixeldropError as error:
        raise _fail(error) from None
    out.print(f"{account.email} now has {balance} credits")


@credits_app.command("remove", context_settings=NUMBERS_MAY_BE_NEGATIVE)
def credits_remove(email: Email, amount: Amount, note: Note = "") -> None:
    """Take credits away from an account.

    The ledger records it as an operator removal. The balance never goes below 0: an account
    holding fewer than AMOUNT credits loses none.
    """
    db = _database(_settings())
    try:
        account = accounts.get_account(db, email)
        balance = credit_rules.remove_credits(db, account.id, amount, note=note)
    except PixeldropError as error:
        raise _fail(error) from None
    out.print(f"{account.email} now has {balance} credits")


def _ensure_demo_account(settings: Settings, db: Database) -> None:
    """On a brand-new database, make a demo account so the first curl works right away.

    Its key is printed once, to standard output with `print`: never through `logging`, whose
    handlers write the server's log (standard error, or wherever the operator sends it), and
    never through rich, which wraps lines to the terminal's width: the curl line is copied whole.
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


# Options that serve and generate share.
Model = Annotated[str | None, typer.Option(help="Diffusers model: a hub id or a local folder (env PIXELDROP_MODEL).",
                                           show_default="pixeldrop-tiny, shipped with pixeldrop")]
Steps = Annotated[int | None, typer.Option(help="Denoising steps.", show_default="the model's")]
Guidance = Annotated[float | None, typer.Option(help="Guidance scale.", show_default="the model's")]
PresetOption = Annotated[Preset | None, typer.Option(help="fast (TAESD decoder) or quality (full VAE).")]
PrecisionOption = Annotated[Precision | None, typer.Option(
    help="Weights' precision; auto is fp16 on CUDA, on CPUs bf16 where measured faster than fp32, else fp32; "
         "int8 quantizes the UNet (CPUs; calibrated at start).", show_default="auto, or the preset's")]
DecoderOption = Annotated[Decoder | None, typer.Option(help="full (the model's VAE) or tiny (TAESD).",
                                                       show_default="full, or the preset's")]
Verbose = Annotated[bool | None, typer.Option(
    "--verbose", help="Also show what the libraries print while the model loads (warnings, progress bars).")]


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on (env PIXELDROP_HOST).",
                                             show_default=_setting_default("host"))] = None,
    port: Annotated[int | None, typer.Option(help="Port (env PIXELDROP_PORT).",
                                             show_default=_setting_default("port"))] = None,
    model: Model = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:1... (env PIXELDROP_DEVICE).",
                                               show_default=_setting_default("device"))] = None,
    preset: PresetOption = None,
    precision: PrecisionOption = None,
    decoder: DecoderOption = None,
    compile: Annotated[bool | None, typer.Option("--compile/--no-compile", help="torch.compile the UNet.",
                                                 show_default="the preset's, else off")] = None,
    steps: Steps = None,
    guidance: Guidance = None,
    redis_url: Annotated[str | None, typer.Option(help="Redis for a shared rate limiter.",
                                                  show_default="in-process")] = None,
    engine: Annotated[Engine | None, typer.Option(help="local (a worker thread here) or ray (Ray Serve replicas).",
                                                  show_default=_setting_default("engine"))] = None,
    replicas: Annotated[int | None, typer.Option(help="Ray: Generator replicas.",
                                                 show_default=_setting_default("replicas"))] = None,
    autoscale: Annotated[str | None, typer.Option(help="Ray: MIN:MAX replicas, scaled on load.")] = None,
    ray_address: Annotated[str | None, typer.Option(
        help="Ray: join this cluster (HOST:PORT) instead of starting one.")] = None,
    verbose: Verbose = None,
) -> None:
    """Serve the API and the account pages.

    On an empty database, it first makes a demo account and prints its key.
    """
    options = dict(host=host, port=port, model=model, device=device, preset=preset, precision=precision,
                   decoder=decoder, compile=compile, num_inference_steps=steps, guidance_scale=guidance,
                   redis_url=redis_url, engine=engine, replicas=replicas, autoscale=autoscale,
                   ray_address=ray_address, verbose=verbose)
    settings = _settings(**options)
    if settings.ray_address is None:  # a cluster's replicas load on its machines, with their folders and GPUs
        _preflight(settings, options)
    import uvicorn

    from pixeldrop.app import create_app
    from pixeldrop.http.server import uvicorn_options

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not settings.verbose:
        # Alembic's INFO lines (the SQL dialect, each migration step) are its own, not the operator's.
        logging.getLogger("alembic").setLevel(logging.WARNING)
    db = _database(settings)
    _ensure_demo_account(settings, db)
    uvicorn.run(create_app(settings, db=db), host=settings.host, port=settings.port, **uvicorn_options(settings))


def _image_path(output: Path) -> Path:
    """`-o`, checked when the command line is read, so that a typo costs no generation: its
    extension names a format the API serves, and its folder exists."""
    from pixeldrop.generation.formats import FORMATS, format_for_path

    if format_for_path(output.suffix) is None:
        extensions = ", ".join(f".{extension}" for fmt in FORMATS.values() for extension in fmt.extensions)
        raise typer.BadParameter(f"{output}: the extension picks the image format, one of {extensions}")
    if not output.parent.is_dir():
        raise typer.BadParameter(f"{output}: there is no folder {output.parent}")
    return output


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(metavar="PROMPT", help="What to draw; the API's rules apply (not empty, "
                                                                 "at most the max_prompt_chars setting).")],
    output: Annotated[Path, typer.Option("-o", "--output", callback=_image_path,
                                         help="Image file: .png, .jpg or .webp, in a folder that exists.")],
    seed: Annotated[int | None, typer.Option(help="Noise seed, 0 to 4294967295: the same prompt and seed give the "
                                                   "same image.", show_default="random, printed")] = None,
    model: Model = None,
    steps: Steps = None,
    guidance: Guidance = None,
    preset: PresetOption = None,
    precision: PrecisionOption = None,
    decoder: DecoderOption = None,
    compile: Annotated[bool, typer.Option(
        help="torch.compile the UNet: minutes of start-up, worth it for servers only.")] = False,
    verbose: Verbose = None,
) -> None:
    """Make one image locally: no server, no credits.

    A progress bar shows the steps; the image is written once it is made, with its seed printed
    (PNGs also carry the prompt, seed, steps and model, as the API's do).
    """
    from rich.progress import Progress

    from pixeldrop.generation import load_generator
    from pixeldrop.generation.formats import Format, format_for_path
    from pixeldrop.generation.metadata import ServedModel
    from pixeldrop.prompts import validate_prompt
    from pixeldrop.seeds import parse_seed

    options = dict(model=model, num_inference_steps=steps, guidance_scale=guidance, preset=preset,
                   precision=precision, decoder=decoder, compile=compile, verbose=verbose)
    settings = _settings(**options)
    try:
        validate_prompt(prompt, settings.max_prompt_chars)
    except PixeldropError as error:
        _error(f"PROMPT: {error.message}")
        raise typer.Exit(code=2) from None
    try:
        used_seed = parse_seed(seed)
    except PixeldropError as error:
        _error(f"--seed: {error.message}")
        raise typer.Exit(code=2) from None
    _preflight(settings, options)
    with Progress(console=err, transient=True) as progress:
        progress.add_task("loading model", total=None)
        generator = load_generator(settings)
    with Progress(console=err) as progress:
        task = progress.add_task("generating", total=generator.steps)
        image = generator.generate([prompt], [used_seed],
                                   progress=lambda step: progress.update(task, completed=step))[0]
    fmt = cast(Format, format_for_path(output.suffix))  # _image_path has checked the extension
    parameters = ServedModel.of(generator.describe()).image_parameters(prompt, used_seed) \
        if settings.image_metadata else None
    output.write_bytes(fmt.encode(image, settings.jpeg_quality, parameters))
    err.print(f"saved {output} ({image.width}x{image.height}, seed {used_seed})")


@app.command("train-tiny")
def train_tiny(
    work_dir: Annotated[Path, typer.Option(help="Checkpoints, caches and samples.")] = Path(
        "~/.pixeldrop/tiny-training"),
    vae_steps: Annotated[int, typer.Option(help="Steps for the 64 px autoencoder.")] = 1500,
    upscaler_steps: Annotated[int, typer.Option(help="Steps for the 64 -> 512 px upscaler (0 skips it).")] = 2000,
    unet_steps: Annotated[int, typer.Option(help="Steps for the UNet, the diffusion model itself.")] = 100_000,
    cooldown_steps: Annotated[int, typer.Option(
        help="The UNet's last steps, in which its learning rate falls linearly to zero.")] = 0,
    icon_share: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Share of each UNet batch drawn from the icon sources; the rest are emoji.")] = 0.5,
    threads: Annotated[int, typer.Option(help="CPU threads for training.")] = 1,
    init_from: Annotated[Path | None, typer.Option(
        help="Start from an exported model (e.g. the shipped one) where the work folder has no checkpoint.")] = None,
    export: Annotated[Path | None, typer.Option(help="Only export the last checkpoint as a pipeline here.")] = None,
) -> None:
    """Train pixeldrop-tiny, or export it.

    Training resumes from the last checkpoint in the work folder.
    """
    from pixeldrop.models.tiny import train

    config = train.TrainConfig(work_dir=work_dir.expanduser(), vae_steps=vae_steps, upscaler_steps=upscaler_steps,
                               unet_steps=unet_steps, unet_cooldown_steps=cooldown_steps,
                               icon_share=icon_share, threads=threads)
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
