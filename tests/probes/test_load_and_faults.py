"""A burst of paying clients with faults on top, against a real `pixeldrop serve`, on SQLite and PostgreSQL.

What it guards: the money rules (src/pixeldrop/paid_generation.py, accounts/credits.py) when many
things go wrong in one run, as they do in production, rather than one fault at a time as in
tests/api/test_money.py. On one database, with one server process and then its successor:

1. a burst of 11 clients from three accounts for 3 places (PIXELDROP_QUEUE_SIZE=2 waiting, one
   generating): some wait for their image, some give up on a short client timeout, some close the
   socket mid-wait; the full queue answers 503 before any reservation;
1b. three images at once for an account with the price of one: exactly one is made, none overdraws;
2. SQLite only: another process holds the database (`BEGIN EXCLUSIVE`) past the server's busy
   timeout (PIXELDROP_DATABASE_BUSY_TIMEOUT_SECONDS=0.5) while paid requests wait for their images,
   until every one of them has been answered: no image can be charged meanwhile, so the clients get
   only the images charged before the lock, and every reservation caught pending under it ends
   refunded (its refund, which the lock also blocked, is retried by a sweep);
3. `kill -9` of the server while reservations are pending, then a restart on the same database,
   whose sweep (PIXELDROP_STALE_RESERVATION_SECONDS=6 > the 5 s generation deadline) refunds what
   the dead process left, each once, as a 500; then more images, all charged normally.

Then, for every account: the balance is >= 0, every ledger row's `balance_after` is the running sum
and the last one is the balance, no reservation is pending, each reservation is charged or refunded
(one ledger row each way), and, against what the clients saw:
- an account whose clients all waited for their answers (never gave up, never lost their server)
  was charged for exactly the whole images they received: charged == received;
- a client that gave up (timeout, closed socket) may have been charged without receiving its image:
  the charge is settled before the answer is written, and the server may not notice the hang-up in
  time (the image was made for it); likewise a client whose server was killed after its charge and
  before its answer. So received <= charged <= received + clients that gave up or lost their server,
  per account: a charged image that nobody received belongs to one of those, never to a waiting one.

Bounded: about 30 requests per database, each client with a timeout, every wait a poll of an
observable condition (the database, /healthz, the clients, the server's log) with a deadline, every
loop counted; about 20 s per database here on 2 cores, most of it the two server starts. Traffic
goes to 127.0.0.1 only.
"""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import accumulate

import httpx
import pytest
from PIL import Image
from sqlalchemy import func, select

from pixeldrop.accounts import credits
from pixeldrop.storage import Database, ImageRequest, LedgerEntry

from ..api.test_money import open_request
from ..books import new_payer
from ..server import Server, wait_until

URL = "/text-to-image/v1"
PRICE = 2
DEADLINE_SECONDS = 5  # PIXELDROP_GENERATION_DEADLINE_SECONDS
STALE_SECONDS = 6  # PIXELDROP_STALE_RESERVATION_SECONDS: must exceed the deadline (the settings check it)
BUSY_TIMEOUT_SECONDS = 0.5  # PIXELDROP_DATABASE_BUSY_TIMEOUT_SECONDS (SQLite)
STEPS = "20"  # denoising steps of the tiny model: ~0.5 s an image here, so that requests overlap
PATIENT_TIMEOUT = 60  # far past the deadline: a patient client always gets an answer
CREDITS = {"patient": 200, "impatient": 200, "hangup": 200, "poor": PRICE, "victim": 200}


@dataclass
class Outcome:
    """What one client saw."""

    account: str
    status: int | None = None  # None: no HTTP answer at all
    received: bool = False  # a 200 whose whole image arrived
    gave_up: bool = False  # the client timed out or hung up before its answer
    error: str = ""  # the JSON error of a refusal, or the transport error


