"""pip-audit over every distribution installed in .venv: no known vulnerability outside README's list.

What it guards: pixeldrop serves untrusted input through some 170 third-party distributions
(FastAPI, Starlette, Jinja2, Pillow, cryptography, Ray...); a published advisory against the
installed version of any of them is a hole in pixeldrop. The audit is the real `pip-audit -l`
(the installed environment, as `pip list` sees it), pointed with `--osv-url` at a loopback OSV
stand-in (osv_server.py) that answers from the snapshot of advisory databases in advisories/,
because these machines cannot reach osv.dev nor PyPI's JSON API. The snapshot is refreshed with
`scripts/refresh-advisories` (refresh_advisories.py) wherever the databases can be cloned.

Invariants:
- every installed distribution but pixeldrop itself (editable, not a dependency) is audited, each
  with one query to the stand-in carrying its installed version: an audit that silently skipped
  one would pass by saying nothing;
- each reported vulnerability is listed, with the reason it does not apply, under the `pip-audit`
  item of README's "Reliability" section, and each one listed there is still reported;
- the snapshot holds the records of every installed distribution its databases know of: one
  installed since the last refresh makes the audit fail until the snapshot is refreshed;
- the stand-in does match: a pinned Jinja2 2.10 is reported with its two advisories;
- a refresh keeps the records of installed distributions from either database's layout.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from tests.probes.osv_server import SNAPSHOT, OsvStandIn, affects, load_records
from tests.probes.refresh_advisories import refresh

README = Path(__file__).resolve().parents[2] / "README.md"
# README's allow-list: indented items `  - `ID` (distribution version): why`, inside the item that
# starts with "- `pip-audit`" and ends at the next top-level item or heading.
AUDIT_ITEM = re.compile(r"^- `pip-audit`.*?(?=^- |^#|\Z)", re.MULTILINE | re.DOTALL)
ALLOWED_ID = re.compile(r"^  - `([A-Z]+-[\w-]+)` ", re.MULTILINE)


def _installed() -> dict[str, str]:
    """The distributions in this environment's own site-packages: what `pip-audit --local` audits
    (not others that something in the test session may have put on sys.path)."""
    own = {Path(sysconfig.get_path(name)).resolve() for name in ("purelib", "platlib")}
    return {canonicalize_name(dist.metadata["Name"]): dist.version for dist in importlib.metadata.distributions()
            if Path(str(dist.locate_file(""))).resolve() in own}


def _pip_audit(osv: OsvStandIn, cache: Path, *args: str) -> tuple[int, dict]:
    """The real pip-audit, on this interpreter's environment, asking only the loopback stand-in."""
    done = subprocess.run(
        [sys.executable, "-m", "pip_audit", *args, "--vulnerability-service", "osv", "--osv-url", osv.query_url,
         "--format", "json", "--progress-spinner", "off", "--cache-dir", str(cache), "--timeout", "30"],
        capture_output=True, text=True, timeout=180, env={**os.environ, "NO_PROXY": "127.0.0.1"})
    assert done.stdout, f"pip-audit printed no report (exit {done.returncode}):\n{done.stderr}"
    return done.returncode, json.loads(done.stdout)


def _allowed_in_readme() -> set[str]:
    item = AUDIT_ITEM.search(README.read_text())
    assert item, "README.md has no item starting with - `pip-audit` (section Reliability)"
    return set(ALLOWED_ID.findall(item.group(0)))


def test_pip_audit_reports_nothing_outside_readme_list_for_every_installed_distribution(tmp_path):
    installed = _installed()
    with OsvStandIn() as osv:
        status, report = _pip_audit(osv, tmp_path, "--local", "--skip-editable")

    skipped = {canonicalize_name(dep["name"]): dep["skip_reason"] for dep in report["dependencies"]
               if "skip_reason" in dep}
    assert skipped == {"pixeldrop": "distribution marked as editable"}, f"not audited: {skipped}"
    audited = {canonicalize_name(dep["name"]): dep["version"] for dep in report["dependencies"]
               if "skip_reason" not in dep}
    assert len(audited) > 100 and audited == {n: v for n, v in installed.items() if n != "pixeldrop"}
    assert sorted(osv.queries) == sorted(audited.items()), "each distribution looked up once, at its version"

    found = {vuln["id"]: f"{dep['name']} {dep['version']}: {vuln['description'][:100]} "
                         f"(fixed in {', '.join(vuln['fix_versions']) or 'no release'})"
             for dep in report["dependencies"] for vuln in dep.get("vulns", [])}
    allowed = _allowed_in_readme()
    unexplained = {vuln_id: finding for vuln_id, finding in found.items() if vuln_id not in allowed}
    assert not unexplained, ("known vulnerabilities in installed distributions: raise the pin in pyproject.toml "
                             "to a fixed version, or list each under README's pip-audit item with why it does not "
                             "apply:\n" + "\n".join(f"{vuln_id} {finding}" for vuln_id, finding in unexplained.items()))
    assert allowed <= set(found), f"README lists findings pip-audit no longer reports: {sorted(allowed - set(found))}"
    assert status == (1 if found else 0), "pip-audit's exit status says whether it found any"


def test_snapshot_holds_the_records_of_every_installed_distribution_its_databases_know():
    manifest = json.loads((SNAPSHOT / "MANIFEST.json").read_text())
    known = {name for source in manifest["sources"] for name in source["packages_with_records"]}
    missing = sorted(name for name in _installed() if name in known and name not in manifest["records"])
    assert not missing, f"installed since the snapshot was made: {missing}; run scripts/refresh-advisories"
    records = load_records()
    assert {name: sorted(record["id"] for record in held) for name, held in records.items()
            if name in manifest["records"]} == manifest["records"], "advisories/vulns/ and MANIFEST.json disagree"


