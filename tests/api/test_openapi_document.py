"""The API's OpenAPI document stays what it was: the parts that api/ writes (its paths and the
schemas they use) are compared with a snapshot, openapi_snapshot.json, taken from the document
before its tables were shared between routes.

A change to the document on purpose: rewrite the snapshot with
`.venv/bin/python -m tests.api.test_openapi_document` and review its diff.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pixeldrop.app import create_app
from pixeldrop.settings import Settings

SNAPSHOT = Path(__file__).with_name("openapi_snapshot.json")
API_PATHS = ("/text-to-image/v1", "/healthz", "/v1/", "/metrics")


def api_document(home: Path) -> dict[str, Any]:
    """The document's API part, for the default model and settings."""
    document = create_app(Settings(home=home, _env_file=None)).openapi()
    return {
        "paths": {path: item for path, item in document["paths"].items() if path.startswith(API_PATHS)},
        "schemas": document["components"]["schemas"],
    }


def test_the_api_document_is_unchanged(tmp_path):
    documented = json.loads(json.dumps(api_document(tmp_path)))  # as /openapi.json sends it
    snapshot = json.loads(SNAPSHOT.read_text())
    assert documented["paths"].keys() == snapshot["paths"].keys()
    for path, item in snapshot["paths"].items():
        assert documented["paths"][path] == item, path
    assert documented["schemas"] == snapshot["schemas"]


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as home:
        SNAPSHOT.write_text(json.dumps(api_document(Path(home)), indent=1, sort_keys=True) + "\n")
