"""The server lifecycle on real PostgreSQL: access rules, crash recovery, PID reuse, busy ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import psycopg
import pytest

from services import credentials
from services.database import connection
from services.errors import ClusterError
from services.postgres import server_account, servers
from services.profiles import load_profile
from services.project import Project
from tests.support.projects import set_up


def _server(project: Project, name: str = "alpha") -> servers.Server:
    return servers.locate(load_profile(name, project), project)


def _postgres_processes(server: servers.Server) -> list[psutil.Process]:
    state = servers.state(server)
    assert state.pid is not None
    main = psutil.Process(state.pid)
    return [main, *main.children(recursive=True)]


def test_server_accepts_only_password_connections_on_loopback_and_its_socket(alpha_env) -> None:
    profile, project = alpha_env
    server = _server(project)
    admin = credentials.target(profile, project, "admin")
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
    secrets = [v for k, v in credentials.known_secrets(project).items() if k.endswith("_PASSWORD")]
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
    old_pid = servers.state(server).pid
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    psutil.Process(old_pid).wait(timeout=10) if psutil.pid_exists(old_pid) else None
    state = servers.state(server)
    assert not state.running and state.stale_pid_file
    started = servers.start(server, config_file=profile.source)
    assert started.running and started.pid != old_pid
    with connection.connect(credentials.target(profile, project, "owner")) as conn:
        assert conn.execute("SELECT username FROM alpha_users").fetchall() == [("alfy",)]


@pytest.mark.slow
def test_a_reused_pid_is_never_signalled(project: Project) -> None:
    profile = load_profile("alpha", project)
    set_up(profile, project)
    server = _server(project)
    servers.stop(server)
    # An innocent program now owns the PID that a stale postmaster.pid names.
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lines = ["%d" % bystander.pid, str(server.data_dir), str(int(time.time()) - 3600), str(server.port),
                 str(server.socket_dir), "127.0.0.1", "0 0", "ready"]
        pid_file = server.data_dir / "postmaster.pid"
        pid_file.write_text("\n".join(lines) + "\n")
        state = servers.state(server)
        assert not state.running and state.stale_pid_file
        assert servers.stop(server) is False
        assert bystander.poll() is None
        pid_file.write_text("\n".join(lines) + "\n")
        # The socket's lock file too, as a killed server whose zombie was not yet reaped leaves it.
        socket_lock = server.socket_dir / f".s.PGSQL.{server.port}.lock"
        socket_lock.write_text("\n".join(lines[:5]) + "\n")
        started = servers.start(server, config_file=profile.source)
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


def test_stop_then_start_keeps_the_data(fresh_alpha) -> None:
    profile, project = fresh_alpha  # it stops the server: an environment of its own
    server = _server(project)
    assert servers.stop(server) is True
    assert servers.stop(server) is False
    assert not servers.state(server).running
    servers.start(server, config_file=profile.source)
    with connection.connect(credentials.target(profile, project, "owner")) as conn:
        assert conn.execute("SELECT count(*) FROM alpha_users WHERE username = 'alfy'").fetchone() == (1,)


def test_a_data_directory_from_another_major_version_is_refused(project: Project) -> None:
    profile = load_profile("tester", project)
    set_up(profile, project)
    server = _server(project, "tester")
    servers.stop(server)
    version_file = server.data_dir / "PG_VERSION"
    real = version_file.read_text()
    version_file.write_text("9\n")
    try:
        with pytest.raises(ClusterError, match=r"created by PostgreSQL 9 but the binaries are PostgreSQL \d+"):
            servers.start(server, config_file=profile.source)
        assert not servers.state(server).running
    finally:
        version_file.write_text(real)


def test_a_socket_directory_someone_else_prepared_is_refused(project: Project, monkeypatch) -> None:
    import shutil as _shutil

    profile = load_profile("tester", project)
    set_up(profile, project)
    server = _server(project, "tester")
    servers.stop(server)
    _shutil.rmtree(server.socket_dir)
    server.socket_dir.mkdir(mode=0o777)
    os.chmod(server.socket_dir, 0o777)  # open to everyone, as a squatter would leave it
    with pytest.raises(ClusterError, match="is not a private directory of the server's own"):
        servers.start(server, config_file=profile.source)
    assert not servers.state(server).running
