"""One command at a time per environment: the lock that setup, start, stop, teardown, backup and restore hold."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from services.errors import ClusterError
from services.profiles import Profile, check_distinct
from services.project import Project

#: How long a second `invoke setup` of the same environment waits for the first one.
LOCK_TIMEOUT = 600.0


@contextmanager
def environment_lock(profile: Profile, project: Project, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the environment's lock: two commands never provision or stop one server at once.

    Before anything else, the profile must share no data directory and no port with another
    profile (a copy-pasted profile must never reach another environment's cluster).
    """
    from filelock import FileLock, Timeout

    if profile.hosted:
        raise ClusterError(f"environment {profile.name!r} is hosted; piper-ops runs no server for it (use your "
                           "hosting provider's tools to start, stop, back up or restore it)")
    check_distinct(profile, project)
    project.data_root.mkdir(mode=0o700, exist_ok=True)
    project.data_root.chmod(0o700)  # data and secrets: closed to other accounts, whatever made it
    lock = FileLock(str(project.data_root / f".{profile.name}.lock"), mode=0o600)
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise ClusterError(
            f"another piper-ops command has held environment {profile.name!r} for {int(timeout)} s; "
            "wait for it to finish, then try again"
        ) from None
    try:
        yield
    finally:
        lock.release()