def test_a_vulnerable_pin_is_reported_with_its_advisories(tmp_path):
    """Audited as a requirements file, the way pip-audit reads a project that pins Jinja2 2.10."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("Jinja2==2.10\npillow==13.0.0\n")
    with OsvStandIn() as osv:
        status, report = _pip_audit(osv, tmp_path / "cache", "--requirement", str(requirements), "--no-deps",
                                    "--disable-pip")

    assert sorted(osv.queries) == [("jinja2", "2.10"), ("pillow", "13.0.0")]
    vulns = {dep["name"].lower(): {vuln["id"]: vuln["fix_versions"] for vuln in dep["vulns"]}
             for dep in report["dependencies"]}
    assert vulns == {"jinja2": {"PYSEC-2019-217": ["2.10.1"], "PYSEC-2021-66": ["2.11.3"]}, "pillow": {}}
    assert status == 1


def _record(*events: dict, name: str = "Some_Package", ecosystem: str = "PyPI", versions=()) -> dict:
    return {"id": "TEST-1", "affected": [{"package": {"name": name, "ecosystem": ecosystem},
                                          "ranges": [{"type": "ECOSYSTEM", "events": list(events)}],
                                          "versions": list(versions)}]}


@pytest.mark.parametrize(("record", "version", "expected"), [
    (_record({"introduced": "0"}, {"fixed": "2.0"}), "1.9.9", True),
    (_record({"introduced": "0"}, {"fixed": "2.0"}), "2.0", False),
    (_record({"introduced": "0"}, {"fixed": "2.0"}), "2.0.0rc1", True),  # PEP 440 order, not text order
    (_record({"introduced": "0"}, {"fixed": "2.0"}), "10.0", False),
    (_record({"introduced": "0"}, {"fixed": "2.0"}), "1.9+cpu", True),
    (_record({"introduced": "0"}, {"fixed": "2.0"}), "2.0+cpu", False),
    (_record({"introduced": "1.0"}, {"last_affected": "1.5"}), "1.5", True),
    (_record({"introduced": "1.0"}, {"last_affected": "1.5"}), "1.5.1", False),
    (_record({"introduced": "1.0"}, {"last_affected": "1.5"}), "0.9", False),
    (_record({"fixed": "1.2"}, {"introduced": "2.0"}, {"introduced": "1.0"}), "1.1", True),  # events unsorted
    (_record({"fixed": "1.2"}, {"introduced": "2.0"}, {"introduced": "1.0"}), "1.5", False),
    (_record({"fixed": "1.2"}, {"introduced": "2.0"}, {"introduced": "1.0"}), "3.0", True),  # never fixed
    (_record({"introduced": "0"}, {"limit": "3.0"}), "3.0", False),
    (_record(versions=["0.4.dev1"]), "0.4.dev1", True),
    (_record(versions=["0.4.dev1"]), "0.4", False),
    (_record({"introduced": "0"}, ecosystem="npm"), "1.0", False),
])
def test_stand_in_matches_versions_as_the_osv_schema_says(record, version, expected):
    assert affects(record, "some-package", version) is expected


def _git_repository(path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    for command in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@example.com", "commit",
                                                    "-q", "-m", "records"]):
        subprocess.run(["git", "-C", str(path), *command], check=True, capture_output=True)
    return path


def test_refresh_keeps_the_installed_distributions_records_from_both_databases(tmp_path):
    pypa = _git_repository(tmp_path / "pypa", {
        "vulns/jinja2/PYSEC-2019-217.yaml": "id: PYSEC-2019-217\nmodified: 2021-07-05T00:01:22Z\naffected:\n"
                                            "- package: {name: jinja2, ecosystem: PyPI}\n  ranges:\n"
                                            "  - type: ECOSYSTEM\n    events: [{introduced: '0'}, {fixed: 2.10.1}]\n",
        "vulns/not-installed-here/PYSEC-2000-1.yaml": "id: PYSEC-2000-1\naffected:\n"
                                                      "- package: {name: not-installed-here, ecosystem: PyPI}\n",
    })
    github = _git_repository(tmp_path / "github", {
        "advisories/github-reviewed/2025/03/GHSA-cpwx-vrp4-4pq7/GHSA-cpwx-vrp4-4pq7.json": json.dumps(
            {"id": "GHSA-cpwx-vrp4-4pq7", "affected": [{"package": {"name": "Jinja2", "ecosystem": "PyPI"},
             "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.1.6"}]}]}]}),
        "advisories/github-reviewed/2025/03/GHSA-aaaa-bbbb-cccc/GHSA-aaaa-bbbb-cccc.json": json.dumps(
            {"id": "GHSA-aaaa-bbbb-cccc", "affected": [{"package": {"name": "jinja2", "ecosystem": "npm"}}]}),
    })

    manifest = refresh([pypa, github], snapshot=tmp_path / "snapshot")

    assert [source["repository"] for source in manifest["sources"]] == [
        "https://github.com/pypa/advisory-database", "https://github.com/github/advisory-database"]
    assert manifest["sources"][0]["packages_with_records"] == ["jinja2", "not-installed-here"]
    assert manifest["sources"][1]["packages_with_records"] == ["jinja2"]
    assert manifest["records"] == {"jinja2": ["GHSA-cpwx-vrp4-4pq7", "PYSEC-2019-217"]}
    records = load_records(tmp_path / "snapshot")
    assert records["jinja2"][1]["modified"] == "2021-07-05T00:01:22Z"  # YAML's timestamp, written as OSV's text
    assert [affects(record, "jinja2", "3.1.5") for record in records["jinja2"]] == [True, False]
