"""`invoke psql`: the server's own psql on a database, on the caller's terminal, until the user quits it.

psql reaches the server through its private socket and gets the password through a private
PGPASSFILE (services.postgres.clients.passfile_env), never an argument or a variable other users
could read. The file lives as long as psql does (psql reads it again when it reconnects).
"""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Sequence

from services.postgres import clients, servers


def run_psql(server: servers.Server, dbname: str, user: str, password: str, args: Sequence[str] = ()) -> int:
    """Run psql on dbname as user with the caller's standard streams; return psql's exit code.

    Ctrl-C belongs to psql while it runs (it cancels the running query, as in any psql); a
    SIGTERM to this process ends psql too.
    """
    argv = [str(server.bin_dir / "psql"), *clients.connection_args(server, user), f"--dbname={dbname}", *args]
    with clients.passfile_env(server, password) as env:
        process = subprocess.Popen(argv, env=env)
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
        try:
            code = process.wait()
        finally:
            if main_thread:
                signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
            if process.poll() is None:  # we were terminated: psql goes with us
                process.terminate()
                process.wait()
    return code if code >= 0 else 128 - code  # killed by a signal: as a shell reports it
