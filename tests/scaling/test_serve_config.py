"""The Ray Serve config and the KubeRay example in docs/ are accepted by Ray's own schema, and
their `import_path` builds pixeldrop's Generator application from their `args`. The deployment's
options follow the settings, and its replicas are told the precision decided in the API process
(no cluster needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pixeldrop.generation import diffusers_backend
from pixeldrop.generation.ray_engine import DEPLOYMENT, build_app, deployment_options, replica_args
from pixeldrop.settings import Settings

serve_schema = pytest.importorskip("ray.serve.schema")
from ray._common.utils import import_attr  # noqa: E402
from ray.serve._private.api import call_user_app_builder_with_args_if_necessary  # noqa: E402
from ray.serve.deployment import Application  # noqa: E402

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _check(config: dict) -> None:
    schema = serve_schema.ServeDeploySchema.model_validate(config)
    (app,) = schema.applications
    assert app.name == "pixeldrop" and app.route_prefix is None
    assert [d.name for d in app.deployments] == [DEPLOYMENT]
    built = call_user_app_builder_with_args_if_necessary(import_attr(app.import_path), app.args)
    assert isinstance(built, Application)


def test_the_serve_deploy_config_is_valid_and_builds():
    _check(yaml.safe_load((DOCS / "ray-serve.yaml").read_text()))


def test_the_kuberay_example_carries_the_same_valid_config():
    service = yaml.safe_load((DOCS / "kuberay-rayservice.yaml").read_text())
    assert service["kind"] == "RayService"
    _check(yaml.safe_load(service["spec"]["serveConfigV2"]))


def test_build_app_refuses_settings_that_are_not_a_replicas():
    with pytest.raises(ValueError, match="database_url"):
        build_app({"database_url": "postgresql://secret@db/pixeldrop"})


def test_deployment_options_follow_the_settings():
    fixed = deployment_options(Settings(replicas=3, max_batch=4, _env_file=None), cluster_gpus=0)
    assert fixed["num_replicas"] == 3 and "autoscaling_config" not in fixed
    assert fixed["ray_actor_options"] == {"num_cpus": 1.0} and fixed["max_ongoing_requests"] == 8
    scaled = deployment_options(Settings(autoscale="2:6", _env_file=None), cluster_gpus=4)
    assert "num_replicas" not in scaled and scaled["ray_actor_options"] == {"num_gpus": 1}
    assert scaled["autoscaling_config"]["min_replicas"] == 2 and scaled["autoscaling_config"]["max_replicas"] == 6


@pytest.mark.parametrize("value", ["8", "3:1", "a:b", "0:0", ":4"])
def test_bad_autoscale_values_are_refused(value):
    with pytest.raises(ValueError, match="MIN:MAX"):
        Settings(autoscale=value, _env_file=None)


@pytest.fixture
def bf16_measured(monkeypatch):
    """Sets what the bf16 measurement finds on this CPU, and counts how often it is taken."""
    measured = {"faster": False, "times": 0}

    def bf16_is_faster_here() -> bool:
        measured["times"] += 1
        return measured["faster"]

    monkeypatch.setattr(diffusers_backend, "bf16_is_faster_here", bf16_is_faster_here)
    return measured


@pytest.mark.parametrize("faster", [True, False])
def test_cpu_replicas_are_told_the_precision_measured_here(tiny_model, bf16_measured, faster):
    bf16_measured["faster"] = faster
    for asked in ({}, {"precision": "auto"}, {"preset": "quality"}):
        args = replica_args(Settings(model=tiny_model, **asked, _env_file=None), cluster_gpus=0)
        assert args["precision"] == ("bf16" if faster else "fp32"), asked
        assert Settings(**args, _env_file=None).resolved_precision == args["precision"], "replicas measure nothing"
    assert bf16_measured["times"] == 3


def test_the_models_recipe_and_an_explicit_precision_need_no_measuring(bf16_measured):
    bf16_measured["faster"] = True
    assert replica_args(Settings(_env_file=None), cluster_gpus=0)["precision"] == "fp32", "pixeldrop-tiny's recipe"
    assert replica_args(Settings(precision="bf16", _env_file=None), cluster_gpus=0)["precision"] == "bf16"
    assert replica_args(Settings(preset="quality", precision="fp32", _env_file=None), 0)["precision"] == "fp32"
    assert replica_args(Settings(preset="fast", _env_file=None), 0)["precision"] == "int8", "the fast preset's"
    assert bf16_measured["times"] == 0


def test_gpu_replicas_resolve_auto_themselves_without_measuring(tiny_model, bf16_measured):
    assert replica_args(Settings(model=tiny_model, _env_file=None), cluster_gpus=2)["precision"] == "auto"
    assert bf16_measured["times"] == 0
    on_cpu = replica_args(Settings(model=tiny_model, device="cpu", _env_file=None), cluster_gpus=2)
    assert on_cpu["precision"] == "fp32" and bf16_measured["times"] == 1, "told to use the CPU: measured here"
