"""/v1/jobs against a real `pixeldrop serve`, on SQLite and PostgreSQL: jobs accepted by one server
process, that process killed, and another on the same database making them, each charged once;
results in each format, their expiry, cancelling, other accounts, 402 and 429, and webhooks that
a receiver on loopback verifies with the `standardwebhooks` package."""

from __future__ import annotations

import io
import os
import signal
from collections import Counter
from datetime import timedelta

import pytest
import requests
from PIL import Image
from sqlalchemy import select, update
from standardwebhooks import Webhook

from pixeldrop import idempotency
from pixeldrop.storage import Database, IdempotencyKey, Job, utcnow

from ..books import ledger, new_payer, request_states
from ..jobs.receiver import Receiver
from ..server import Server, cli, wait_until
from .test_idempotency import cannot_store
from .test_money import live_server

JOBS = "/v1/jobs"
UNLIMITED = 100_000  # requests per minute, for keys whose tests are not about the rate limit


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, tmp_path):
    """The server's state folder, the environment that names its database, and that database."""
    home = tmp_path / "home"
    env = {}
    url = f"sqlite:///{home / 'pixeldrop.db'}"
    if request.param == "postgresql":
        url = env["PIXELDROP_DATABASE_URL"] = request.getfixturevalue("database_url_postgresql")
    home.mkdir()
    db = Database.open(url)
    yield home, env, db
    db.close()


def kill(server: Server) -> None:
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait()


class Client:
    def __init__(self, url: str, key: str):
        self.url, self.key = url + JOBS, key

    def submit(self, **kwargs) -> requests.Response:
        return requests.post(self.url, headers={"x-api-key": self.key, **kwargs.pop("headers", {})}, timeout=60,
                             **kwargs)

    def get(self, path: str, **headers) -> requests.Response:
        return requests.get(self.url + path, headers={"x-api-key": self.key, **headers}, timeout=60)

    def delete(self, job_id: str) -> requests.Response:
        return requests.delete(f"{self.url}/{job_id}", headers={"x-api-key": self.key}, timeout=60)

    def status(self, job_id: str) -> str:
        return self.get(f"/{job_id}").json()["status"]


