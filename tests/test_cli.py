"""The `pixeldrop` command as other tooling drives it."""

from __future__ import annotations

from pathlib import Path

import pytest

from .server import cli, free_port


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
    assert cli(home, "credits", "add", "alice@example.com", "0").returncode == 2
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
    verbose = cli(tmp_path / "home", "generate", "a red apple", "-o", str(again), "--model", tiny_model, "--seed", "3",
                  "--verbose")
    assert Path(out).read_bytes() == Path(again).read_bytes(), "a fixed seed gives the same image"

    # Only pixeldrop's own lines; --verbose shows the libraries' too (a BERT encoder where diffusers
    # expects CLIP is one of pixeldrop-tiny's, and the tests' tiny pipeline's, expected warnings).
    ours = ("generating", "saved")
    assert [line for line in result.stderr.splitlines() if line.strip() and not line.startswith(ours)] == []
    assert "Expected types for text_encoder" in verbose.stderr
    assert "kept in float32" not in verbose.stderr, "nothing is cast after loading: no warning to silence"


def test_generate_checks_its_prompt_and_output_before_loading_anything(tmp_path):
    home = tmp_path / "home"
    for args, flag in [(["a red apple", "-o", str(tmp_path / "missing" / "apple.png")], "'--output'"),
                       (["a red apple", "-o", str(tmp_path / "apple.txt")], "'--output'"),
                       ([" \u200b ", "-o", str(tmp_path / "apple.png")], "PROMPT")]:
        refused = cli(home, "generate", *args)
        assert refused.returncode == 2, refused.stderr
        assert _one_error_line(refused.stderr).count(flag) == 1
    assert list(tmp_path.glob("**/apple.*")) == []


def _one_error_line(stderr: str) -> str:
    """The one line that says what is wrong: no traceback, and the value's own error only."""
    assert "Traceback" not in stderr and len(stderr.splitlines()) <= 4, stderr
    (line,) = [line for line in stderr.splitlines() if line.lower().startswith("error:")]
    return line


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
        curl = next(line for line in lines if line.startswith("Try: curl"))
        assert key in curl and curl.endswith("-o result.jpg"), "the curl line is copied whole: never wrapped"
        assert key not in err
        assert not [record for record in caplog.records if key in record.getMessage()]
    finally:
        db.close()


def test_set_password_checks_the_rules_before_asking_again_and_reads_a_pipe_quietly(tmp_path):
    home = tmp_path / "home"
    assert cli(home, "accounts", "create", "frank@example.com").returncode == 0
    short = _with_input(home, "short\n", "accounts", "set-password", "frank@example.com")
    assert short.returncode == 1 and "at least 8 characters" in short.stderr, "refused after one line"
    done = _with_input(home, "long enough pw\nlong enough pw\n", "accounts", "set-password", "frank@example.com")
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", "no GetPassWarning, no prompts to a script"


def test_revoking_twice_says_the_key_was_revoked_already(tmp_path):
    home = tmp_path / "home"
    cli(home, "accounts", "create", "grace@example.com")
    key = cli(home, "keys", "create", "grace@example.com").stdout.strip()
    assert cli(home, "keys", "revoke", key[:11]).stdout.startswith(f"revoked {key[:11]}")
    again = cli(home, "keys", "revoke", key)
    assert again.returncode == 0 and f"{key[:11]} was already revoked on " in again.stdout


def test_credits_are_added_and_removed_by_positive_amounts_through_the_ledger(tmp_path):
    home = tmp_path / "home"
    cli(home, "accounts", "create", "heidi@example.com")
    negative = cli(home, "credits", "add", "heidi@example.com", "-5")
    assert negative.returncode == 2 and "'AMOUNT'" in _one_error_line(negative.stderr)
    removed = cli(home, "credits", "remove", "heidi@example.com", "30", "--note", "test credits")
    assert removed.returncode == 0 and "heidi@example.com now has 70 credits" in removed.stdout
    too_many = cli(home, "credits", "remove", "heidi@example.com", "71")
    assert too_many.returncode == 1 and "has 70 credits" in _one_error_line(too_many.stderr)


