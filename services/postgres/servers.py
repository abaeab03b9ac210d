"""One environment's PostgreSQL server: where it lives, whether it runs, start, stop, its tools.

Each environment has its own data directory, port and private socket directory. The server
listens on loopback and the socket only, with scram-sha-256 passwords; no secret is ever passed
in a process argument or a child's environment. When piper-ops runs as root, the server and its
tools run as an unprivileged account (services.postgres.server_account). The data directory itself is
made and removed by services.postgres.data_dirs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from services.errors import ClusterError
from services.files import write_atomic
from services.postgres import binaries, processes, server_account
from services.profiles import Profile, override_variable
from services.project import Project

log = logging.getLogger(__name__)

SERVER_LOG = "piper-server.log"
CONFIG_FILE = "piper.conf"
#: The socket directory inside the data directory, when the path is short enough for a socket.
SOCKET_DIR = "sockets"
# Unix socket paths are limited to 104 bytes on macOS and 108 on Linux, the terminating NUL included.
_MAX_SOCKET_PATH = 100
_START_TIMEOUT = 60


@dataclass(frozen=True)
class Server:
    """Where one environment's server lives and how to reach it."""

    environment: str
    data_dir: Path
    """The data directory the server uses (after following a relocation link, when root)."""
    project_data_dir: Path
    """The data directory as the project names it (postgres_data/<env>)."""
    bin_dir: Path
    socket_dir: Path
    port: int
    listen_addresses: str
    account: server_account.Account | None
    server_kind: str = "embedded"
    configured_port: int = 0
    """The port the profile (or its local override) names; `port` is where a running server really
    listens (its postmaster.pid), which differs until the server is restarted after a change."""

    @property
    def log_file(self) -> Path:
        return self.data_dir / SERVER_LOG

    @property
    def tcp_host(self) -> str | None:
        """The loopback address the server listens on (::1 or 127.0.0.1); None when it listens on its socket only."""
        if not self.listen_addresses:
            return None
        return "::1" if self.listen_addresses == "::1" else "127.0.0.1"


@dataclass(frozen=True)
class ServerState:
    """What is true of a server right now; `running` only for a verified, live postmaster."""

    initialized: bool
    running: bool
    pid: int | None
    stale_pid_file: bool
    data_version: str | None
    """The major version of PostgreSQL that created the data directory (its PG_VERSION)."""


def locate(profile: Profile, project: Project) -> Server:
    """Return where the environment's server lives, creating and copying nothing.

    As root it names the server account if it exists and the copy of the binaries that `prepare`
    made, if any. Whatever only looks at or stops a server (status, stop, connections, the
    isolation check, the tests' clean-up) uses it.
    """
    _refuse_hosted(profile)
    account = server_account.find_account() if server_account.needed() else None
    return _server(profile, project, account, binaries.locate(profile, account))


def prepare(profile: Profile, project: Project) -> Server:
    """Return where the environment's server lives, with what it needs to run made ready.

    As root that is the server account (created on Linux if missing) and binaries it can execute
    (copied where it can reach them if it cannot reach the installed ones). Setup, start, restore
    and teardown, which may start the server, use it.
    """
    _refuse_hosted(profile)
    account = server_account.ensure_account() if server_account.needed() else None
    return _server(profile, project, account, binaries.prepare(profile, account))


def _refuse_hosted(profile: Profile) -> None:
    if profile.hosted:
        raise ClusterError(f"environment {profile.name!r} is hosted; piper-ops does not run its server")


def _server(profile: Profile, project: Project, account: server_account.Account | None, bin_dir: Path) -> Server:
    project_dir = project.root / profile.database.data_dir
    data_dir = Path(os.path.realpath(project_dir))
    configured = profile.database.port
    # A server started before the port was changed still listens where it started: every command
    # reaches it there (and status says so) until it is restarted.
    port, sockets = running_at(data_dir) or (configured, socket_dir_for(data_dir, configured))
    return Server(
        environment=profile.name,
        data_dir=data_dir,
        project_data_dir=project_dir,
        bin_dir=bin_dir,
        socket_dir=sockets,
        port=port,
        listen_addresses=profile.database.listen_addresses,
        account=account,
        server_kind=profile.database.server,
        configured_port=configured,
    )


def listening_port(profile: Profile, project: Project) -> int:
    """Return the port the environment's server listens on: a running one's own, else the profile's."""
    running = running_at(Path(os.path.realpath(project.root / profile.database.data_dir)))
    return running[0] if running else profile.database.port


def running_at(data_dir: Path) -> tuple[int, Path] | None:
    """Return the port and socket directory of the live postmaster on data_dir, from its
    postmaster.pid (lines 4 and 5), or None when none runs there (or it cannot be read)."""
    try:
        pid, _ = _postmaster(data_dir)
        lines = (data_dir / "postmaster.pid").read_text().splitlines() if pid is not None else []
    except (ClusterError, OSError):
        return None
    if len(lines) < 5 or not lines[3].strip().isdigit() or not lines[4].strip():
        return None  # still starting: it has not written where it listens yet
    return int(lines[3]), Path(lines[4].strip())


