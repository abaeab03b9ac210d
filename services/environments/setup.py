"""`invoke setup`: one command brings an environment to its profile's state (ADR-040's onboarding).

Provision (or reuse) the local server, generate the passwords (or get back into a server whose
passwords `.env` lost: services/environments/access.py), create the database and roles,
migrate to head and stamp it in one transaction, select it in `.env`. The profile's setup steps
(services/environments/steps.py) are planned before it and run after it. Every step checks
before it acts, so a second run changes nothing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from services import connection_info, credentials, gitinfo
from services.environments import access, locking, provisioning
from services.errors import PiperError
from services.postgres import data_dirs, servers
from services.profiles import Profile, check_distinct
from services.project import Project


@dataclass
class SetupReport:
    """What `setup_environment` found and did; `changes` is empty when all was in place."""

    environment: str
    location: str
    revision: str
    changes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_branch(profile: Profile, project: Project, *, allow_mismatch: bool) -> str | None:
    """Return a warning when the checkout's branch is not the profile's; raise when it must refuse."""
    current = gitinfo.current_branch(project.root)
    if current is None or current == profile.branch:
        return None
    message = (
        f"this checkout is on branch {current!r} but environment {profile.name!r} expects {profile.branch!r} "
        f"(ADR-040 branch strategy)"
    )
    if profile.branch_policy == "refuse" and not allow_mismatch:
        raise PiperError(f"{message}; check out {profile.branch} (`git switch {profile.branch}`; a repository without "
                         f"it makes it with `git branch {profile.branch} main`) or pass --allow-branch-mismatch")
    return message


def setup_environment(profile: Profile, project: Project, *, allow_branch_mismatch: bool = False) -> SetupReport:
    """Bring the environment's database to its profile's state and return what was done.

    The profile's setup steps (scripts) are planned before it (`plan_setup_steps`, so that bad
    input changes nothing) and run after it (`run_setup_steps`).
    """
    warning = check_branch(profile, project, allow_mismatch=allow_branch_mismatch)
    if profile.hosted:
        report = _setup_hosted(profile, project)
    else:
        _refuse_early(profile, project)
        with locking.environment_lock(profile, project):
            report = _setup_local(profile, project)
    if warning:
        report.warnings.append(warning)
    # PIPER_ENV and the application's DATABASE_URL (12-factor) in one atomic update of .env.
    report.changes += connection_info.select_in_env_file(profile, project)
    return report


def _refuse_early(profile: Profile, project: Project) -> None:
    """Refuse, before anything is written (even the lock file), a data directory that is not this environment's."""
    check_distinct(profile, project)
    located = servers.locate(profile, project)
    if servers.state(located).initialized:
        data_dirs.check_owner(located)
    else:
        data_dirs.check_can_initialize(located)


def _setup_local(profile: Profile, project: Project) -> SetupReport:
    changes: list[str] = []
    server = servers.prepare(profile, project)
    current = servers.state(server)
    if current.initialized:
        data_dirs.check_owner(server)
    else:
        data_dirs.check_can_initialize(server)  # a refused setup writes nothing, not even passwords
    passwords = access.ensure_passwords(profile, project, changes)
    if not current.initialized:
        server = data_dirs.initialize(server)
        where = "" if server.data_dir == server.project_data_dir else f" (data in {server.data_dir})"
        changes.append(f"created a PostgreSQL server in {server.project_data_dir}{where}")
    preload = _preload_database_modules() if not current.running else None
    if not servers.state(server).running:
        servers.start(server, config_file=profile.source)
        changes.append(f"started the server (port {server.port})")
    else:
        servers.wait_until_ready(server)  # it may have been started a moment ago by another command
    if preload is not None:
        preload.join()
    sockets = str(server.socket_dir)
    admin = credentials.target(profile, project, "admin", dbname="postgres", socket_dir=sockets)
    server = access.ensure_superuser(profile, server, admin, changes)
    data_dirs.claim(server)
    changes += provisioning.bootstrap_database(admin, profile, passwords)
    stale = access.stale_roles(profile, project, sockets)
    if stale:  # .env lost or holds old passwords of roles that exist: they get the ones in .env
        changes += provisioning.bootstrap_database(admin, profile, passwords, reset=stale)
    owner = credentials.target(profile, project, "owner", socket_dir=sockets)
    revision = provisioning.migrate_and_stamp(owner, profile, project, changes)
    return SetupReport(profile.name, owner.display(), revision, changes)


def _preload_database_modules() -> threading.Thread:
    """Import the driver, ORM and Alembic in a thread while pg_ctl starts the server.

    The main thread only waits on that subprocess meanwhile (no GIL held), so the two overlap.
    The main thread imports none of these modules until it joins the thread, so the two never
    contend for one module's lock.
    """
    def _load() -> None:
        import alembic.command  # noqa: F401
        import psycopg  # noqa: F401

        import services.database.models  # noqa: F401

    thread = threading.Thread(target=_load, name="piper-preload", daemon=True)
    thread.start()
    return thread


def _setup_hosted(profile: Profile, project: Project) -> SetupReport:
    changes: list[str] = []
    owner = credentials.target(profile, project, "owner")
    revision = provisioning.migrate_and_stamp(owner, profile, project, changes)
    return SetupReport(profile.name, owner.display(), revision, changes)