def test_lines_users_copy_are_never_wrapped_in_a_pipe(tmp_path):
    """Piped, rich would fold lines at 80 columns (or $COLUMNS): an email, a prefix or a path
    must stay whole on its line."""
    home = tmp_path / "home"
    email = "someone.with.a.rather.long.address@accounts.subdomain.example-company.com"
    assert f"created account {email} with 100 credits" in cli(home, "accounts", "create", email).stdout.splitlines()
    made = cli(home, "keys", "create", email, "--name", "a label that takes room")
    prefix = made.stdout.strip()[:11]
    assert any(f"API key {prefix} for {email}" in line for line in made.stderr.splitlines())
    listing = cli(home, "keys", "list", email, COLUMNS="50")
    assert any(prefix in line for line in listing.stdout.splitlines()), listing.stdout
    unknown = cli(home, "keys", "list", "nobody." + email)
    assert f"nobody.{email}" in _one_error_line(unknown.stderr)


def test_help_has_a_sentence_for_everything_and_shows_the_defaults():
    from typer.testing import CliRunner

    from pixeldrop.cli import app

    runner = CliRunner()
    top = runner.invoke(app, ["--help"]).output
    groups = {"accounts": ["create", "set-password"], "keys": ["create", "list", "revoke"],
              "credits": ["add", "remove"]}
    commands = [[name] for name in ("serve", "generate", "train-tiny")]
    commands += [[group, command] for group, names in groups.items() for command in names]
    for words in [[group] for group in groups] + commands:
        assert f"  {words[-1]}  " in (top if len(words) == 1 else runner.invoke(app, [words[0], "--help"]).output)
        page = runner.invoke(app, [*words, "--help"]).output
        summary = page.split("\n\n")[1].strip()
        assert summary.endswith(".") and len(summary.split()) >= 4, f"{words}: {summary!r}"
        assert "<bool>" not in page
    serve = runner.invoke(app, ["serve", "--help"]).output
    assert "127.0.0.1" in serve and "8000" in serve and "<fast|quality>" in serve


SERVE_REFUSALS = [
    (["--model", "/no/such/dir"], {}, "--model"),
    (["--model", "nobody/not-cached"], {}, "--model"),  # HF_HUB_OFFLINE is set for the tests
    (["--model", "nobody/not-cached"], {"HF_HUB_OFFLINE": "0"}, "--model"),  # online, but no Hub to reach
    (["--preset", "bogus"], {}, "'--preset'"),
    (["--engine", "k8s"], {}, "'--engine'"),
    (["--device", "gpu"], {}, "--device"),
    (["--autoscale", "3:1"], {}, "--autoscale"),
    (["--steps", "0"], {}, "--steps"),
    ([], {"PIXELDROP_PRECISION": "fp8"}, "PIXELDROP_PRECISION"),
]


@pytest.mark.parametrize(("args", "env", "named"), SERVE_REFUSALS)
def test_serve_refuses_a_bad_value_in_one_line_before_loading_anything(tmp_path, args, env, named):
    unreachable = f"http://127.0.0.1:{free_port()}"  # nothing listens there: refused at once
    refused = cli(tmp_path / "home", "serve", "--port", str(free_port()), *args, HF_ENDPOINT=unreachable,
                  HF_HUB_CACHE=str(tmp_path / "hub-cache"), **env)
    assert refused.returncode == 2, refused.stderr
    assert named in _one_error_line(refused.stderr)
    assert refused.stdout == "", "nothing started: no demo key"


def test_a_folder_without_a_pipeline_is_not_a_model(tmp_path):
    refused = cli(tmp_path / "home", "generate", "a red apple", "-o", str(tmp_path / "x.png"), "--model", str(tmp_path))
    assert refused.returncode == 2 and "model_index.json" in _one_error_line(refused.stderr)


def test_a_normal_start_prints_only_pixeldrops_own_lines(tmp_path):
    """pixeldrop-tiny (the default) brings the library noise there is to silence: its MiniLM text
    encoder's load report among it."""
    from .server import Server

    server = Server(tmp_path / "home", PIXELDROP_WARM_UP="false")
    try:
        server.start()
    finally:
        server.stop()
    own = ("First run: ", "    pd_", "Try: curl ", "INFO:     ")  # the demo key, uvicorn's lines
    others = [line for line in server.lines if line.strip() and not line.startswith(own) and " pixeldrop." not in line]
    assert others == []
    assert any(" pixeldrop.generation.diffusers_backend: loading " in line for line in server.lines)
