"""Generation on Ray Serve: `Generator` replicas across a cluster, an engine in each API process.

- The deployment `Generator` (its processes show as `ServeReplica:pixeldrop:Generator`) loads
  the model once per replica through `load_generator`, as the local engine does, so presets and
  models work the same. `@serve.batch` groups concurrent requests (settings `max_batch`,
  `batch_wait_ms`); `--autoscale MIN:MAX` becomes its `autoscaling_config`, else it runs
  `--replicas N`; a replica takes a GPU where the cluster has GPUs, else a share of CPUs.
  Every replica runs in the precision decided once where the application is built
  (`replica_precision`): replicas never differ in dtype, so one seed gives one image.
- `RayEngine` lives in every API process. It admits at most `queue_size` requests in flight
  (beyond that: QueueFull before any credit moves), sends each through a DeploymentHandle, and when
  the replica serving it dies (kill -9, OOM, a lost node) sends it again to another one, for
  as long as the request's deadline allows. That is safe because credits are only charged at
  settle, after the image is back: a retry can never charge twice. A request its caller gives
  up (client gone, deadline) is cancelled in Ray too.
- API processes hold no state: any number of them, on any machines, share PostgreSQL and Redis
  and one Ray cluster. The first one to start deploys the application `pixeldrop`; the others
  find it running and use it. `serve deploy` with a config file (docs/scaling.md) does the
  same through `build_app`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from PIL import Image

from pixeldrop.errors import GenerationFailed, QueueFull
from pixeldrop.metrics import Metrics
from pixeldrop.settings import Settings

from .admission import Admission, Place
from .metadata import ServedModel

log = logging.getLogger(__name__)

APP = "pixeldrop"
DEPLOYMENT = "Generator"
NAMESPACE = "pixeldrop"
_STATUS_TTL = 1.0  # seconds a replica count is reused (healthz and /metrics both ask)
_RETRY_PAUSE = 0.5  # seconds between attempts after a replica died, growing to 4x


@dataclass(frozen=True)
class Made:
    """One image as a replica sends it back, with what the metrics want to know."""

    image: Image.Image
    generation_seconds: float
    batch_size: int


def deployment_options(settings: Settings, cluster_gpus: float) -> dict[str, Any]:
    """The `Generator` deployment's options from the settings and what the cluster has."""
    per_replica = {"num_gpus": 1} if cluster_gpus > 0 else {"num_cpus": settings.ray_replica_cpus}
    options: dict[str, Any] = {
        "ray_actor_options": per_replica,
        "max_ongoing_requests": settings.ray_max_ongoing_requests or 2 * settings.max_batch,
    }
    if settings.autoscale_bounds is not None:
        minimum, maximum = settings.autoscale_bounds
        options["autoscaling_config"] = {
            "min_replicas": minimum, "max_replicas": maximum, "initial_replicas": max(minimum, 1),
            "target_ongoing_requests": settings.max_batch,
            "upscale_delay_s": settings.autoscale_upscale_delay_seconds,
            "downscale_delay_s": settings.autoscale_downscale_delay_seconds,
        }
    else:
        options["num_replicas"] = settings.replicas
    return options


def _deployment():
    """The `Generator` class, decorated on first use so that importing this module needs no Ray."""
    from ray import serve

    from . import load_generator, warmed_up

    @serve.deployment(name=DEPLOYMENT)
    class Generator:
        def __init__(self, args: dict):
            resolved = Settings(**args, _env_file=None)
            self.generator = warmed_up(load_generator(resolved), resolved)
            self.generate.set_max_batch_size(resolved.max_batch)
            self.generate.set_batch_wait_timeout_s(resolved.batch_wait_ms / 1000.0)

        def describe(self) -> dict:
            return self.generator.describe()

        @serve.batch(max_batch_size=1, batch_wait_timeout_s=0.0)
        async def generate(self, requests: list[tuple[str, int]]) -> list[Made]:
            started = time.monotonic()
            images = await asyncio.to_thread(self.generator.generate, [p for p, _ in requests],
                                             [s for _, s in requests])
            seconds = time.monotonic() - started
            return [Made(image, seconds, len(requests)) for image in images]

    return Generator


# The settings a replica is built from: what makes images and how many replicas. Nothing else
# (database URLs, secrets) goes into the deployment's config, which Ray's dashboard shows.
REPLICA_SETTINGS = ("model", "device", "preset", "precision", "decoder", "compile", "num_inference_steps",
                    "guidance_scale", "max_batch", "batch_wait_ms", "warm_up", "verbose", "replicas", "autoscale",
                    "ray_replica_cpus", "ray_max_ongoing_requests", "autoscale_upscale_delay_seconds",
                    "autoscale_downscale_delay_seconds")


def replica_precision(settings: Settings, cluster_gpus: float) -> str:
    """The precision every replica runs in, decided once, here: "fp32", "bf16" or "fp16".

    On CPUs, `auto` is measured (`bf16_is_faster_here`); were each replica to measure for itself,
    replicas on one machine could pick different dtypes and make different pixels from one seed.
    A replica with a GPU resolves `auto` to fp16 without measuring: it is left for the replica.
    """
    precision = settings.resolved_precision
    if precision != "auto" or (cluster_gpus > 0 and settings.device != "cpu"):
        return precision
    from . import default_model
    from .diffusers_backend import cpu_precision

    return cpu_precision(settings.model or default_model())


