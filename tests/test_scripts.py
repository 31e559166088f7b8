"""scripts/setup, which scripts/serve and scripts/test run first."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# A stand-in for `python3 -m venv .venv` whose .venv/bin/python only says what it was asked to run:
# the script's own lines and the commands it runs come out in the order they happen.
FAKE_PYTHON3 = """#!/bin/sh
echo "RUN python3 $*"
mkdir -p .venv/bin
printf '#!/bin/sh\\necho "RUN python $*"\\n' > .venv/bin/python
chmod +x .venv/bin/python
"""


def _setup(repo: Path, fake_bin: Path, *args: str) -> list[str]:
    env = {**os.environ, "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([str(repo / "scripts" / "setup"), *args], env=env, capture_output=True, text=True,
                          timeout=60, check=True)
    return done.stdout.splitlines()


def test_setup_says_each_step_before_it_runs_and_installs_what_was_asked_once(tmp_path):
    """On a copy of the repository whose python3 is a stand-in, so that it takes a second."""
    if not (shutil.which("redis-server") and glob.glob("/usr/lib/postgresql/*/bin/initdb")
            and os.access("/usr/bin/chromium", os.X_OK)):
        pytest.skip("--test would install Debian packages: run the tests through scripts/test")
    repo, fake_bin = tmp_path / "repo", tmp_path / "bin"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "setup", repo / "scripts" / "setup")
    shutil.copy(ROOT / "pyproject.toml", repo / "pyproject.toml")
    fake_bin.mkdir()
    (fake_bin / "python3").write_text(FAKE_PYTHON3)
    (fake_bin / "python3").chmod(0o755)

    first = _setup(repo, fake_bin)
    steps = [(first[i - 1], line) for i, line in enumerate(first) if line.startswith("RUN")]
    assert steps == [  # each step says what it does before it starts
        ("setup: creating the virtual environment .venv", "RUN python3 -m venv .venv"),
        ("setup: updating pip", "RUN python -m pip install -q --upgrade pip"),
        ("setup: installing torch 2.13.0, CPU build (a download of a few hundred MB on the first run)",
         "RUN python -m pip install -q torch==2.13.0"),
        ("setup: installing pixeldrop", "RUN python -m pip install -q -e ."),  # serving needs no test extras
    ]
    assert first[-1] == "setup: pixeldrop is installed in .venv"
    assert _setup(repo, fake_bin) == [], "installed already: nothing to say, nothing to run"

    tests = _setup(repo, fake_bin, "--test")
    assert "setup: installing pixeldrop and the test extras" in tests
    assert "RUN python -m pip install -q -e .[test]" in tests
    assert not [line for line in tests if "virtual environment" in line or "-m venv" in line], "it is there already"
    assert _setup(repo, fake_bin, "--test") == []
    assert _setup(repo, fake_bin) == [], "what the tests installed serves too"