def socket_dir_for(data_dir: Path, port: int) -> Path:
    """Return the socket directory of a server on data_dir: inside it, or in /tmp when that path is too long."""
    inside = data_dir / SOCKET_DIR
    if len(str(inside / f".s.PGSQL.{port}")) <= _MAX_SOCKET_PATH:
        return inside
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"piper-pg-{digest}"


def state(server: Server) -> ServerState:
    """Return whether the server is initialised and whether a live postmaster serves it."""
    version_file = server.data_dir / "PG_VERSION"
    initialized = version_file.is_file()
    version = version_file.read_text().strip() if initialized else None
    pid, stale = _postmaster(server.data_dir)
    return ServerState(initialized, pid is not None, pid, stale, version)


def start(server: Server, *, config_file: Path) -> ServerState:
    """Start the server and wait until it accepts connections; recover from a crash first.

    A postmaster.pid whose process is gone, or whose PID now belongs to another program, is stale:
    it is removed, and no process is ever signalled on its word.
    """
    current = state(server)
    if not current.initialized:
        raise ClusterError(f"environment {server.environment!r} has no database server yet; run `invoke setup --env {server.environment}`")
    _check_version(server, current)
    if current.running:
        # Another command (or one that was killed) may have started it a moment ago.
        wait_until_ready(server)
        return current
    remove_stale_locks(server)
    if server.configured_port and server.port != server.configured_port:  # it was running elsewhere: now it moves
        server = replace(server, port=server.configured_port,
                         socket_dir=socket_dir_for(server.data_dir, server.configured_port))
    _check_port_free(server, config_file)
    _write_server_config(server)
    _create_socket_dir(server)
    deadline = time.monotonic() + _START_TIMEOUT
    while True:
        offset = _log_size(server)
        try:
            run_tool(server, ["pg_ctl", "start", "-D", str(server.data_dir), "-l", str(server.log_file),
                              "-w", "-t", str(_START_TIMEOUT), "-s"], what="pg_ctl start")
            break
        except ClusterError:
            # After kill -9 the old postmaster's children may hold its shared memory (or, until
            # reaped, a zombie its socket lock) a moment longer.
            reason = _log_tail(server, since=offset)
            if ("is still in use" in reason or "already exists" in reason) and time.monotonic() < deadline:
                remove_stale_locks(server)
                time.sleep(0.5)
                continue
            raise
    return state(server)


def stop(server: Server) -> bool:
    """Stop the server (fast shutdown); return False when it was not running."""
    current = state(server)
    remove_stale_locks(server)
    if not current.running:
        return False
    run_tool(server, ["pg_ctl", "stop", "-D", str(server.data_dir), "-m", "fast", "-w", "-t", "60", "-s"], what="pg_ctl stop")
    return True


def wait_until_ready(server: Server, timeout: float = _START_TIMEOUT) -> None:
    """Wait until a live postmaster says it accepts connections (postmaster.pid line 8: ready)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            lines = (server.data_dir / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            lines = []
        if len(lines) >= 8 and lines[7].strip() == "ready":
            return
        if time.monotonic() > deadline or not state(server).running:
            raise ClusterError(f"the server of environment {server.environment!r} did not become ready; "
                               f"see {server.log_file}")
        time.sleep(0.05)


def _write_server_config(server: Server) -> None:
    settings = {
        "listen_addresses": server.listen_addresses,
        "port": str(server.port),
        "unix_socket_directories": str(server.socket_dir),
        "unix_socket_permissions": "0700",
        "password_encryption": "scram-sha-256",
        # Three environments side by side on a laptop: keep each server small.
        "max_connections": "30",
        "shared_buffers": "32MB",
        "logging_collector": "off",
        "log_min_error_statement": "panic",
    }
    text = "".join(f"{key} = '{value}'\n" for key, value in settings.items())
    path = server.data_dir / CONFIG_FILE
    write_atomic(path, "# Managed by piper-ops; edits are overwritten at the next start.\n" + text, mode=0o600)
    if server.account is not None:
        os.chown(path, server.account.uid, server.account.gid)


def _check_port_free(server: Server, config_file: Path) -> None:
    host = server.tcp_host
    if host is not None and not port_free(host, server.port):
        raise ClusterError(
            f"port {server.port} on {host} is in use by another program; set "
            f"{override_variable(server.environment, 'PORT')}=<a free port> in .env (a local override, git-ignored), "
            f"or change database.port in {config_file}")


def port_free(host: str, port: int) -> bool:
    """Return whether a server could listen on host:port now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As PostgreSQL itself does: connections lingering in TIME_WAIT do not make a port busy.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _check_version(server: Server, current: ServerState) -> None:
    installed = binaries.major_version(server.bin_dir)
    if current.data_version and installed != "unknown" and current.data_version != installed:
        fix = (f"point database.bin_dir at PostgreSQL {current.data_version} binaries" if server.server_kind == "system" else
               f"set database.server: system and database.bin_dir to PostgreSQL {current.data_version} binaries, "
               f"or upgrade the data with pg_upgrade")
        raise ClusterError(
            f"{server.project_data_dir} was created by PostgreSQL {current.data_version} but the binaries are "
            f"PostgreSQL {installed}; {fix}"
        )