@dataclass
class Run:
    server: Server
    db: Database
    keys: dict[str, str]
    ids: dict[str, int]
    outcomes: list[Outcome] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, outcome: Outcome) -> Outcome:
        with self.lock:
            self.outcomes.append(outcome)
        return outcome

    def pending(self, account: str | None = None) -> int:
        with self.db.session() as session:
            query = select(func.count()).select_from(ImageRequest).where(ImageRequest.state == "pending")
            if account is not None:
                query = query.where(ImageRequest.account_id == self.ids[account])
            return session.scalar(query)


def _whole_image(response: httpx.Response) -> bool:
    if not response.headers.get("content-type", "").startswith("image/"):
        return False
    if len(response.content) != int(response.headers["content-length"]):
        return False
    Image.open(io.BytesIO(response.content)).verify()
    return True


def patient(run: Run, account: str, timeout: float = PATIENT_TIMEOUT) -> Outcome:
    """A client that waits for its answer (up to `timeout`; a shorter one makes it impatient)."""
    try:
        response = httpx.post(run.server.url + URL, headers={"x-api-key": run.keys[account]},
                              files={"prompt": (None, f"a {account} client's image")}, timeout=timeout,
                              trust_env=False)  # loopback only, whatever proxy the environment names
    except httpx.TimeoutException as error:
        return run.record(Outcome(account, gave_up=True, error=type(error).__name__))
    except httpx.TransportError as error:  # the server died under it
        return run.record(Outcome(account, error=type(error).__name__))
    if response.status_code == 200:
        return run.record(Outcome(account, 200, received=_whole_image(response)))
    return run.record(Outcome(account, response.status_code, error=response.text[:200]))


def hang_up(run: Run, account: str, after: float) -> Outcome:
    """A whole request on a raw socket; the client waits `after` seconds for a first byte, then closes."""
    connection = open_request(run.server.port, run.keys[account], "a client that leaves")
    connection.settimeout(after)
    try:
        connection.recv(1)  # whatever came, the client leaves without reading its answer
    except (TimeoutError, OSError):
        pass
    finally:
        connection.close()
    return run.record(Outcome(account, gave_up=True, error=f"closed after {after:g} s"))


def burst(jobs: list[Callable[[], Outcome]], timeout: float = 120) -> list[Outcome]:
    """All the jobs at once, each in its own thread; every job is bounded by its client's timeout."""
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(job) for job in jobs]
        return [future.result(timeout=timeout) for future in futures]


def idle(run: Run, pending: bool = True) -> bool:
    """Nothing waiting for or in the model (and, with `pending`, no reservation left): the next step
    starts from a quiet server, so that what it observes is its own doing."""
    queue = httpx.get(run.server.url + "/healthz", timeout=10, trust_env=False).json()["queue"]
    return queue["waiting"] == 0 and not queue["busy"] and (not pending or run.pending() == 0)


def start_server(home, tiny_model, env) -> Server:
    return Server(home, "--model", tiny_model, "--steps", STEPS, **env).start()


@dataclass
class LockedAt:
    """What the database held when the lock was taken (read through the lock's own connection)."""

    pending: set[int]  # patient's reservations between reservation and charge
    charged: int  # patient's images charged so far


