"""Scale-out figures: what one API process can feed, images/s per replica, and memory.

    bash -c 'source scripts/test-services.sh && .venv/bin/python bench/scale.py'

(test-services.sh starts a throw-away PostgreSQL and Redis; without them the PostgreSQL rows
are skipped.) Three parts, each printed as it finishes:

1. The API tier alone: API processes whose generator answers instantly (a blank image), driven
   by 16 concurrent clients for a fixed time: requests/s, p50 and p99, for 1 and 2 API
   processes on SQLite and on PostgreSQL. Every request is a real paid request: key check, rate
   limit (Redis when there is one), reservation, settle, JPEG encoding.
2. pixeldrop-tiny on Ray Serve: images/s for 1 and 2 replicas, and with batching on, 16
   concurrent clients, against the local engine for reference.
3. Memory: Ray's own processes on a node (head), and the RSS of each Generator replica.

Everything runs on this machine; the clients share its cores with what they measure.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def describe_cpu() -> str:
    """The CPU, its cores, and what decides bf16 speed on it (AMX, AVX512-BF16): benchmarks print it first."""
    info = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), []))
    amx = ", ".join(sorted(flags & {"amx_bf16", "amx_tile", "amx_int8"})) or "no"
    return f"CPU: {model}, {os.cpu_count()} cores, AMX: {amx}, AVX512-BF16: {'yes' if 'avx512_bf16' in flags else 'no'}"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class InstantGenerator:
    """A generator that costs nothing, so that only the API tier is measured: it answers `picture`
    (a blank one by default; overhead.py's is detailed, so that encoding costs what it would)."""

    steps = 1

    def __init__(self, picture: Image.Image | None = None):
        self.picture = picture if picture is not None else Image.new("RGB", (512, 512), (200, 30, 30))

    def generate(self, prompts, seeds, progress=None):
        return [self.picture.copy() for _ in prompts]

    def describe(self):
        return {"model": "instant", "description": "a fixed picture (benchmark)"}


def api_process(port: int, env: dict[str, str], generator: InstantGenerator | None = None) -> None:
    """A pixeldrop API process on `port` whose generator answers at once (a multiprocessing target)."""
    os.environ.update(env)
    import uvicorn

    from pixeldrop.app import create_app
    from pixeldrop.settings import Settings

    settings = Settings(warm_up=False, queue_size=256, rate_limit_per_minute=10**6, demo_account=False,
                        _env_file=None)
    uvicorn.run(create_app(settings, generator=generator or InstantGenerator()), host="127.0.0.1", port=port,
                log_level="warning")


def make_keys(database_url: str, accounts: int) -> list[str]:
    """One key each of `accounts` new accounts with credits enough for any run."""
    from pixeldrop import accounts as pd_accounts
    from pixeldrop.storage import Database

    db = Database.open(database_url)
    keys = []
    for i in range(accounts):
        email = f"bench{i}-{time.time_ns()}@example.com"
        pd_accounts.create_account(db, email, 10**9)
        keys.append(pd_accounts.create_key(db, email).key)
    db.close()
    return keys


async def _drive(urls: list[str], keys: list[str], seconds: float, concurrency: int) -> tuple[int, list[float], int]:
    latencies: list[float] = []
    failures = 0
    stop_at = time.monotonic() + seconds

    async def client(i: int) -> None:
        nonlocal failures
        async with httpx.AsyncClient(timeout=120) as http:
            n = 0
            while time.monotonic() < stop_at:
                url = urls[(i + n) % len(urls)]
                started = time.perf_counter()
                response = await http.post(url + "/text-to-image/v1", files={"prompt": (None, "a red apple")},
                                           headers={"x-api-key": keys[i % len(keys)]})
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    failures += 1
                n += 1

    await asyncio.gather(*(client(i) for i in range(concurrency)))
    return len(latencies), latencies, failures


def wait_healthy(url: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def api_tier(database: str, env: dict[str, str], processes: int, seconds: float) -> str:
    ports = [free_port() for _ in range(processes)]
    keys = make_keys(env["PIXELDROP_DATABASE_URL"], 32)
    context = multiprocessing.get_context("spawn")
    servers = [context.Process(target=api_process, args=(port, env), daemon=True) for port in ports]
    for server in servers:
        server.start()
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for url in urls:
            wait_healthy(url)
        asyncio.run(_drive(urls, keys, 2, 16))  # warm-up
        done, latencies, failures = asyncio.run(_drive(urls, keys, seconds, 16))
    finally:
        for server in servers:
            server.terminate()
            server.join()
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else float("nan")
    return (f"| {database} | {processes} | {done / seconds:.0f} | {statistics.median(latencies) * 1000:.0f} ms "
            f"| {p99 * 1000:.0f} ms | {failures} |")


def _rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total / 1024


def _pids(match: str) -> list[int]:
    listing = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    return [int(line.split()[0]) for line in listing.splitlines() if match in line and "ps -eo" not in line]


def _images_per_second(url: str, key: str, images: int, concurrency: int = 16) -> float:
    async def run() -> float:
        semaphore = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(timeout=600) as http:
            async def one(i: int) -> None:
                async with semaphore:
                    response = await http.post(url + "/text-to-image/v1", files={"prompt": (None, f"a red apple {i}")},
                                               headers={"x-api-key": key})
                    response.raise_for_status()

            await one(-1)  # warm-up
            started = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(images)))
            return images / (time.perf_counter() - started)

    return asyncio.run(run())


