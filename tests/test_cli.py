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