def hold_the_database(run: Run, db_path, clients_done: Callable[[], bool],
                      max_hold: float = 3 * DEADLINE_SECONDS) -> LockedAt:
    """Lock SQLite from another connection (past the server's busy timeout) while a paid request of
    `patient` is between its reservation and its charge; hold it until every client of this step has
    been answered (at most `max_hold`: a request ends within its deadline plus the busy timeout)."""
    lock = sqlite3.connect(db_path, isolation_level=None, timeout=10)
    try:
        for _ in range(20):  # bounded: a reservation may be charged between the poll and the lock
            wait_until(lambda: run.pending("patient") >= 1, "a patient reservation to lock the database under")
            lock.execute("BEGIN EXCLUSIVE")
            rows = lock.execute("SELECT id, state FROM image_requests WHERE account_id = ?",
                                (run.ids["patient"],)).fetchall()
            locked_at = LockedAt({id_ for id_, state in rows if state == "pending"},
                                 sum(state == "charged" for _, state in rows))
            if locked_at.pending:
                break
            lock.execute("ROLLBACK")
        else:
            raise AssertionError("never caught a patient reservation pending")
        # The fault lasts until the clients have seen its effect: a poll, not a guessed duration.
        wait_until(clients_done, "every client to be answered while the database is locked", timeout=max_hold)
    finally:
        if lock.in_transaction:
            lock.execute("ROLLBACK")
        lock.close()
    return locked_at


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_no_credit_is_lost_or_taken_for_nothing_under_load_and_faults(backend, tmp_path, tiny_model, request):
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PIXELDROP_QUEUE_SIZE": "2",
        "PIXELDROP_GENERATION_DEADLINE_SECONDS": str(DEADLINE_SECONDS),
        "PIXELDROP_STALE_RESERVATION_SECONDS": str(STALE_SECONDS),
        "PIXELDROP_DATABASE_BUSY_TIMEOUT_SECONDS": str(BUSY_TIMEOUT_SECONDS),
        "PIXELDROP_RATE_LIMIT_PER_MINUTE": "10000",  # 429 is not under test here
        "PIXELDROP_WARM_UP": "false",
        "PIXELDROP_DEMO_ACCOUNT": "false",
    }
    if backend == "postgresql":
        url = env["PIXELDROP_DATABASE_URL"] = request.getfixturevalue("database_url_postgresql")
    else:
        url = f"sqlite:///{home / 'pixeldrop.db'}"
    db = Database.open(url)
    request.addfinalizer(db.close)
    keys, ids = {}, {}
    for name, amount in CREDITS.items():
        payer = new_payer(db, f"{name}@example.com", credits=amount)
        keys[name], ids[name] = payer.key, payer.account_id

    server = start_server(home, tiny_model, env)
    restarted: Server | None = None
    run = Run(server, db, keys, ids)
    try:
        # 1. The burst: 11 clients at once for 3 places (one generating, two waiting).
        first = burst(
            [lambda: patient(run, "patient")] * 4
            + [lambda t=t: patient(run, "impatient", timeout=t) for t in (0.2, 0.5, 1.0, 2.0)]
            + [lambda t=t: hang_up(run, "hangup", after=t) for t in (0.05, 0.3, 1.0)])
        assert [o for o in first if o.status == 503 and "queue is full" in o.error], f"the queue never filled: {first}"
        wait_until(lambda: idle(run), "the hang-ups to be refunded and the queue to drain", timeout=60)

        # 1b. Three images at once for an account with the price of one: one is made, none overdraws.
        poor = burst([lambda: patient(run, "poor")] * 3)
        statuses = [o.status for o in poor]
        assert statuses.count(200) == 1 and set(statuses) <= {200, 402, 503}, poor  # 503: the queue was full
        wait_until(lambda: idle(run), "the queue to drain", timeout=60)

        # 2. SQLite: a lock held past the busy timeout while a paid request waits for its image.
        locked_at = None
        if backend == "sqlite":
            charged_before = states_of(db, ids["patient"]).get("charged", 0)
            with ThreadPoolExecutor(max_workers=3) as pool:
                clients = [pool.submit(patient, run, "patient") for _ in range(3)]
                locked_at = hold_the_database(run, home / "pixeldrop.db", lambda: all(c.done() for c in clients))
                second = [client.result(timeout=PATIENT_TIMEOUT) for client in clients]
            # Whoever was not charged when the lock was taken cannot be charged while it is held, and
            # every client of this step was answered meanwhile: only images charged before it arrive.
            assert sum(o.received for o in second) == locked_at.charged - charged_before, (second, locked_at)
            assert {o.status for o in second} <= {200, 503}, second
            wait_until(lambda: idle(run, pending=False), "the queue to drain", timeout=60)

        # 3. kill -9 with reservations pending, then a restart on the same database.
        with ThreadPoolExecutor(max_workers=4) as pool:
            victims = [pool.submit(patient, run, "victim") for _ in range(4)]
            wait_until(lambda: run.pending("victim") >= 2, "reservations in flight to kill", timeout=60)
            os.kill(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=30)
            [victim.result(timeout=PATIENT_TIMEOUT) for victim in victims]
        with db.session() as session:
            left_pending = set(session.scalars(select(ImageRequest.id).where(ImageRequest.state == "pending")))
        assert left_pending, "the kill caught no reservation: it tested nothing"

        restarted = start_server(home, tiny_model, env)
        run.server = restarted
        wait_until(lambda: run.pending() == 0, "the restarted server's sweep to refund them", timeout=60)
        after = [patient(run, "patient") for _ in range(3)] + [patient(run, "victim") for _ in range(2)]
        assert [o.status for o in after] == [200] * 5, f"the restarted server does not serve: {after}"
    finally:
        for each in (server, restarted):
            if each is not None and each.process.poll() is None:
                each.stop()

    with db.session() as session:
        refunds = session.execute(
            select(ImageRequest.id, ImageRequest.state, ImageRequest.outcome,
                   select(func.count()).where(LedgerEntry.request_id == ImageRequest.id,
                                              LedgerEntry.reason == "refund").scalar_subquery())
            .where(ImageRequest.id.in_(left_pending))).all()
    assert all(state == "refunded" and outcome == "failed" and rows == 1 for _, state, outcome, rows in refunds), \
        f"what the dead process left is refunded once each, as failed: {refunds}"

    if locked_at is not None:
        with db.session() as session:
            ends = dict(session.execute(select(ImageRequest.id, ImageRequest.state)
                                        .where(ImageRequest.id.in_(locked_at.pending))).all())
        assert set(ends.values()) == {"refunded"}, f"a charge that could not be written is refunded: {ends}"

    for name in CREDITS:
        assert_books(db, name, ids[name], [o for o in run.outcomes if o.account == name])