def test_jobs_wait_in_the_database_for_a_server_that_runs_them(backend, tiny_model):
    home, env, db = backend
    alice = new_payer(db, "alice@example.com", credits=10, rate_limit=UNLIMITED)
    bob = new_payer(db, "bob@example.com", credits=10, rate_limit=3)
    poor = new_payer(db, "poor@example.com", credits=1, rate_limit=UNLIMITED)

    # A server that accepts jobs and does not make them (PIXELDROP_RUN_JOBS=false): they stay queued.
    front = Server(home, "--model", tiny_model, PIXELDROP_RUN_JOBS="false", **env).start()
    try:
        api = Client(front.url, alice.key)
        png = api.submit(files={"prompt": (None, "a red apple"), "seed": (None, "42"), "output_format": (None, "png")})
        assert png.status_code == 202, png.text
        job = png.json()
        assert job["status"] == "queued" and job["queue_position"] == 1 and job["seed"] == 42
        assert job["status_url"] == job["cancel_url"] == f"{front.url}{JOBS}/{job['id']}"
        assert job["result_url"] == job["status_url"] + "/result" and png.headers["location"] == job["status_url"]
        assert png.headers["x-remaining-credits"] == "8"
        plain = api.submit(data={"prompt": "a blue car"}).json()  # urlencoded, as Python's requests sends it
        webp = api.submit(json={"prompt": "a green tree", "seed": 7, "output_format": "webp"}).json()
        doomed = api.submit(json={"prompt": "never made"})
        assert [plain["queue_position"], webp["queue_position"]] == [2, 3] and doomed.headers[
            "x-remaining-credits"] == "2"

        # A retry with the same Idempotency-Key is the same job, reserved once; seedless retries too.
        retry = {"Idempotency-Key": "submit-once"}
        first = api.submit(data={"prompt": "a rocket"}, headers=retry)
        replayed = api.submit(data={"prompt": "a rocket"}, headers=retry)
        assert replayed.headers["idempotent-replayed"] == "true" and replayed.content == first.content
        assert first.json()["queue_position"] == 5 and replayed.headers["x-remaining-credits"] == "0"
        reused = api.submit(data={"prompt": "a rocket", "seed": "5"}, headers=retry)
        assert reused.status_code == 422 and set(reused.json()) == {"error"}
        assert api.delete(first.json()["id"]).headers["x-remaining-credits"] == "2"

        polled = requests.get(job["status_url"], headers={"Authorization": f"Bearer {alice.key}"}, timeout=60)
        assert polled.status_code == 200 and polled.json()["status"] == "queued"
        early = api.get(f"/{job['id']}/result")
        assert early.status_code == 409 and early.json() == {"error": "The job is queued: its image is not made yet."}

        canceled = api.delete(doomed.json()["id"])
        assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
        assert canceled.headers["x-remaining-credits"] == "4"
        again = api.delete(doomed.json()["id"])
        assert again.status_code == 409 and set(again.json()) == {"error"}

        other = Client(front.url, bob.key)
        assert [other.get(f"/{job['id']}").status_code, other.get(f"/{job['id']}/result").status_code,
                other.delete(job["id"]).status_code] == [404, 404, 404], "another account's job is not found"
        limited = other.get(f"/{job['id']}")
        assert limited.status_code == 429 and "retry-after" in limited.headers

        broke = Client(front.url, poor.key).submit(data={"prompt": "a red apple"})
        assert broke.status_code == 402 and broke.headers["x-remaining-credits"] == "1"
        private = api.submit(json={"prompt": "a red apple", "webhook_url": "http://127.0.0.1:9/hook"})
        assert private.status_code == 400 and "private, loopback or link-local" in private.json()["error"]
        for bad in ({"json": {"prompt": "x", "output_format": "gif"}}, {"json": {"prompt": "x", "seed": -1}},
                    {"json": {"seed": 1}}, {"json": ["a red apple"]}, {"data": {"prompt": " "}}):
            refused = api.submit(**bad)
            assert refused.status_code == 400 and set(refused.json()) == {"error"}, bad
        assert api.submit(headers={"x-api-key": "pd_wrong"}, json={"prompt": "x"}).status_code == 403
        assert api.submit(headers={"x-api-key": ""}, json={"prompt": "x"}).status_code == 401
        assert ledger(db, alice.account_id) == [("free", 10)] + [("image", -2)] * 5 + [("refund", 2)] * 2
    finally:
        kill(front)  # as a crash would: nothing accepted may be lost

    receiver = Receiver(answers=(500,))
    worker = Server(home, "--model", tiny_model, PIXELDROP_WEBHOOK_ALLOW_PRIVATE="true", **env).start()
    try:
        api = Client(worker.url, alice.key)
        hooked = api.submit(json={"prompt": "a red apple", "webhook_url": receiver.url}).json()
        jobs = [job["id"], plain["id"], webp["id"], hooked["id"]]
        wait_until(lambda: [api.status(job_id) for job_id in jobs] == ["succeeded"] * 4, "the jobs", timeout=120)

        made = api.get(f"/{job['id']}/result", accept="image/jpeg")
        assert made.status_code == 200 and made.headers["content-type"] == "image/png", "the format asked at submit"
        assert made.headers["seed"] == "42"
        with Image.open(io.BytesIO(made.content)) as image:
            assert image.size == (512, 512) and "Seed: 42" in image.info["parameters"]
        for accept, media_type in [("image/webp", "image/webp"), (None, "image/jpeg"), ("image/png", "image/png")]:
            answer = api.get(f"/{plain['id']}/result", **({"accept": accept} if accept else {}))
            assert answer.headers["content-type"] == media_type and answer.headers["seed"] == str(plain["seed"])
            assert Image.open(io.BytesIO(answer.content)).size == (512, 512)
        assert api.get(f"/{plain['id']}/result", accept="text/html").status_code == 406
        assert api.get(f"/{webp['id']}/result", accept="image/png").headers["content-type"] == "image/webp"
        status = api.get(f"/{job['id']}").json()
        assert status["credits_charged"] == 2 and status["started_at"] and status["result_expires_at"]

        secret = cli(home, "accounts", "webhook-secret", "alice@example.com", **env).stdout.strip().splitlines()[-1]
        wait_until(lambda: len(receiver.requests) == 2, "the webhook and its retry after a 500")
        events = [Webhook(secret).verify(body, headers) for headers, body in receiver.requests]
        assert events[0] == events[1] and events[0]["type"] == "job.succeeded"
        assert events[0]["data"]["id"] == hooked["id"] and events[0]["data"]["credits_charged"] == 2
        assert receiver.requests[0][0]["webhook-id"] == receiver.requests[1][0]["webhook-id"]

        with db.session() as session:  # a day and an hour later
            session.execute(update(Job).where(Job.public_id == job["id"])
                            .values(finished_at=utcnow() - timedelta(hours=25)))
        gone = api.get(f"/{job['id']}/result")
        assert gone.status_code == 410 and "24 hours" in gone.json()["error"]
    finally:
        worker.stop()
        receiver.close()
    assert ledger(db, alice.account_id) == \
        [("free", 10)] + [("image", -2)] * 5 + [("refund", 2)] * 2 + [("image", -2)]
    # 4 made and charged, 2 canceled and refunded, 6 refused before any credit moved (400s)
    assert Counter(request_states(db, alice.account_id)) == {"charged": 4, "refunded": 2, "refused": 6}


