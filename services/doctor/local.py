"""The doctor's checks of one environment's local server, read from its files: the data directory's
ownership and modes, the socket path, a stale postmaster.pid, whether it runs, its port, and what
killed commands left beside it."""

from __future__ import annotations

import os
import stat
import sys

from services import files
from services.doctor.checks import Check, Context, fail, ok, warn
from services.errors import ClusterError, PiperError
from services.postgres import data_dirs, servers
from services.profiles import Profile, override_variable

#: sun_path holds 108 bytes on Linux and 104 on macOS, the terminating NUL included.
SOCKET_PATH_LIMIT = 103 if sys.platform == "darwin" else 107


def data_dir_checks(context: Context, profile: Profile, server: servers.Server,
                    state: servers.ServerState, *, full: bool) -> list[Check]:
    """The data directory: set up, a cluster of this environment, owned by who runs it, mode 0700 or 0750."""
    target, real = server.project_data_dir, server.data_dir
    setup = f"`invoke setup --env {profile.name}`"
    if not state.initialized:
        if target.is_symlink() and not target.exists():
            return [warn("data-dir", f"{target} links to {os.readlink(target)}, which is gone",
                         f"{setup} makes a new cluster there (the old one's data is gone; restore a backup after)")]
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            return [fail("data-dir", f"{target} exists but holds no PostgreSQL cluster",
                         "move it away, or give the environment another data directory "
                         f"({override_variable(profile.name, 'DATA_DIR')} in .env, or database.data_dir in "
                         f"environments/{profile.source.name})")]
        if full:
            return [fail("data-dir", f"{profile.name} is not set up ({target} holds no cluster)",
                         f"run {setup}", initialized=False)]
        return [ok("data-dir", f"not set up ({setup} creates it in {target})", initialized=False)]
    checks = []
    try:
        data_dirs.check_owner(server)
    except ClusterError as exc:
        return [fail("data-dir", str(exc), f"give environments/{profile.name}.yaml a data directory of its own")]
    info = os.stat(real)
    expected = server.account.uid if server.account is not None else os.geteuid()
    who = f"account {server.account.name!r}" if server.account is not None else "you"
    mode = stat.S_IMODE(info.st_mode)
    where = real if real == target else f"{real} (linked from {target})"
    if server.account is None and os.geteuid() == 0:
        checks.append(fail("data-dir", f"{where} is there but the server account does not exist",
                           f"run {setup}: it creates the account"))
    elif info.st_uid != expected:
        chown = (f"`sudo chown -R {server.account.name}: {real}`" if server.account is not None
                 else f"`sudo chown -R \"$(id -un)\" {real}`")
        checks.append(fail("data-dir", f"{where} belongs to uid {info.st_uid}, not to {who} (uid {expected}): the "
                           "server cannot use it", f"give it back with {chown}", mode=f"{mode:04o}"))
    elif mode & 0o027:
        checks.append(fail("data-dir", f"{where} has mode {mode:04o}: PostgreSQL refuses a data directory others "
                           "can write or read", f"`chmod 700 {real}`", mode=f"{mode:04o}"))
    else:
        checks.append(ok("data-dir", f"{where}: PostgreSQL {state.data_version}, owned by {who}, mode {mode:04o}",
                         mode=f"{mode:04o}", data_version=state.data_version))
    installed = context.server_version(server.bin_dir)
    if state.data_version and installed != "unknown" and installed != state.data_version:
        checks.append(fail("data-dir", f"{target} was made by PostgreSQL {state.data_version} but the binaries are "
                           f"PostgreSQL {installed}",
                           f"point database.bin_dir (or {override_variable(profile.name, 'BIN_DIR')} in .env) at "
                           f"PostgreSQL {state.data_version} binaries, or upgrade the data with pg_upgrade"))
    return checks


def socket_check(profile: Profile, server: servers.Server) -> Check:
    """The server's socket path fits the system's limit; its directory, if there, is the server's own and closed."""
    path = server.socket_dir / f".s.PGSQL.{server.port}"
    length = len(os.fsencode(str(path)))
    inside = server.socket_dir == server.data_dir / servers.SOCKET_DIR
    if length > SOCKET_PATH_LIMIT:
        fix = ("use a shorter temporary directory for it: `export TMPDIR=/tmp`" if not inside
               else "move the checkout to a shorter path")
        return fail("socket-path", f"{path} is {length} bytes; a Unix socket path may have at most "
                    f"{SOCKET_PATH_LIMIT}", fix, length=length, limit=SOCKET_PATH_LIMIT)
    try:
        info = os.lstat(server.socket_dir)
    except FileNotFoundError:
        info = None
    except OSError:
        info = None  # inside a data directory only its owner can enter: the server's own
    owner = server.account.uid if server.account is not None else os.geteuid()
    mode = stat.S_IMODE(info.st_mode) if info is not None else 0
    if info is not None and (not stat.S_ISDIR(info.st_mode) or info.st_uid != owner or mode & 0o077):
        return fail("socket-path", f"socket directory {server.socket_dir} is not a private directory of the server's "
                    f"own (owner uid {info.st_uid}, mode {mode:04o}): the server will not use it",
                    f"remove it (`rm -r {server.socket_dir}`) and start the server again", length=length)
    where = "inside the data directory" if inside else "in the temporary directory (the data path is too long for one)"
    return ok("socket-path", f"{path} ({length} of {SOCKET_PATH_LIMIT} bytes, {where})", length=length,
              limit=SOCKET_PATH_LIMIT)


