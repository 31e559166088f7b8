"""A loopback stand-in for the OSV API (https://osv.dev), answering from the snapshot in advisories/.

pip-audit's OSV service (`--vulnerability-service osv --osv-url URL`) sends one `POST /v1/query`
per distribution: `{"package": {"name": ..., "ecosystem": "PyPI"}, "version": ...}`, and reads
`{"vulns": [record, ...]}`, or `{}` for none, as osv.dev answers. This answers the same way from the
records in advisories/vulns/ (see refresh_advisories.py), so that the audit runs on machines that
cannot reach osv.dev, and records each query, so a test can tell that every distribution was
looked up. pip-audit 2.10 sends nothing else (no `/v1/querybatch`); any other request is a 404.

A version is affected, as the OSV schema defines it, when it is one of an `affected` entry's
`versions`, or inside one of its ECOSYSTEM `ranges`: walking the events in version order, an
`introduced` at or below it opens the range, and a `fixed` at or below it, a `last_affected` below
it or a `limit` at or below it closes it. Names are compared as PEP 503 normalises them and
versions as PEP 440 orders them (packaging), so `Jinja2` matches `jinja2` and `2.13.0+cpu` is
after `2.13.0`.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

SNAPSHOT = Path(__file__).resolve().parent / "advisories"
# The order of events at one version: a range opened and closed at the same version is empty.
_EVENT_ORDER = {"introduced": 0, "fixed": 1, "last_affected": 2, "limit": 3}


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _in_range(version: Version, events: list[dict]) -> bool:
    steps = []
    for event in events:
        ((kind, at),) = event.items()
        bound = Version("0") if kind == "introduced" and at == "0" else _version(at)
        if bound is not None:
            steps.append((bound, _EVENT_ORDER[kind], kind))
    affected = False
    for bound, _, kind in sorted(steps):
        if kind == "introduced" and version >= bound:
            affected = True
        elif (kind == "fixed" and version >= bound or kind == "last_affected" and version > bound
              or kind == "limit" and version >= bound):
            affected = False
    return affected


def affects(record: dict, name: str, version: str) -> bool:
    """Whether the OSV record says this PyPI distribution at this version is vulnerable."""
    parsed = _version(version)
    for affected in record.get("affected", []):
        package = affected.get("package", {})
        if package.get("ecosystem") != "PyPI" or canonicalize_name(package.get("name", "")) != name:
            continue
        if version in affected.get("versions", []):
            return True
        if parsed is not None and any(_in_range(parsed, r["events"]) for r in affected.get("ranges", [])
                                      if r.get("type") == "ECOSYSTEM"):
            return True
    return False


def load_records(snapshot: Path = SNAPSHOT) -> dict[str, list[dict]]:
    """The snapshot's records by the PEP 503 name of each PyPI distribution they affect."""
    by_name: dict[str, list[dict]] = defaultdict(list)
    for path in sorted((snapshot / "vulns").glob("*.json")):
        record = json.loads(path.read_text())
        for name in {canonicalize_name(affected["package"]["name"]) for affected in record.get("affected", [])
                     if affected.get("package", {}).get("ecosystem") == "PyPI"}:
            by_name[name].append(record)
    return dict(by_name)


class OsvStandIn:
    """`with OsvStandIn() as osv:` serves on `osv.query_url` until the block ends."""

    def __init__(self, records: dict[str, list[dict]] | None = None):
        self.records = load_records() if records is None else records
        self.queries: list[tuple[str, str]] = []  # (PEP 503 name, version) of each query answered
        self._lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, answer = stand_in._answer(self.path, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.query_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/query"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _answer(self, path: str, body: bytes) -> tuple[int, dict]:
        if path != "/v1/query":
            return 404, {"code": 5, "message": "Not Found"}
        try:
            query = json.loads(body)
            package, version = query["package"], query["version"]
            name, ecosystem = canonicalize_name(package["name"]), package["ecosystem"]
        except (ValueError, KeyError, TypeError):
            return 400, {"code": 3, "message": "Invalid query: needs package.name, package.ecosystem and version"}
        with self._lock:
            self.queries.append((name, version))
        if ecosystem != "PyPI":
            return 200, {}
        vulns = [record for record in self.records.get(name, []) if affects(record, name, version)]
        return 200, {"vulns": vulns} if vulns else {}

    def __enter__(self) -> OsvStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)
