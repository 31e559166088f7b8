"""Async jobs: an image asked for now (`POST /v1/jobs`), made later, fetched or announced by a
signed webhook. Nothing here knows about HTTP servers; `api/jobs.py` is the surface.

Invariants:
- A job lives in the database from the moment it is accepted: any server process sharing the
  database may run it, a restart forgets nothing, and every state change is one conditional
  UPDATE, so that two processes (or a request and a runner) never both win it.
- States: `queued` -> `running` -> `succeeded` | `failed`; `queued` -> `canceled`. Only a queued
  job can be canceled; only a claim (one process's run of it) may end a running job, so that a
  run whose job was taken back cannot end it.
- Money: the price is reserved at submit (no credits, no job); the job then owns the reservation
  (credits.refund_stale leaves it alone) and it ends as the job does: charged when it succeeds,
  refunded when it fails or is canceled. The job's new state is written first, then the credits;
  a process that dies in between leaves it for the sweeps: the runner settles succeeded jobs'
  pending reservations, refund_stale refunds failed and canceled ones. A reservation whose job
  row was never written (the process died between the two, or the insert failed) belongs to no
  job, and refund_stale refunds it. So a job is charged once, only if it succeeded.
- Restarts: a job left `running` by a process that died goes back to `queued` (store.requeue_
  abandoned) once its claim is older than the stale-reservation age (longer than the generation
  deadline, after which a live process has given the job up), and on SQLite (one server per
  database file) when a server starts. Its reservation stays; it is made once more, charged once.
- Results are PNG (with A1111 parameters when the image_metadata setting is on), kept
  `job_result_seconds` after the job ends, converted to the format asked for when fetched.
- Webhooks (webhooks.py): an event is queued in the same transaction that ends the job, so no
  restart loses it, and delivered signed by the runner, retried with back-off for a bounded time.
"""

from . import store, webhooks
from .runner import JobRunner
from .store import JobImage, JobStatus, Order, Submitted

__all__ = ["JobImage", "JobRunner", "JobStatus", "Order", "Submitted", "store", "webhooks"]
