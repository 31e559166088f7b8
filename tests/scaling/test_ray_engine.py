"""`pixeldrop serve --engine ray` against a real local Ray cluster: the contract, a replica killed
mid-burst, autoscaling, back-pressure, two API processes sharing one cluster, and /metrics.

One Ray head is started for the module (`ray start --head` on loopback, ~10 s) and stopped at
the end; each test deploys the `pixeldrop` application afresh with its own settings.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from ..http_contract import URL_PATH, check_contract
from ..server import Server, cli, free_port, wait_until

ray = pytest.importorskip("ray")
from ray import serve  # noqa: E402

RAY = str(Path(sys.executable).parent / "ray")
REPLICA_TITLE = "ServeReplica:pixeldrop:Generator"


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A Ray head on loopback (conftest.py sets the environment it needs)."""
    port = free_port()
    subprocess.run([RAY, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "4",
                    "--include-dashboard=false", "--disable-usage-stats"],
                   check=True, capture_output=True, timeout=180)
    address = f"127.0.0.1:{port}"
    ray.init(address=address, log_to_driver=False)
    try:
        yield address
    finally:
        ray.shutdown()
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120)


@pytest.fixture
def fresh_app(ray_address) -> str:
    """No `pixeldrop` application on the cluster: the next server deploys its own settings."""
    if "pixeldrop" in serve.status().applications:
        serve.delete("pixeldrop")
    return ray_address


def replica_pids() -> set[int]:
    listing = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    return {int(line.split()[0]) for line in listing.splitlines() if REPLICA_TITLE in line}


def ray_server(home: Path, address: str, model: str, *args: str, **env: str) -> Server:
    return Server(home, "--engine", "ray", "--ray-address", address, "--model", model, *args,
                  PIXELDROP_WARM_UP="false", **env)


def account(home: Path, email: str, credits: int, **env: str) -> str:
    assert cli(home, "accounts", "create", email, "--credits", str(credits), **env).returncode == 0
    return cli(home, "keys", "create", email, **env).stdout.strip().splitlines()[-1]


def post(url: str, key: str, prompt: str = "a red apple", timeout: float = 300) -> requests.Response:
    return requests.post(url + URL_PATH, files={"prompt": (None, prompt)}, headers={"x-api-key": key},
                         timeout=timeout)


def health(server: Server) -> dict:
    return requests.get(server.url + "/healthz", timeout=30).json()


def ledger(home: Path, email: str, database_url: str | None = None) -> tuple[int, list[tuple[str, int]]]:
    engine = create_engine(database_url or f"sqlite:///{home / 'pixeldrop.db'}")
    with engine.connect() as connection:
        account_id, balance = connection.execute(text("SELECT id, credits FROM accounts WHERE email = :e"),
                                                 {"e": email}).one()
        rows = connection.execute(text("SELECT reason, delta FROM credit_ledger WHERE account_id = :a ORDER BY id"),
                                  {"a": account_id}).all()
    engine.dispose()
    return balance, [tuple(row) for row in rows]


def test_the_contract_holds_on_two_replicas(fresh_app, tmp_path, tiny_model):
    home = tmp_path / "home"
    server = ray_server(home, fresh_app, tiny_model, "--replicas", "2").start()
    try:
        check_contract(server.url, server.demo_key(), tmp_path)
        state = health(server)
        assert state["engine"] == "ray"
        assert state["replicas"] == {"running": 2, "wanted": 2}
        assert len(replica_pids()) == 2
    finally:
        server.stop()
    assert "pixeldrop" in serve.status().applications, "a shared cluster keeps serving after an API process stops"


def test_a_replica_killed_mid_burst_loses_no_credit_and_comes_back(fresh_app, tmp_path, tiny_model):
    home = tmp_path / "home"
    key = account(home, "burst@example.com", 100)
    # Enough denoising steps that requests are surely in flight when a replica dies.
    server = ray_server(home, fresh_app, tiny_model, "--replicas", "2", "--steps", "60").start()
    try:
        before = replica_pids()
        assert len(before) == 2
        with ThreadPoolExecutor(8) as pool:
            answers = [pool.submit(post, server.url, key, f"burst {i}") for i in range(8)]
            wait_until(lambda: health(server)["queue"]["waiting"] >= 4, "requests in flight")
            victim = min(before)
            os.kill(victim, signal.SIGKILL)
            responses = [answer.result() for answer in answers]
        codes = [r.status_code for r in responses]
        assert all(code == 200 or code >= 500 for code in codes), codes
        delivered = codes.count(200)
        assert delivered >= 1
        balance, rows = ledger(home, "burst@example.com")
        assert balance == 100 - 2 * delivered
        assert [reason for reason, _ in rows].count("image") - [reason for reason, _ in rows].count("refund") \
            == delivered
        assert sum(delta for _, delta in rows) == balance

        wait_until(lambda: len(replica_pids()) == 2 and victim not in replica_pids(), "Ray to restart the replica")
        wait_until(lambda: health(server)["replicas"] == {"running": 2, "wanted": 2}, "/healthz to show it")
        assert post(server.url, key).status_code == 200
    finally:
        server.stop()


