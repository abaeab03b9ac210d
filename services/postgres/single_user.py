"""PostgreSQL's single-user mode: the way back into a cluster whose passwords are lost.

Whoever owns a data directory owns its data (DESIGN invariant 10). With the server stopped,
`postgres --single`, run as the data directory's owner (the server account when root), reads
statements from its standard input and needs no password: the superuser's password is reset that
way, and the usual setup then sets the other roles' through it. The new password reaches the
backend through the pipe only, never an argument, and the statement is kept out of the log.
"""

from __future__ import annotations

import subprocess

from services.database.roles import SUPERUSER
from services.errors import ClusterError
from services.postgres import binaries, servers

_TIMEOUT = 120


def reset_superuser_password(server: servers.Server, password: str) -> None:
    """Give the cluster's superuser this password without knowing the old one (server stopped)."""
    if servers.state(server).running:
        raise ClusterError(f"the server of environment {server.environment!r} is running; stop it before "
                           "resetting its superuser's password")
    servers.remove_stale_locks(server)
    command = [str(server.bin_dir / "postgres"), "--single", "-D", str(server.data_dir),
               "-c", "log_statement=none", "-c", "log_min_error_statement=panic",
               "-c", "password_encryption=scram-sha-256", "-c", "listen_addresses=", "postgres"]
    literal = "'" + password.replace("'", "''") + "'"
    statement = f"ALTER ROLE {SUPERUSER} PASSWORD {literal};\n"
    kwargs: dict[str, object] = {}
    if server.account is not None:
        kwargs = {"user": server.account.uid, "group": server.account.gid, "extra_groups": [], "cwd": "/"}
    try:
        result = subprocess.run(command, input=statement.encode(), capture_output=True, env=binaries.child_env(),
                                timeout=_TIMEOUT, check=False, **kwargs)  # type: ignore[arg-type]
    except subprocess.TimeoutExpired:
        raise ClusterError(f"PostgreSQL's single-user mode did not finish in {_TIMEOUT} s for environment "
                           f"{server.environment!r}; see {server.log_file}") from None
    # The backend echoes nothing of the statement; its errors say what went wrong, never the password.
    errors = [line for line in result.stderr.decode("utf-8", "replace").splitlines()
              if line.startswith(("ERROR", "FATAL", "PANIC"))]
    if result.returncode != 0 or errors:
        reason = (errors or [binaries.exit_reason(result.returncode)])[-1].replace(password, "***")
        raise ClusterError(f"could not reset the superuser's password of environment {server.environment!r} "
                           f"in single-user mode: {reason}")