def pid_file_check(profile: Profile, server: servers.Server, state: servers.ServerState) -> Check:
    """A postmaster.pid whose server is gone (kill -9, power loss, a reboot)."""
    pid_file = server.data_dir / "postmaster.pid"
    if state.stale_pid_file:
        return fail("pid-file", f"{pid_file} is stale: the server it names is gone (it was not shut down cleanly)",
                    f"`invoke db-start --env {profile.name}` removes it and recovers; nothing else is needed")
    if state.running:
        return ok("pid-file", f"postmaster.pid names the live server (pid {state.pid})", pid=state.pid)
    return ok("pid-file", "no postmaster.pid (the server is stopped cleanly)" if state.initialized
              else "no postmaster.pid")


def server_check(profile: Profile, server: servers.Server, state: servers.ServerState, *, full: bool) -> Check:
    """Whether the server runs, and where."""
    if state.running:
        moved = "" if server.port == profile.database.port else (
            f"; it still listens on port {server.port}, not the configured {profile.database.port}")
        detail = f"running (pid {state.pid}) on port {server.port}, socket {server.socket_dir}{moved}"
        if moved:
            return warn("server", detail, f"restart it to move it: `invoke db-stop --env {profile.name} && invoke "
                        f"db-start --env {profile.name}`", running=True, port=server.port)
        return ok("server", detail, running=True, port=server.port)
    if not state.initialized:
        return ok("server", "no server yet", running=False)
    start = f"`invoke db-start --env {profile.name}`"
    if full:
        return warn("server", "stopped: nothing can use the database until it runs", start, running=False)
    return ok("server", f"stopped ({start} starts it)", running=False)


def port_checks(context: Context, profile: Profile, server: servers.Server, state: servers.ServerState) -> list[Check]:
    """The port is this environment's alone: no other profile names it, and no other program holds it."""
    checks = []
    variable = override_variable(profile.name, "PORT")
    for other in context.profiles:
        if other.name != profile.name and not other.hosted and other.database.port == profile.database.port:
            checks.append(fail("port", f"port {profile.database.port} is also environment {other.name!r}'s",
                               f"give one of them another port: {variable}=<a free port> in "
                               f".env, or database.port in environments/{profile.source.name}"))
    if not server.listen_addresses:
        checks.append(ok("port", "the server listens on its socket only (no TCP port)"))
        return checks
    port = profile.database.port
    host = server.tcp_host
    if state.running and server.port == port:
        checks.append(ok("port", f"port {port} on {host} is this environment's server", port=port))
        return checks
    if servers.port_free(host, port):
        checks.append(ok("port", f"port {port} on {host} is free for the server", port=port))
        return checks
    holder = _holder(port)
    checks.append(fail("port", f"port {port} on {host} is taken by {holder}",
                       f"stop that program, or give {profile.name} another port: {variable}="
                       f"<a free port> in .env (a git-ignored local override), or database.port in "
                       f"environments/{profile.source.name}", port=port))
    return checks


def _holder(port: int) -> str:
    """Say who listens on a port, as far as the OS lets this account see (others' sockets need root)."""
    import psutil

    unseen = ("another program (the OS does not tell this account which; `sudo lsof -nP -iTCP:"
              f"{port} -sTCP:LISTEN` does)")
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, PermissionError):
        return unseen
    for conn in connections:
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
            if conn.pid is None:
                return unseen
            try:
                return f"{psutil.Process(conn.pid).name()} (pid {conn.pid})"
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                return f"pid {conn.pid}"
    return unseen


def leftover_checks(profile: Profile, server: servers.Server) -> list[Check]:
    """Copies a killed setup or teardown left beside the data directory (`.ENV.initdb-PID`, `.ENV.deleting-PID`)."""
    name = server.project_data_dir.name
    found = []
    for parent in dict.fromkeys((server.project_data_dir.parent, server.data_dir.parent)):
        for kind in ("initdb", "deleting", "link"):
            try:
                found += [(kind, path) for path in parent.glob(f".{name}.{kind}-*")]
            except OSError:
                continue
    checks = []
    for kind, path in sorted(found):
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and files.process_alive(int(pid)):
            continue  # a command at work right now
        what = {"initdb": "a cluster copy a killed setup left", "deleting": "a cluster a killed teardown set aside",
                "link": "a link a killed setup left"}[kind]
        remove = f"`sudo rm -r {path}`" if server.account is not None else f"`rm -r {path}`"
        checks.append(warn("leftovers", f"{path}: {what}; nothing uses it",
                           f"remove it: {remove} (`invoke teardown` or a new setup of {profile.name} would too)"))
    return checks


def server_facts(profile: Profile, context: Context) -> tuple[servers.Server, servers.ServerState] | Check:
    """Return the environment's server and its state, or the check that says why they cannot be read."""
    try:
        server = servers.locate(profile, context.project)
        return server, servers.state(server)
    except PiperError as exc:
        return fail("server", f"cannot look at the server: {exc}", f"see the message; then `invoke setup --env "
                    f"{profile.name}`")
