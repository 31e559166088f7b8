"""The `pixeldrop` command as other tooling drives it."""

from __future__ import annotations

from pathlib import Path

from .server import cli


def test_account_key_and_credit_commands(tmp_path):
    home = tmp_path / "home"
    created = cli(home, "accounts", "create", "alice@example.com")
    assert created.returncode == 0, created.stderr
    assert "100 credits" in created.stdout
    assert (home / "pixeldrop.db").exists(), "the database is created on first use under PIXELDROP_HOME"

    duplicate = cli(home, "accounts", "create", "alice@example.com")
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr

    made = cli(home, "keys", "create", "alice@example.com", "--rate-limit", "5")
    assert made.returncode == 0
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("pd_") and len(key) > 40

    listing = cli(home, "keys", "list", "alice@example.com")
    assert key[:11] in listing.stdout and key not in listing.stdout
    assert "5" in listing.stdout and "active" in listing.stdout

    revoked = cli(home, "keys", "revoke", key[:11])
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    assert "revoked" in cli(home, "keys", "list", "alice@example.com").stdout

    added = cli(home, "credits", "add", "alice@example.com", "500")
    assert added.returncode == 0 and "600 credits" in added.stdout
    assert cli(home, "credits", "add", "alice@example.com", "0").returncode == 1
    assert cli(home, "credits", "add", "nobody@example.com", "5").returncode == 1

    custom = cli(home, "accounts", "create", "bob@example.com", "--credits", "7")
    assert "7 credits" in custom.stdout


def test_generate_writes_a_512_image_with_a_progress_bar(tmp_path, tiny_model):
    from PIL import Image

    out = tmp_path / "apple.png"
    result = cli(tmp_path / "home", "generate", "a red apple", "-o", str(out), "--model", tiny_model, "--seed", "3")
    assert result.returncode == 0, result.stderr
    assert "generating" in result.stderr
    image = Image.open(out)
    assert image.size == (512, 512) and image.format == "PNG"
    again = tmp_path / "again.png"
    cli(tmp_path / "home", "generate", "a red apple", "-o", str(again), "--model", tiny_model, "--seed", "3")
    assert Path(out).read_bytes() == Path(again).read_bytes(), "a fixed seed gives the same image"


def _with_input(home: Path, text: str, *args: str):
    """The CLI with typed input. A new session has no terminal, so the hidden prompt reads stdin."""
    import subprocess

    from .server import BIN, cli_env

    return subprocess.run([str(BIN), *args], env=cli_env(home), input=text, capture_output=True, text=True,
                          timeout=300, start_new_session=True)


def test_set_password_prompts_twice_and_never_takes_the_password_as_an_argument(tmp_path):
    from pixeldrop.accounts import passwords
    from pixeldrop.storage import Database

    home = tmp_path / "home"
    assert cli(home, "accounts", "create", "carol@example.com").returncode == 0
    as_argument = cli(home, "accounts", "set-password", "carol@example.com", "hunter2hunter2")
    assert as_argument.returncode == 2 and "unexpected extra argument" in as_argument.stderr.lower()

    mismatch = _with_input(home, "first password\nsecond password\n", "accounts", "set-password", "carol@example.com")
    assert mismatch.returncode != 0
    short = _with_input(home, "short\nshort\n", "accounts", "set-password", "carol@example.com")
    assert short.returncode == 1 and "at least 8 characters" in short.stderr
    unknown = _with_input(home, "long enough pw\nlong enough pw\n", "accounts", "set-password", "dave@example.com")
    assert unknown.returncode == 1 and "No account" in unknown.stderr

    done = _with_input(home, "long enough pw\nlong enough pw\n", "accounts", "set-password", "carol@example.com")
    assert done.returncode == 0, done.stderr
    assert "password set for carol@example.com" in done.stdout
    assert "long enough pw" not in done.stdout + done.stderr
    db = Database.open(f"sqlite:///{home / 'pixeldrop.db'}")
    try:
        assert passwords.authenticate(db, "carol@example.com", "long enough pw").account.email == "carol@example.com"
    finally:
        db.close()


def test_the_demo_key_is_printed_to_standard_output_and_never_logged(tmp_path, capsys, caplog):
    """`serve` logs through `logging` to standard error, the server's log: the demo key must
    reach the operator's terminal without passing through either."""
    import logging

    from pixeldrop import accounts, cli
    from pixeldrop.settings import Settings
    from pixeldrop.storage import Database

    settings = Settings(home=tmp_path / "home", _env_file=None)
    db = Database.open(settings.resolved_database_url)
    try:
        with caplog.at_level(logging.DEBUG):
            cli._ensure_demo_account(settings, db)
        out, err = capsys.readouterr()
        lines = out.splitlines()
        first_run = next(i for i, line in enumerate(lines) if "First run" in line)
        key = next(line.strip() for line in lines[first_run:] if line.strip().startswith("pd_"))
        assert accounts.verify_key(db, key).name == "demo"
        assert key not in err
        assert not [record for record in caplog.records if key in record.getMessage()]
    finally:
        db.close()
