"""The job runner, in-process on SQLite and PostgreSQL, with the real local engine (its worker
thread and bounded queue) around models that answer at once, fail, or wait at a gate."""

from __future__ import annotations

import asyncio
import io
from contextlib import asynccontextmanager

from PIL import Image

from pixeldrop.generation import GenerationWorker
from pixeldrop.jobs import JobRunner, Order, store
from pixeldrop.settings import Settings

from ..generators import FailingGenerator, GatedGenerator
from ..server import wait_until
from .conftest import KEEP, PRICE, InstantGenerator, ledger, request_outcomes, request_states


def job_settings(tmp_path, **overrides) -> Settings:
    return Settings(home=tmp_path / "home", warm_up=False, _env_file=None, **overrides)


def submit(db, payer, prompt: str, **order) -> str:
    return store.submit(db, payer.account_id, payer.key_id, Order(prompt, seed=order.pop("seed", 11), **order),
                        PRICE, KEEP, prompt).job.id


def status(db, payer, job_id: str) -> str:
    return store.status(db, payer.account_id, job_id, KEEP).status


async def until(condition, what: str) -> None:
    await asyncio.to_thread(wait_until, condition, what)


@asynccontextmanager
async def running(db, engine, settings):
    runner = JobRunner(db, engine, settings)
    await runner.start()
    try:
        yield runner
    finally:
        await runner.stop()


class CountingEngine:
    """The local engine, counting how often the runner asked it for a place."""

    def __init__(self, worker: GenerationWorker):
        self.worker = worker
        self.admissions_asked = 0

    def admit(self):
        self.admissions_asked += 1
        return self.worker.admit()

    def __getattr__(self, name):
        return getattr(self.worker, name)


def test_queued_jobs_are_made_once_and_charged_once(db, payer, tmp_path):
    model = InstantGenerator()
    engine = GenerationWorker(model, queue_size=4).start()
    jobs = [submit(db, payer, f"prompt {i}", seed=i) for i in range(3)]

    async def scenario():
        async with running(db, engine, job_settings(tmp_path, jobs_at_once=2)):
            await until(lambda: all(status(db, payer, job) == "succeeded" for job in jobs), "the jobs")

    try:
        asyncio.run(scenario())
    finally:
        engine.stop()
    assert sorted(model.prompts) == ["prompt 0", "prompt 1", "prompt 2"], "each job reached the model once"
    assert ledger(db, payer.account_id) == [("free", 10)] + [("image", -2)] * 3
    assert request_states(db, payer.account_id) == ["charged"] * 3
    assert request_outcomes(db, payer.account_id) == ["charged"] * 3
    result = store.result(db, payer.account_id, jobs[2], KEEP)
    with Image.open(io.BytesIO(result.png)) as image:
        assert image.format == "PNG" and image.getpixel((0, 0)) == (2, 0, 7)
        assert image.info["parameters"] == "prompt 2\nSteps: 3, Seed: 2, Size: 512x512, Model: instant"


def test_a_job_whose_model_fails_is_failed_and_refunded(db, payer, tmp_path):
    engine = GenerationWorker(FailingGenerator()).start()
    job = submit(db, payer, "a red apple")

    async def scenario():
        async with running(db, engine, job_settings(tmp_path)):
            await until(lambda: status(db, payer, job) == "failed", "the failure")

    try:
        asyncio.run(scenario())
    finally:
        engine.stop()
    assert store.status(db, payer.account_id, job, KEEP).error == "Image generation failed: RuntimeError"
    assert ledger(db, payer.account_id) == [("free", 10), ("image", -2), ("refund", 2)]


def test_jobs_wait_in_the_database_while_the_generation_queue_is_full(db, payer, tmp_path):
    engine = CountingEngine(GenerationWorker(InstantGenerator(), queue_size=1).start())
    held = engine.admit()  # a synchronous request holds the only place
    job = submit(db, payer, "a red apple")

    async def scenario():
        async with running(db, engine, job_settings(tmp_path)):
            await until(lambda: engine.admissions_asked >= 4, "the runner to try for a place a few times")
            assert status(db, payer, job) == "queued", "a full queue makes jobs wait, not fail"
            assert request_states(db, payer.account_id) == ["pending"]
            held.release()
            await until(lambda: status(db, payer, job) == "succeeded", "the job, once a place is free")

    try:
        asyncio.run(scenario())
    finally:
        engine.worker.stop()
    assert ledger(db, payer.account_id) == [("free", 10), ("image", -2)]


def test_a_stopping_server_puts_its_running_jobs_back_for_the_next(db, payer, tmp_path):
    gated = GatedGenerator(InstantGenerator())
    engine = GenerationWorker(gated).start()
    job = submit(db, payer, "a red apple")

    async def first_server():
        async with running(db, engine, job_settings(tmp_path)):
            await asyncio.to_thread(gated.started.wait, 30)
            assert status(db, payer, job) == "running"

    try:
        asyncio.run(first_server())
        assert status(db, payer, job) == "queued", "stopped mid-generation: back in the queue"
        assert request_states(db, payer.account_id) == ["pending"], "its reservation stays"
    finally:
        gated.gate.set()
        engine.stop()

    model = InstantGenerator()
    engine = GenerationWorker(model).start()

    async def next_server():
        async with running(db, engine, job_settings(tmp_path)):
            await until(lambda: status(db, payer, job) == "succeeded", "the job on the next server")

    try:
        asyncio.run(next_server())
    finally:
        engine.stop()
    assert model.prompts == ["a red apple"]
    assert ledger(db, payer.account_id) == [("free", 10), ("image", -2)], "made twice, charged once"


def test_a_job_not_made_within_the_deadline_is_failed_and_refunded(db, payer, tmp_path):
    gated = GatedGenerator(InstantGenerator())
    engine = GenerationWorker(gated).start()
    job = submit(db, payer, "a red apple")

    async def scenario():
        async with running(db, engine, job_settings(tmp_path, generation_deadline_seconds=0.5)):
            await until(lambda: status(db, payer, job) == "failed", "the deadline")

    try:
        asyncio.run(scenario())
    finally:
        gated.gate.set()
        engine.stop()
    assert store.status(db, payer.account_id, job, KEEP).error == "The image was not ready within 0.5 seconds."
    assert ledger(db, payer.account_id) == [("free", 10), ("image", -2), ("refund", 2)]
    assert request_outcomes(db, payer.account_id) == ["busy"], "as a synchronous request past the deadline"

