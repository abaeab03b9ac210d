"""`invoke doctor` as a user runs it: its lines, exit codes, the redacted report, and that it changes nothing."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import time
from pathlib import Path

import pytest

from services import envfile
from services.doctor import report
from services.errors import UsageError
from services.postgres import servers
from services.profiles import load_profile
from tests.support.cli import INVOKE, run_cli
from tests.support.projects import make_project, remove_servers, set_up


def _snapshot(root: Path, *extra: Path) -> dict[str, tuple]:
    """Every entry of the project (and the extra files) with its type, mode, size, mtime and content hash.

    Inside a data directory only the server writes (its statistics, WAL): those are left out, but
    not its postmaster.pid, which doctor must never remove.
    """
    seen: dict[str, tuple] = {}

    def record(path: Path) -> None:
        info = os.lstat(path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(info.st_mode) else None
        link = os.readlink(path) if stat.S_ISLNK(info.st_mode) else None
        seen[str(path)] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), info.st_size, info.st_mtime_ns,
                           digest, link)

    for folder, dirs, files in os.walk(root):
        if "PG_VERSION" in files:
            dirs[:] = []
            files = [f for f in files if f == "postmaster.pid"]
        for name in dirs + files:
            record(Path(folder) / name)
    for path in extra:
        if path.exists():
            record(path)
    return seen


def test_doctor_prints_each_check_and_exits_0_when_healthy(fresh_tester) -> None:
    profile, project = fresh_tester
    result = run_cli([*INVOKE, "doctor"], project)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "doctor: the machine, this checkout and environment tester (.env)"
    assert any(line.startswith("  ok    passwords") for line in lines)
    assert any(line.startswith("  ok    schema") for line in lines)
    assert lines[-1].startswith("doctor: 0 failed, ")


def test_a_failed_check_is_exit_1_with_its_fix(fresh_tester) -> None:
    profile, project = fresh_tester
    os.chmod(project.env_file, 0o644)
    result = run_cli([*INVOKE, "doctor", "--env", "tester"], project)
    assert result.returncode == 1
    at = next(i for i, line in enumerate(result.stdout.splitlines()) if line.startswith("  FAIL  env-file"))
    assert result.stdout.splitlines()[at + 1].strip() == f"fix: `chmod 600 {project.env_file}` (and, if others could " \
                                                          "read it, run `invoke setup` after changing them)"
    assert "doctor: 1 failed" in result.stdout


def test_an_unknown_environment_is_exit_2_in_one_line(project) -> None:
    result = run_cli([*INVOKE, "doctor", "--env", "nope"], project)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown environment 'nope'; known environments: alpha, dev, production, tester"]
    assert result.stdout == ""


def test_a_report_that_cannot_be_written_stops_doctor_before_any_check(project, tmp_path) -> None:
    result = run_cli([*INVOKE, "doctor", "--report", str(tmp_path / "missing" / "report.md")], project)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'missing'} does not exist; create it or name a file in an existing directory"]


def test_a_report_into_a_directory_or_over_a_device_is_refused(project, tmp_path) -> None:
    result = run_cli([*INVOKE, "doctor", "--report", str(tmp_path)], project)
    assert result.returncode == 2 and result.stderr.startswith(f"error: {tmp_path} is a directory")
    result = run_cli([*INVOKE, "doctor", "--report", "/dev/null"], project)
    assert result.returncode == 2 and result.stderr.startswith("error: /dev/null is not a regular file")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)  # never replaced by a rename, even as root
    result = run_cli([*INVOKE, "doctor", "--report", str(tmp_path / "no-such-dir" / "r.md")], project)
    assert result.returncode == 2 and "no-such-dir does not exist" in result.stderr


@pytest.mark.parametrize("broken", [False, True], ids=["healthy", "stale-pid-file"])
def test_doctor_changes_nothing_in_the_project(fresh_tester, tmp_path, broken) -> None:
    profile, project = fresh_tester
    server = servers.locate(profile, project)
    if broken:  # a server killed: doctor must report its stale postmaster.pid, never remove it
        os.kill(servers.state(server).pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while servers.state(server).running and time.monotonic() < deadline:
            time.sleep(0.05)
    extra = (server.data_dir / "postmaster.pid", server.data_dir.parent)
    before = _snapshot(project.root, *extra)
    out = tmp_path / "out"
    out.mkdir()
    for argv in (["doctor"], ["doctor", "--json"], ["doctor", "--report", str(out / "report.md")], ["doctor", "--env",
                                                                                                     "alpha"]):
        result = run_cli([*INVOKE, *argv], project)
        assert result.returncode in (0, 1), result.stderr
    assert _snapshot(project.root, *extra) == before
    if broken:
        assert (server.data_dir / "postmaster.pid").exists()  # stale, reported, left for db-start to remove
    assert os.listdir(out) == ["report.md"]  # written atomically: no partial file left beside it


def test_the_report_holds_no_password_home_or_account_name(tmp_path) -> None:
    home = tmp_path / "home" / "fake-tester"
    project = make_project(home / "piper")
    profile = load_profile("tester", project)
    try:
        set_up(profile, project)
        secrets = [v for k, v in envfile.read(project.env_file).items() if k.endswith("_PASSWORD")]
        assert len(secrets) == 3
        for variables in ({"HOME": str(home)}, {"HOME": str(tmp_path / "elsewhere")}):
            path = tmp_path / "report.md"
            result = run_cli([*INVOKE, "doctor", "--report", str(path)], project, USER="fake-tester",
                             LOGNAME="fake-tester", **variables)
            assert result.returncode == 0, result.stdout + result.stderr
            assert f"report written to {path}" in result.stdout
            text = path.read_text()
            assert "fake-tester" not in text and str(home) not in text
            assert not [s for s in secrets if s in text]
            doc = report.parse_report(text)
            assert (doc["format"], doc["version"], doc["redacted"]) == ("piper-doctor-report", 1, True)
            assert doc["environment"] == "tester" and doc["summary"]["fail"] == 0
            assert {c["name"] for c in doc["checks"]} >= {"python", "passwords", "schema", "env-file", "port"}
        assert "<user>/piper" in text  # the second run: the account name stands in the path, replaced
    finally:
        remove_servers(project)


def test_json_output_is_the_same_document_unredacted(fresh_tester) -> None:
    profile, project = fresh_tester
    result = run_cli([*INVOKE, "doctor", "--json"], project)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["format"], doc["version"], doc["redacted"]) == ("piper-doctor-report", 1, False)
    assert report.parse_report(result.stdout)["checks"] == doc["checks"]
    statuses = {c["status"] for c in doc["checks"]}
    assert statuses <= {"ok", "warn"} and doc["summary"]["result"] == "ok"


def test_parse_report_refuses_what_is_not_a_report() -> None:
    with pytest.raises(UsageError, match="no JSON block"):
        report.parse_report("# just some notes\n")
    with pytest.raises(UsageError, match="format is not 'piper-doctor-report'"):
        report.parse_report('{"format": "other", "version": 1}')
    with pytest.raises(UsageError, match="reads up to version 1: update it"):
        report.parse_report('{"format": "piper-doctor-report", "version": 2}')