def test_a_flood_beyond_the_queue_gets_503_and_costs_nothing(fresh_app, tmp_path, tiny_model):
    home = tmp_path / "home"
    key = account(home, "flood@example.com", 100)
    server = ray_server(home, fresh_app, tiny_model, "--replicas", "1", "--steps", "30",
                        PIXELDROP_QUEUE_SIZE="2").start()
    try:
        with ThreadPoolExecutor(10) as pool:
            responses = list(pool.map(lambda i: post(server.url, key, f"flood {i}"), range(10)))
    finally:
        server.stop()
    codes = sorted(r.status_code for r in responses)
    assert set(codes) == {200, 503}, codes
    assert all(int(r.headers["retry-after"]) >= 1 for r in responses if r.status_code == 503)
    balance, rows = ledger(home, "flood@example.com")
    assert balance == 100 - 2 * codes.count(200)
    assert [reason for reason, _ in rows] == ["free"] + ["image"] * codes.count(200), "503s wrote no ledger row"


def test_autoscaling_follows_the_load_up_and_down(fresh_app, tmp_path, tiny_model):
    home = tmp_path / "home"
    key = account(home, "scale@example.com", 1000)
    server = ray_server(home, fresh_app, tiny_model, "--autoscale", "1:3", "--steps", "40",
                        PIXELDROP_AUTOSCALE_UPSCALE_DELAY_SECONDS="0",
                        PIXELDROP_AUTOSCALE_DOWNSCALE_DELAY_SECONDS="2").start()
    try:
        assert health(server)["replicas"] == {"running": 1, "wanted": 1}
        stop = threading.Event()

        def keep_busy() -> None:
            while not stop.is_set():
                post(server.url, key)

        workers = [threading.Thread(target=keep_busy) for _ in range(6)]
        for worker in workers:
            worker.start()
        try:
            wait_until(lambda: health(server)["replicas"]["running"] >= 2, "a scale-up under load", timeout=120)
        finally:
            stop.set()
            for worker in workers:
                worker.join(timeout=300)
        wait_until(lambda: health(server)["replicas"] == {"running": 1, "wanted": 1}, "the scale-down", timeout=120)
    finally:
        server.stop()


def test_two_api_processes_share_credits_limits_and_replicas(fresh_app, tmp_path, tiny_model, redis_url,
                                                             database_url_postgresql):
    home = tmp_path / "home"
    env = {"PIXELDROP_DATABASE_URL": database_url_postgresql, "PIXELDROP_REDIS_URL": redis_url}
    key = account(home, "race@example.com", 10, **env)
    first = ray_server(home, fresh_app, tiny_model, "--replicas", "2", **env).start()
    second = ray_server(home, fresh_app, tiny_model, **env).start()
    try:
        urls = [first.url, second.url]
        with ThreadPoolExecutor(12) as pool:
            responses = list(pool.map(lambda i: post(urls[i % 2], key, f"race {i}"), range(12)))
        codes = sorted(r.status_code for r in responses)
        assert codes == [200] * 5 + [402] * 7
        assert sorted(int(r.headers["x-remaining-credits"]) for r in responses if r.status_code == 200) \
            == [0, 2, 4, 6, 8]
        assert health(second)["replicas"] == {"running": 2, "wanted": 2}, "the second attached, not redeployed"
        assert ledger(home, "race@example.com", database_url_postgresql)[0] == 0

        metrics = {}
        for family in text_string_to_metric_families(requests.get(first.url + "/metrics", timeout=30).text):
            for sample in family.samples:
                metrics[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        served_here = sum(1 for i, r in enumerate(responses) if i % 2 == 0 and r.status_code == 200)
        refused_here = sum(1 for i, r in enumerate(responses) if i % 2 == 0 and r.status_code == 402)
        route = (("route", URL_PATH),)
        # A label set appears once it has been seen: absent means none (all might have gone to `second`).
        assert metrics.get(("pixeldrop_http_request_duration_seconds_count", route + (("status", "200"),)), 0) \
            == served_here
        assert metrics.get(("pixeldrop_http_request_duration_seconds_count", route + (("status", "402"),)), 0) \
            == refused_here
        assert metrics[("pixeldrop_images_total", ())] == served_here
        assert metrics[("pixeldrop_credits_charged_total", ())] == 2 * served_here
        assert metrics[("pixeldrop_replicas", (("state", "running"),))] == 2
    finally:
        first.stop()
        second.stop()
