"""Rebuild tests/probes/advisories/ from git clones of OSV advisory databases (`scripts/refresh-advisories`).

The dependency audit (test_dependency_audit.py) runs pip-audit against a loopback OSV stand-in,
because this project's machines cannot reach osv.dev. The stand-in answers from a snapshot kept
in the repository; this builds that snapshot, on any machine that can clone a database:

    git clone --depth 1 https://github.com/pypa/advisory-database
    git clone --depth 1 https://github.com/github/advisory-database   # optional, newer and larger
    scripts/refresh-advisories advisory-database [github-advisory-database]

Both layouts are read from the clone's HEAD through git (a bare mirror serves too): the PyPA
database's `vulns/<name>/*.yaml` and the GitHub Advisory Database's reviewed
`advisories/github-reviewed/YYYY/MM/GHSA-*/GHSA-*.json`, all OSV schema. Kept: every record with
an `affected` entry of ecosystem PyPI whose package (PEP 503 name) is installed in the running
interpreter's environment, which is .venv with the test extras when run through the script,
written unchanged as JSON in `advisories/vulns/<ID>.json`. MANIFEST.json says where they come from
(repository, commit, commit date) and names every PyPI package each database has any record for,
so the audit can tell a dependency installed since the last refresh that the snapshot misses
(refresh needed) from one no database knows (nothing to miss).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import yaml
from packaging.utils import canonicalize_name

SNAPSHOT = Path(__file__).resolve().parent / "advisories"
# Where each database keeps its OSV records at HEAD: folder, file suffix, and the database's home.
LAYOUTS = [("vulns", ".yaml", "https://github.com/pypa/advisory-database"),
           ("advisories/github-reviewed", ".json", "https://github.com/github/advisory-database")]


def _git(clone: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(clone), *args], capture_output=True, text=True, check=True).stdout


def _layout(clone: Path) -> tuple[list[str], str]:
    """The paths of the clone's OSV records at HEAD, and which database it is."""
    for folder, suffix, repository in LAYOUTS:
        paths = [path for path in _git(clone, "ls-tree", "-r", "--name-only", "HEAD", "--", folder).splitlines()
                 if path.endswith(suffix)]
        if paths:
            return paths, repository
    raise SystemExit(f"{clone}: neither vulns/*.yaml (PyPA) nor advisories/github-reviewed/ (GitHub) at HEAD")


def _records(clone: Path, paths: list[str]) -> Iterator[dict]:
    """The OSV records at these paths of the clone's HEAD, read with one `git cat-file --batch`."""
    batch = subprocess.run(["git", "-C", str(clone), "cat-file", "--batch"], check=True, capture_output=True,
                           input="".join(f"HEAD:{path}\n" for path in paths).encode()).stdout
    offset = 0
    for path in paths:
        header_end = batch.index(b"\n", offset)
        size = int(batch[offset:header_end].split()[2])
        body = batch[header_end + 1:header_end + 1 + size].decode()
        offset = header_end + 1 + size + 1
        yield yaml.safe_load(body) if path.endswith(".yaml") else json.loads(body)


def _pypi_names(record: dict) -> set[str]:
    return {canonicalize_name(affected["package"]["name"]) for affected in record.get("affected", [])
            if affected.get("package", {}).get("ecosystem") == "PyPI"}


def _json_value(value: object) -> str:
    """YAML reads an unquoted timestamp as a datetime; OSV writes RFC 3339 strings."""
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat().replace("+00:00", "Z")
    raise TypeError(f"not JSON: {value!r}")


def refresh(clones: list[Path], snapshot: Path = SNAPSHOT) -> dict:
    """Replace the snapshot's records and MANIFEST.json with those of these clones; returns the manifest."""
    installed = {canonicalize_name(dist.metadata["Name"]) for dist in importlib.metadata.distributions()}
    sources, kept = [], {}
    for clone in clones:
        paths, repository = _layout(clone)
        known: set[str] = set()
        for record in _records(clone, paths):
            names = _pypi_names(record)
            known |= names
            if names & installed:
                kept[record["id"]] = record
        sources.append({"repository": repository,
                        "commit": _git(clone, "rev-parse", "HEAD").strip(),
                        "commit_date": _git(clone, "log", "-1", "--format=%cI", "HEAD").strip(),
                        "packages_with_records": sorted(known)})
    shutil.rmtree(snapshot / "vulns", ignore_errors=True)
    (snapshot / "vulns").mkdir(parents=True)
    for vuln_id, record in kept.items():
        (snapshot / "vulns" / f"{vuln_id}.json").write_text(
            json.dumps(record, indent=1, sort_keys=True, default=_json_value) + "\n")
    manifest = {
        "refreshed": datetime.date.today().isoformat(),
        "refresh_command": "scripts/refresh-advisories CLONE [CLONE ...]",
        "sources": sources,
        "records": {name: sorted(vuln_id for vuln_id, record in kept.items() if name in _pypi_names(record))
                    for name in sorted(installed) if any(name in _pypi_names(record) for record in kept.values())},
    }
    (snapshot / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clones", nargs="+", type=Path, help="git clone (or bare mirror) of an advisory database")
    manifest = refresh(parser.parse_args(argv).clones)
    for source in manifest["sources"]:
        print(f"{source['repository']} at {source['commit'][:12]} ({source['commit_date']})")
    print(f"{len(list((SNAPSHOT / 'vulns').iterdir()))} records for {len(manifest['records'])} installed "
          f"distributions written to {SNAPSHOT}")


if __name__ == "__main__":
    main()