def states_of(db: Database, account_id: int) -> dict[str, int]:
    with db.session() as session:
        return dict(session.execute(select(ImageRequest.state, func.count())
                                    .where(ImageRequest.account_id == account_id)
                                    .group_by(ImageRequest.state)).all())


def assert_books(db: Database, name: str, account_id: int, outcomes: list[Outcome]) -> None:
    states = states_of(db, account_id)
    with db.session() as session:
        refund_outcomes = sorted(session.scalars(select(ImageRequest.outcome).where(
            ImageRequest.account_id == account_id, ImageRequest.state == "refunded")))
        ledger = session.execute(select(LedgerEntry.reason, LedgerEntry.delta, LedgerEntry.balance_after)
                                 .where(LedgerEntry.account_id == account_id).order_by(LedgerEntry.id)).all()
    balance = credits.balance(db, account_id)
    charged, refunded = states.get("charged", 0), states.get("refunded", 0)
    where = f"{name}: balance {balance}, requests {states}, clients {outcomes}"

    assert balance >= 0, where
    assert states.get("pending", 0) == 0, where
    assert [after for _, _, after in ledger] == list(accumulate(delta for _, delta, _ in ledger)), \
        f"{where}: each ledger row's balance_after is the running sum: {ledger}"
    assert ledger[-1][2] == balance == CREDITS[name] - PRICE * charged, where
    reasons = [reason for reason, _, _ in ledger]
    assert reasons.count("image") == charged + refunded and reasons.count("refund") == refunded, \
        f"{where}: one reservation per image request, one refund per refunded one: {reasons}"

    received = sum(o.received for o in outcomes)
    gave_up = sum(o.gave_up for o in outcomes)
    killed = sum(o.status is None and not o.gave_up for o in outcomes)
    answers = sorted(str(o.status or ("gave up" if o.gave_up else "killed")) for o in outcomes)
    print(f"{name}: {received} images received, {charged} charged, {refunded} refunded; answers {answers};",
          f"refund outcomes {refund_outcomes}")
    assert not [o for o in outcomes if o.status == 200 and not o.received], f"{where}: a 200 with a partial image"
    if gave_up == killed == 0:
        assert charged == received, f"{where}: a client that waited is charged if and only if it got its image"
    else:
        assert received <= charged <= received + gave_up + killed, \
            f"{where}: only a client that gave up or lost its server may be charged for an image it did not get"