def test_a_job_running_when_its_server_is_killed_is_made_once_after_a_restart(backend, tiny_model):
    home, env, db = backend
    alice = new_payer(db, "alice@example.com", credits=10, rate_limit=UNLIMITED)
    # Enough denoising steps that the first job is surely still running when the process dies.
    doomed = Server(home, "--model", tiny_model, "--steps", "1000", PIXELDROP_WARM_UP="false",
                    PIXELDROP_JOBS_AT_ONCE="1", **env).start()
    try:
        api = Client(doomed.url, alice.key)
        jobs = [api.submit(data={"prompt": f"prompt {i}"}).json()["id"] for i in range(2)]
        wait_until(lambda: api.status(jobs[0]) == "running", "the first job to start", timeout=120)
    finally:
        kill(doomed)
    assert request_states(db, alice.account_id) == ["pending", "pending"]

    # The next server gives the abandoned job back to the queue: on SQLite as it starts, on
    # PostgreSQL (which other live servers may share) once its claim is older than the stale age.
    restarted = Server(home, "--model", tiny_model, PIXELDROP_GENERATION_DEADLINE_SECONDS="5",
                       PIXELDROP_STALE_RESERVATION_SECONDS="6", **env).start()
    try:
        api = Client(restarted.url, alice.key)
        wait_until(lambda: [api.status(job) for job in jobs] == ["succeeded"] * 2, "both jobs", timeout=120)
    finally:
        restarted.stop()
    assert ledger(db, alice.account_id) == [("free", 10), ("image", -2), ("image", -2)], "charged once each"
    assert request_states(db, alice.account_id) == ["charged", "charged"]
    with db.session() as session:
        attempts = dict(session.execute(select(Job.public_id, Job.attempts)).all())
    assert attempts == {jobs[0]: 2, jobs[1]: 1}, "the killed job ran again, once; the other once"


def test_a_submitted_job_and_its_stored_answer_are_one_transaction(settings, db, tiny_generator, monkeypatch):
    """With an Idempotency-Key, storing the 202 fails inside the job's transaction: no job, the
    reservation given back, the key released, a 503; once storage works, the 202 is stored with its job."""
    settings.run_jobs = False  # the jobs stay queued: only the submission is paid here
    with live_server(settings, db, tiny_generator) as live:
        payer = new_payer(db, credits=10)
        api = Client(live.url, payer.key)
        retry = {"Idempotency-Key": "job-once"}
        monkeypatch.setattr(idempotency, "complete_within", cannot_store)
        failed = api.submit(data={"prompt": "a rocket", "seed": "5"}, headers=retry)
        assert failed.status_code == 503 and set(failed.json()) == {"error"}, failed.text
        with db.session() as session:
            assert session.scalars(select(Job.id)).all() == [], "no job"
            assert session.scalars(select(IdempotencyKey.id)).all() == [], "the key was released"
        assert ledger(db, payer.account_id) == [("free", 10), ("image", -2), ("refund", 2)]

        monkeypatch.undo()
        accepted = api.submit(data={"prompt": "a rocket", "seed": "5"}, headers=retry)
        assert accepted.status_code == 202 and "idempotent-replayed" not in accepted.headers
        again = api.submit(data={"prompt": "a rocket", "seed": "5"}, headers=retry)
        assert again.headers["idempotent-replayed"] == "true" and again.content == accepted.content
        assert again.headers["location"] == accepted.headers["location"]
        with db.session() as session:
            assert session.scalars(select(Job.public_id)).all() == [accepted.json()["id"]]
            assert session.scalars(select(IdempotencyKey.state)).all() == ["done"]
    assert ledger(db, payer.account_id) == [("free", 10), ("image", -2), ("refund", 2), ("image", -2)]
    assert request_states(db, payer.account_id) == ["refunded", "pending"]