def replica_args(settings: Settings, cluster_gpus: float) -> dict[str, Any]:
    """What every replica is built from: REPLICA_SETTINGS, with the precision decided here."""
    return {**{name: getattr(settings, name) for name in REPLICA_SETTINGS},
            "precision": replica_precision(settings, cluster_gpus)}


def build_app(args: dict[str, Any]):
    """The Ray Serve application; also the `import_path` target of a `serve deploy` config.

    `args` are pixeldrop settings named in REPLICA_SETTINGS, as in the config's `args:`.
    """
    import ray

    unknown = set(args) - set(REPLICA_SETTINGS)
    if unknown:
        raise ValueError(f"not settings of a Generator replica: {sorted(unknown)}")
    settings = Settings(**args, _env_file=None)
    gpus = ray.cluster_resources().get("GPU", 0) if ray.is_initialized() else 0
    return _deployment().options(**deployment_options(settings, gpus)).bind(replica_args(settings, gpus))


class RayEngine:
    name = "ray"

    def __init__(self, settings: Settings, metrics: Metrics | None = None):
        self.settings = settings
        self.metrics = metrics
        self._admission = Admission(settings.queue_size)
        self._handle: Any = None
        self.model: ServedModel  # once started
        self._owns_cluster = settings.ray_address is None
        self._replicas: tuple[float, dict[str, int]] = (0.0, {"running": 0, "wanted": 0})
        self._replicas_lock = threading.Lock()
        self.images_made = 0

    def start(self) -> RayEngine:
        """Join (or start) Ray, deploy `Generator` unless it runs already, wait for a replica."""
        import ray
        from ray import serve

        ray.init(address=self.settings.ray_address, namespace=NAMESPACE, log_to_driver=False,
                 ignore_reinit_error=True)
        serve.start(http_options={"location": "NoServer"})  # pixeldrop's API processes are the HTTP tier
        if APP not in serve.status().applications:
            serve.run(build_app(self.settings.model_dump(include=set(REPLICA_SETTINGS))), name=APP, route_prefix=None)
        self._handle = serve.get_deployment_handle(DEPLOYMENT, app_name=APP)
        self.model = ServedModel.of(self._handle.describe.remote().result())
        return self

    def stop(self) -> None:
        """A Ray instance this process started goes with it; a shared cluster keeps serving."""
        if self._owns_cluster:
            import ray
            from ray import serve

            serve.shutdown()
            ray.shutdown()

    @property
    def queued(self) -> int:
        return self._admission.held

    @property
    def busy(self) -> bool:
        return self._admission.held > 0

    def admit(self) -> Place:
        """A place among this process's requests in flight (held until the answer), or QueueFull."""
        return self._admission.admit()

    async def generate(self, place: Place, prompt: str, seed: int) -> Image.Image:
        from ray.exceptions import RayActorError, RayTaskError
        from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

        sent, attempt = time.monotonic(), 0
        try:
            while True:
                attempt += 1
                response = self._handle.generate.remote((prompt, seed))
                try:
                    made: Made = await response
                except asyncio.CancelledError:
                    response.cancel()
                    raise
                except (RayActorError, DeploymentUnavailableError) as error:
                    # The replica died under this request: nothing was charged, send it again.
                    log.warning("a Generator replica died mid-image (%s); retrying", type(error).__name__)
                    await asyncio.sleep(_RETRY_PAUSE * min(attempt, 4))
                    continue
                except BackPressureError:
                    raise QueueFull("The generation replicas are all busy; try again shortly.") from None
                except RayTaskError as error:
                    raise GenerationFailed(f"Image generation failed: {error.cause.__class__.__name__}") from None
                self._record(made, time.monotonic() - sent)
                return made.image
        finally:
            place.release()

    def _record(self, made: Made, total_seconds: float) -> None:
        self.images_made += 1
        if self.metrics is not None:
            self.metrics.record_image(max(0.0, total_seconds - made.generation_seconds), made.generation_seconds,
                                      made.batch_size)

    def replicas(self) -> dict[str, int]:
        """`{"running": n, "wanted": m}` for `Generator`, from Serve's controller (cached briefly)."""
        with self._replicas_lock:
            fetched_at, counts = self._replicas
            if time.monotonic() - fetched_at > _STATUS_TTL:
                counts = _replica_counts()
                self._replicas = (time.monotonic(), counts)
            return counts


def _replica_counts() -> dict[str, int]:
    from ray.serve.context import _get_global_client  # the details behind `serve status`

    client = _get_global_client()
    if client is None:  # Serve is not running (yet, or any more)
        return {"running": 0, "wanted": 0}
    details = client.get_serve_details()
    deployment = details.get("applications", {}).get(APP, {}).get("deployments", {}).get(DEPLOYMENT)
    if deployment is None:
        return {"running": 0, "wanted": 0}
    running = sum(1 for replica in deployment.get("replicas", []) if replica.get("state") == "RUNNING")
    return {"running": running, "wanted": int(deployment.get("target_num_replicas", 0))}
