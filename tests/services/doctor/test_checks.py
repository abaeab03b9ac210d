"""`invoke doctor`'s checks on real environments: each passing when healthy and failing (or warning)
in a real broken state, with its fix; nothing is ever changed by looking."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services import envfile
from services.doctor import DoctorResult, local, run_doctor
from services.doctor.checks import Check
from services.environments import lifecycle
from services.errors import UsageError
from services.postgres import binaries, server_account, servers
from services.profiles import load_profile
from tests.support.projects import make_project, set_up


def _only(result: DoctorResult, scope: str, name: str) -> Check:
    found = [c for c in result.checks if c.scope == scope and c.name == name]
    assert len(found) == 1, (scope, name, found)
    return found[0]


def _orphans_of(result: DoctorResult, cluster: Path) -> list[Check]:
    return [c for c in result.checks if c.name == "orphaned-clusters" and str(cluster) in c.detail]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_healthy_environment_passes_every_check_of_its_own(fresh_tester) -> None:
    profile, project = fresh_tester
    result = run_doctor(project)  # selected by the .env setup wrote
    assert (result.environment, result.selected_by) == ("tester", ".env")
    assert not result.failed, [c for c in result.checks if c.status == "fail"]
    for name in ("data-dir", "socket-path", "pid-file", "server", "port", "passwords", "schema"):
        assert _only(result, "tester", name).status == "ok", name
    assert _only(result, "project", "env-file").status == "ok"
    assert _only(result, "machine", "python").status == "ok"
    assert _only(result, "tester", "schema").data["revision"] == result.head
    assert {c.scope for c in result.checks} == {"machine", "project", "tester"}  # the selected one only, in full


def test_the_shared_alpha_environment_is_healthy_when_asked_for_by_name(alpha_env) -> None:
    profile, project = alpha_env
    result = run_doctor(project, "alpha")
    assert (result.environment, result.selected_by) == ("alpha", "--env")
    assert not result.failed, [c for c in result.checks if c.status == "fail"]
    assert _only(result, "alpha", "passwords").detail == "the passwords in .env open piper_admin, piper_owner, piper_app"


def test_without_a_selection_each_environment_gets_its_basics_without_connecting(project) -> None:
    result = run_doctor(project)
    assert result.environment is None and not result.failed
    assert _only(result, "project", "env-file").detail.startswith("no .env yet")
    for name in ("alpha", "dev", "tester"):
        assert "not set up" in _only(result, name, "data-dir").detail
        assert not [c for c in result.checks if c.scope == name and c.name in ("passwords", "schema")]
    assert _only(result, "production", "hosted").status == "ok"


def test_an_unknown_environment_is_bad_usage(project) -> None:
    with pytest.raises(UsageError, match="unknown environment 'nope'; known environments: alpha, dev"):
        run_doctor(project, "nope")


def test_an_environment_chosen_but_not_set_up_fails_with_setup_as_the_fix(project) -> None:
    result = run_doctor(project, "alpha")
    check = _only(result, "alpha", "data-dir")
    assert check.status == "fail" and check.fix == "run `invoke setup --env alpha`"
    assert _only(result, "project", "env-file").status == "fail"  # no .env: the passwords are nowhere


def test_a_stale_pid_file_after_kill_9_fails_and_db_start_is_the_fix(fresh_tester) -> None:
    profile, project = fresh_tester
    server = servers.locate(profile, project)
    pid = servers.state(server).pid
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while servers.state(server).running and time.monotonic() < deadline:
        time.sleep(0.05)
    result = run_doctor(project)
    check = _only(result, "tester", "pid-file")
    assert check.status == "fail" and "stale" in check.detail
    assert check.fix.startswith("`invoke db-start --env tester`")
    assert (server.data_dir / "postmaster.pid").exists()  # doctor only looked
    assert _only(result, "tester", "server").status == "warn"
    assert _only(result, "tester", "passwords").status == "warn"  # not checked while it is down
    lifecycle.start_environment(profile, project)
    assert not run_doctor(project).failed


def test_an_env_file_others_can_read_fails_until_it_is_0600_again(fresh_tester) -> None:
    profile, project = fresh_tester
    os.chmod(project.env_file, 0o644)
    check = _only(run_doctor(project), "project", "env-file")
    assert check.status == "fail" and "mode 0644" in check.detail
    assert check.fix.startswith(f"`chmod 600 {project.env_file}`")
    assert oct(os.stat(project.env_file).st_mode & 0o777) == "0o644"  # doctor changes nothing
    os.chmod(project.env_file, 0o600)
    assert _only(run_doctor(project), "project", "env-file").status == "ok"


def test_a_wrong_password_in_env_fails_and_setup_puts_it_right(fresh_tester) -> None:
    profile, project = fresh_tester
    envfile.update(project.env_file, {"PIPER_TESTER_OWNER_PASSWORD": "not-the-servers-password"})
    result = run_doctor(project)
    check = _only(result, "tester", "passwords")
    assert check.status == "fail" and check.data["refused"] == ["piper_owner"]
    assert "invoke setup --env tester" in check.fix
    assert "not-the-servers-password" not in repr(result)
    set_up(profile, project)
    assert _only(run_doctor(project), "tester", "passwords").status == "ok"


def test_a_database_url_that_is_not_the_environments_any_more_warns_and_setup_writes_it_again(fresh_tester) -> None:
    profile, project = fresh_tester
    assert _only(run_doctor(project), "tester", "database-url").status == "ok"
    good = envfile.read(project.env_file)["DATABASE_URL"]
    envfile.update(project.env_file, {"DATABASE_URL": good.replace(f":{profile.database.port}/", ":1/")})
    check = _only(run_doctor(project), "tester", "database-url")
    assert check.status == "warn" and "is not tester's URL now" in check.detail
    assert check.fix == "run `invoke setup --env tester`"
    assert envfile.read(project.env_file)["PIPER_TESTER_APP_PASSWORD"] not in repr(check)
    set_up(profile, project)
    assert envfile.read(project.env_file)["DATABASE_URL"] == good
    assert _only(run_doctor(project), "tester", "database-url").status == "ok"


def test_a_port_taken_by_another_program_fails_naming_who_holds_it(fresh_tester) -> None:
    profile, project = fresh_tester
    servers.stop(servers.locate(profile, project))
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", profile.database.port))
        squatter.listen()
        check = _only(run_doctor(project), "tester", "port")
    assert check.status == "fail" and f"port {profile.database.port} on 127.0.0.1 is taken by" in check.detail
    if sys.platform.startswith("linux"):  # its own sockets are visible to any account there
        assert f"(pid {os.getpid()})" in check.detail
    assert "PIPER_TESTER_PORT=<a free port>" in check.fix
    assert _only(run_doctor(project), "tester", "port").detail.endswith("is free for the server")


def test_two_profiles_on_one_port_fail(project) -> None:
    alpha = (project.environments_dir / "alpha.yaml").read_text()
    port = load_profile("tester", project).database.port
    (project.environments_dir / "alpha.yaml").write_text(alpha.replace(
        f"port: {load_profile('alpha', project).database.port}", f"port: {port}"))
    checks = [c for c in run_doctor(project).checks if c.name == "port" and c.status == "fail"]
    assert {c.scope for c in checks} == {"alpha", "tester"}
    assert any("is also environment 'alpha'" in c.detail for c in checks)


def test_a_data_directory_others_can_read_fails(fresh_tester) -> None:
    profile, project = fresh_tester
    server = servers.locate(profile, project)
    servers.stop(server)
    os.chmod(server.data_dir, 0o755)
    try:
        check = _only(run_doctor(project), "tester", "data-dir")
        assert check.status == "fail" and "mode 0755" in check.detail and check.fix == f"`chmod 700 {server.data_dir}`"
    finally:
        os.chmod(server.data_dir, 0o700)
    assert _only(run_doctor(project), "tester", "data-dir").status == "ok"


def test_leftovers_of_killed_commands_are_named_with_how_to_remove_them(fresh_tester) -> None:
    profile, project = fresh_tester
    server = servers.locate(profile, project)
    dead = _dead_pid()
    backups = project.root / "backups" / "tester"
    backups.mkdir(parents=True, mode=0o700)
    partial = backups / f".tester-piper_tester-20260101T000000000000Z.dump.{dead}.partial"
    partial.write_bytes(b"half a dump")
    working = backups / f".tester-piper_tester-20260102T000000000000Z.dump.{os.getpid()}.partial"  # still being written
    working.write_bytes(b"")
    config = project.config_dir / f".PIPER.md.{dead}.partial"  # a killed backup-config
    config.write_text("half of PIPER.md")
    copy = server.data_dir.parent / f".tester.initdb-{dead}"
    copy.mkdir()
    try:
        left = [c for c in run_doctor(project).checks if c.name == "leftovers"]
        assert sorted(c.detail.split(":")[0] for c in left) == sorted([str(copy), str(partial), str(config)])
        assert all(c.status == "warn" and "remove it" in c.fix for c in left)
        assert partial.exists() and copy.exists() and config.exists()
    finally:
        copy.rmdir()
        working.unlink()
        config.unlink()
    partial.unlink()
    assert not [c for c in run_doctor(project).checks if c.name == "leftovers"]


@pytest.mark.skipif(not server_account.needed(), reason="clusters live apart from the checkout (and can be orphaned) "
                    "only as root; as an ordinary account the check says so, see the test below")
def test_a_cluster_no_checkout_links_to_is_an_orphan(fresh_tester) -> None:
    profile, project = fresh_tester
    server = servers.locate(profile, project)
    servers.stop(server)
    link = server.project_data_dir
    real = os.readlink(link)
    link.unlink()  # a new clone at the same path, without its postgres_data/
    try:
        mine = _orphans_of(run_doctor(project), server.data_dir)
        assert len(mine) == 1 and mine[0].status == "warn" and mine[0].data["environment"] == "tester"
        assert f"sudo rm -r {server.data_dir}" in mine[0].fix and "invoke setup --env tester" in mine[0].fix
    finally:
        os.symlink(real, link)
    assert not _orphans_of(run_doctor(project), server.data_dir)


@pytest.mark.skipif(server_account.needed(), reason="as root clusters can be orphaned: see the test above")
def test_an_ordinary_account_has_no_orphans_to_look_for(project) -> None:
    check = _only(run_doctor(project), "machine", "orphaned-clusters")
    assert check.status == "ok" and "inside the checkout" in check.detail


def test_a_socket_path_over_the_limit_fails(project, tmp_path, monkeypatch) -> None:
    import tempfile

    profile = load_profile("tester", project)
    assert local.socket_check(profile, servers.locate(profile, project)).status == "ok"
    # A checkout deep enough for the socket to move to the temporary directory, itself too deep.
    deep = make_project(tmp_path / ("d" * 60) / ("e" * 60) / "proj")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / ("t" * 100)))
    profile = load_profile("tester", deep)
    check = local.socket_check(profile, servers.locate(profile, deep))
    assert check.status == "fail" and check.data["length"] > local.SOCKET_PATH_LIMIT
    assert check.fix == "use a shorter temporary directory for it: `export TMPDIR=/tmp`"
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    check = local.socket_check(profile, servers.locate(profile, deep))
    assert check.status == "ok" and "in the temporary directory" in check.detail


def test_the_newest_backup_and_its_age(fresh_tester) -> None:
    profile, project = fresh_tester
    assert _only(run_doctor(project), "tester", "backups").status == "warn"
    lifecycle.backup_environment(profile, project)
    check = _only(run_doctor(project), "tester", "backups")
    assert check.status == "ok" and check.data["age_hours"] < 1 and check.detail.endswith("is 0 hours old")


def test_client_tools_older_than_the_server_or_missing_are_a_warning(project, tmp_path, monkeypatch) -> None:
    profile = load_profile("tester", project)
    own = binaries.locate(profile, None)
    shelf = tmp_path / "bin"
    shelf.mkdir()
    monkeypatch.setenv("PATH", str(shelf))
    check = _only(run_doctor(project), "machine", "client-tools")
    assert check.status == "warn" and check.detail.startswith("no pg_restore on PATH")
    assert "pg_restore` (same version)" in check.fix
    (shelf / "pg_restore").symlink_to(own / "pg_restore")
    check = _only(run_doctor(project), "machine", "client-tools")
    assert check.status == "ok" and check.data["client"] == check.data["server"]


def test_the_schema_behind_the_head_fails_and_setup_migrates(fresh_tester) -> None:
    from services import credentials
    from services.database import connection, schema

    profile, project = fresh_tester
    result = run_doctor(project)
    head = result.head
    owner = credentials.target(profile, project, "owner")
    with connection.engine(owner) as engine, engine.begin() as conn:
        schema.downgrade(conn, project.migrations_dir, "-1")
    check = _only(run_doctor(project), "tester", "schema")
    assert check.status == "fail" and check.data["head"] == head and check.data["revision"] != head
    set_up(profile, project)
    assert _only(run_doctor(project), "tester", "schema").status == "ok"


def test_python_in_its_virtual_environment(project) -> None:
    check = _only(run_doctor(project), "machine", "python")
    assert check.data["version"] == ".".join(map(str, sys.version_info[:3]))
    assert check.data["virtualenv"] == (sys.prefix != sys.base_prefix)
    assert Path(sys.executable).exists()


def test_a_branch_other_than_the_profiles_warns_and_a_refusing_profile_fails(project) -> None:
    subprocess.run(["git", "init", "-q", "-b", "feature-x", str(project.root)], check=True)
    check = _only(run_doctor(project, "alpha"), "alpha", "branch")
    assert check.status == "warn" and check.data == {"expected": "production", "current": "feature-x"}
    assert check.fix.startswith("`git switch production` (make it once from main: `git switch -c production main`)")
    check = _only(run_doctor(project, "production"), "production", "branch")
    assert check.status == "fail" and "its profile refuses others" in check.detail
    subprocess.run(["git", "-C", str(project.root), "checkout", "-q", "-b", "production"], check=True)
    assert _only(run_doctor(project, "alpha"), "alpha", "branch").status == "ok"


def test_hosted_production_is_checked_through_its_urls_over_tls(production_env) -> None:
    profile, project = production_env
    result = run_doctor(project, "production")
    assert _only(result, "production", "passwords").status == "ok"
    assert _only(result, "production", "schema").data["revision"] == result.head
    assert not result.failed


def test_a_broken_profile_fails_and_the_others_are_still_checked(project) -> None:
    (project.environments_dir / "alpha.yaml").write_text("name: alpha\ndatabase: [not, a, mapping\n")
    result = run_doctor(project)
    check = _only(result, "alpha", "profile")
    assert check.status == "fail" and "alpha.yaml: not valid YAML" in check.detail
    assert _only(result, "tester", "data-dir").status == "ok"


def test_a_selection_naming_no_profile_fails_instead_of_guessing(project) -> None:
    project.env_file.write_text("PIPER_ENV=staging\n")
    os.chmod(project.env_file, 0o600)
    result = run_doctor(project)
    check = _only(result, "project", "selection")
    assert check.status == "fail" and ".env selects environment 'staging', which has no profile" in check.detail
    assert _only(result, "project", "env-file").status == "ok"
    assert result.environment is None
