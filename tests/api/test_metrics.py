"""`GET /metrics` on the local engine: Prometheus text that parses, with counters that match the
requests sent (the Ray engine's are checked in tests/scaling)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from pixeldrop import accounts
from pixeldrop.app import create_app


def samples(client: TestClient) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def test_metrics_count_what_was_served(settings, sqlite_db, tiny_generator):
    accounts.create_account(sqlite_db, "m@example.com", free_credits=4)
    key = accounts.create_key(sqlite_db, "m@example.com").key
    with TestClient(create_app(settings, generator=tiny_generator, db=sqlite_db)) as client:
        statuses = [client.post("/text-to-image/v1", headers={"x-api-key": key},
                                files={"prompt": (None, "a red apple")}).status_code for _ in range(3)]
        client.get("/no/such/page")
        found = samples(client)
        health = client.get("/healthz").json()
    assert statuses == [200, 200, 402]
    route = (("route", "/text-to-image/v1"),)
    assert found[("pixeldrop_http_request_duration_seconds_count", route + (("status", "200"),))] == 2
    assert found[("pixeldrop_http_request_duration_seconds_count", route + (("status", "402"),))] == 1
    assert found[("pixeldrop_http_request_duration_seconds_count", (("route", "other"), ("status", "404")))] == 1
    assert found[("pixeldrop_images_total", ())] == 2 == health["images_made"], "one count, shown twice"
    assert found[("pixeldrop_credits_charged_total", ())] == 4
    assert found[("pixeldrop_batch_size_count", ())] == 2 and found[("pixeldrop_queue_wait_seconds_count", ())] == 2
    assert found[("pixeldrop_replicas", (("state", "running"),))] == 1
    assert found[("pixeldrop_queue_depth", ())] == 0