def _create_socket_dir(server: Server) -> None:
    """Create the socket directory, or accept an existing one only if it is ours and closed.

    The fallback for long paths lives in the shared temporary directory under a predictable name:
    a directory someone else made there first could let them stand in for the server.
    """
    directory = server.socket_dir
    try:
        directory.mkdir(mode=0o700)
        if server.account is not None:
            os.chown(directory, server.account.uid, server.account.gid, follow_symlinks=False)
    except FileExistsError:
        pass  # checked below, never adopted
    info = os.lstat(directory)
    owner = server.account.uid if server.account is not None else os.geteuid()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != owner or stat.S_IMODE(info.st_mode) & 0o077:
        raise ClusterError(f"socket directory {directory} is not a private directory of the server's own "
                           f"(owner uid {info.st_uid}, mode {oct(stat.S_IMODE(info.st_mode))}); remove it and start again")


def _postmaster(data_dir: Path) -> tuple[int | None, bool]:
    """Return (pid of the live postmaster or None, whether a stale postmaster.pid is left)."""
    return _lock_owner(data_dir / "postmaster.pid")


def _lock_owner(lock_file: Path) -> tuple[int | None, bool]:
    """Return (pid of the live postgres that holds a lock file or None, whether the file is stale).

    postmaster.pid and the socket's .lock file share one format: PID, data directory, start time.
    A PID whose process is gone, a zombie, or another program (by name or start time) is stale.
    """
    try:
        lines = lock_file.read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return None, False
    except PermissionError:
        raise ClusterError(f"cannot read {lock_file}; run as the user who ran setup") from None
    try:
        # A single-user backend (postgres --single) writes its PID negated.
        pid, started = abs(int(lines[0])), int(lines[2])
    except (IndexError, ValueError):
        # A half-written file: the postmaster is starting, or died while writing it.
        return None, True
    try:
        process = processes.facts(pid)
    except PermissionError:
        return pid, False
    if process is None or process.zombie or abs(process.created - started) > 5 or (
            "postgres" not in process.name and "postmaster" not in process.name):
        return None, True
    return pid, False


def remove_stale_locks(server: Server) -> None:
    """Remove lock files left by a server that died (kill -9, power loss); never signal anyone."""
    for lock_file in (server.data_dir / "postmaster.pid", server.socket_dir / f".s.PGSQL.{server.port}.lock"):
        _, stale = _lock_owner(lock_file)
        if stale:
            log.warning("removing stale %s (the server was not shut down cleanly)", lock_file)
            lock_file.unlink(missing_ok=True)


def run_tool(server: Server, argv: list[str], *, what: str) -> None:
    """Run one of the server's programs (initdb, pg_ctl) as the server account; raise with its error if it fails."""
    command = [str(server.bin_dir / argv[0]), *argv[1:]]
    offset = _log_size(server)
    kwargs: dict[str, object] = {}
    if server.account is not None:
        kwargs = {"user": server.account.uid, "group": server.account.gid, "extra_groups": [], "cwd": "/"}
    with tempfile.TemporaryFile("w+") as output:
        # pg_ctl start leaves the server holding inherited pipes; a file never blocks.
        result = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                env=binaries.child_env(), check=False, **kwargs)  # type: ignore[arg-type]
        output.seek(0)
        text = output.read().strip()
    if result.returncode != 0:
        detail = text.splitlines()[-1] if text else ""
        tail = _log_tail(server, since=offset)
        reason = tail or detail or binaries.exit_reason(result.returncode)
        raise ClusterError(f"{what} failed for environment {server.environment!r}: {reason} (log: {server.log_file})")


def remove_leftovers(parent: Path, pattern: str) -> None:
    """Delete the staging directories matching pattern in parent that a killed run left behind.

    A setup killed during initdb leaves initdb (and its postgres children) running on its own: it
    is killed first, found by the staging directory in its command line, a path only piper-ops
    creates, never by a PID alone.
    """
    for leftover in parent.glob(pattern):
        processes.kill_processes_using(leftover)
        shutil.rmtree(leftover, ignore_errors=True)


def _log_size(server: Server) -> int:
    try:
        return server.log_file.stat().st_size
    except OSError:
        return 0


def _log_tail(server: Server, *, since: int) -> str:
    """Return the last FATAL/ERROR/PANIC line the server logged after byte offset `since`."""
    try:
        with open(server.log_file, "rb") as handle:
            handle.seek(since)
            lines = handle.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    for line in reversed(lines[-40:]):
        if any(level in line for level in ("FATAL", "ERROR", "PANIC")):
            return line.strip()
    return ""