def _serve(home: Path, env: dict[str, str], *args: str) -> tuple[subprocess.Popen, str, str]:
    port = free_port()
    process = subprocess.Popen([str(BIN / "pixeldrop"), "serve", "--port", str(port), *args],
                               env={**os.environ, **env, "PIXELDROP_HOME": str(home)},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    key = ""
    for line in process.stdout:
        if line.strip().startswith("pd_"):
            key = line.strip()
        if "Uvicorn running on" in line:
            break
    else:
        raise RuntimeError("pixeldrop serve exited")
    return process, f"http://127.0.0.1:{port}", key


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()


def replicas(images: int) -> list[str]:
    rows = []
    base = {"PIXELDROP_RATE_LIMIT_PER_MINUTE": "100000", "PIXELDROP_FREE_CREDITS": "100000", "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        process, url, key = _serve(Path(tmp) / "local", base)
        try:
            rows.append(f"| local engine | 1 | 1 | {_images_per_second(url, key, images):.2f} | |")
        finally:
            _stop(process)
        port = free_port()
        env = {**base, **RAY_ENV}
        subprocess.run([str(BIN / "ray"), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                        "--num-cpus", "2", "--include-dashboard=false", "--disable-usage-stats"],
                       env={**os.environ, **env}, check=True, capture_output=True)
        try:
            ray_own = _rss_mib(_pids("/ray/") + _pids("ray::") + _pids("raylet"))
            rows.append(f"Ray's own processes on the head node, idle: {ray_own:.0f} MiB RSS")
            for count, batch in [(1, 1), (2, 1), (2, 4)]:
                home = Path(tmp) / f"ray-{count}-{batch}"
                process, url, key = _serve(home, {**env, "PIXELDROP_MAX_BATCH": str(batch)}, "--engine", "ray",
                                           "--ray-address", f"127.0.0.1:{port}", "--replicas", str(count))
                try:
                    rate = _images_per_second(url, key, images)
                    replica_rss = [_rss_mib([pid]) for pid in _pids("ServeReplica:pixeldrop:Generator")]
                    rss = ", ".join(f"{r:.0f}" for r in replica_rss)
                    rows.append(f"| ray engine | {count} | {batch} | {rate:.2f} | {rss} MiB |")
                finally:
                    _stop(process)
                    _delete_app(port, env)
        finally:
            subprocess.run([str(BIN / "ray"), "stop", "--force"], env={**os.environ, **env}, capture_output=True)
    return rows


def _delete_app(port: int, env: dict[str, str]) -> None:
    """Remove the `pixeldrop` application, so that the next server deploys its own settings."""
    code = (f"import ray; from ray import serve; ray.init(address='127.0.0.1:{port}', log_to_driver=False); "
            "serve.delete('pixeldrop') if 'pixeldrop' in serve.status().applications else None")
    subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15, help="Duration of each API-tier run.")
    parser.add_argument("--images", type=int, default=32, help="Images per replica run.")
    parser.add_argument("--skip-api", action="store_true")
    parser.add_argument("--skip-replicas", action="store_true")
    args = parser.parse_args()
    print(describe_cpu(), flush=True)
    if not args.skip_api:
        print("| database | API processes | requests/s | p50 | p99 | non-200 |")
        print("| --- | --- | --- | --- | --- | --- |")
        with tempfile.TemporaryDirectory() as tmp:
            databases = {"SQLite": {"PIXELDROP_DATABASE_URL": f"sqlite:///{tmp}/bench.db"}}
            if os.environ.get("PIXELDROP_TEST_POSTGRES_URL"):
                databases["PostgreSQL"] = {"PIXELDROP_DATABASE_URL": os.environ["PIXELDROP_TEST_POSTGRES_URL"]}
            redis = {"PIXELDROP_REDIS_URL": os.environ["PIXELDROP_TEST_REDIS_URL"]} \
                if os.environ.get("PIXELDROP_TEST_REDIS_URL") else {}
            for name, env in databases.items():
                for processes in (1, 2):
                    print(api_tier(name, {**env, **redis, "PIXELDROP_HOME": tmp}, processes, args.seconds),
                          flush=True)
    if not args.skip_replicas:
        print("| engine | replicas | max_batch | images/s | replica RSS |")
        print("| --- | --- | --- | --- | --- |")
        for row in replicas(args.images):
            print(row, flush=True)


if __name__ == "__main__":
    main()
