"""Running `pixeldrop serve` for real, as an operator would, on a loopback port."""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

BIN = Path(sys.executable).parent / "pixeldrop"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXELDROP_")}
    env.update({"PIXELDROP_HOME": str(home), "HF_HUB_OFFLINE": "1", **extra})
    return env


def cli(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN), *args], env=cli_env(home, **env), capture_output=True, text=True, timeout=300)


class Server:
    """`pixeldrop serve` in a subprocess; its output is collected line by line."""

    def __init__(self, home: Path, *args: str, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.lines: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.process = subprocess.Popen(
            [str(BIN), "serve", "--port", str(self.port), *args],
            env=cli_env(home, **env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def wait_for(self, marker: str, timeout: float = 240) -> str:
        """Block until a line containing `marker` is printed; fail if the server exits first."""
        while True:
            line = self._lines.get(timeout=timeout)
            if line is None:
                raise RuntimeError("server exited:\n" + "\n".join(self.lines))
            self.lines.append(line)
            if marker in line:
                return line

    def start(self) -> Server:
        self.wait_for("Uvicorn running on")
        return self

    def demo_key(self) -> str:
        """The key that a first run prints, indented on a line of its own."""
        index = next(i for i, line in enumerate(self.lines) if "First run" in line)
        return next(line.strip() for line in self.lines[index:] if line.strip().startswith("pd_"))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def wait_until(condition: Callable[[], object], what: str, timeout: float = 60) -> None:
    """Poll a state change in another thread or process (a condition, not a guessed delay)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
