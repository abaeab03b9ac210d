"""`invoke setup`: one command brings an environment to its profile's state (ADR-040's onboarding).

Provision (or reuse) the local server, generate the passwords, create the database and roles,
migrate to head and stamp it in one transaction, select it in `.env`. The profile's setup steps
(services/environments/steps.py) are planned before it and run after it. Every step checks
before it acts, so a second run changes nothing.
"""

from __future__ import annotations

import secrets as token_source
import threading
from dataclasses import dataclass, field, replace

from services import credentials, envfile, gitinfo
from services.environments import locking, provisioning
from services.errors import PiperError, UsageError
from services.postgres import data_dirs, servers
from services.profiles import Profile
from services.project import ENV_VARIABLE, Project


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
        raise PiperError(f"{message}; check out {profile.branch} or pass --allow-branch-mismatch")
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
        with locking.environment_lock(profile, project):
            report = _setup_local(profile, project)
    if warning:
        report.warnings.append(warning)
    if envfile.read(project.env_file).get(ENV_VARIABLE) != profile.name:
        envfile.update(project.env_file, {ENV_VARIABLE: profile.name})
        report.changes.append(f"selected {profile.name} in {project.env_file.name}")
    return report


def _setup_local(profile: Profile, project: Project) -> SetupReport:
    changes: list[str] = []
    server = servers.prepare(profile, project)
    current = servers.state(server)
    secrets, reset = _ensure_secrets(profile, project, initialized=current.initialized, changes=changes)
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
    initial = data_dirs.initial_password(server)
    if initial is not None:
        provisioning.set_superuser_password(replace(admin, password=initial), secrets["admin"])
        data_dirs.forget_initial_password(server)
    changes += provisioning.bootstrap_database(admin, profile, secrets, reset=reset)
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


def _ensure_secrets(profile: Profile, project: Project, *, initialized: bool,
                    changes: list[str]) -> tuple[dict[str, str], frozenset[str]]:
    """Return the environment's passwords, generating missing ones, and the roles whose password
    was generated for a server that already exists (setup then sets it on the role)."""
    known = credentials.known_secrets(project)
    roles = ("admin", "owner", "app")
    found = {role: known.get(credentials.password_key(profile.name, role)) for role in roles}
    if all(found.values()):
        return {role: str(value) for role, value in found.items()}, frozenset()
    if initialized and not found["admin"]:
        raise UsageError(
            f"{profile.database.data_dir} exists but {project.env_file} holds no "
            f"{credentials.password_key(profile.name, 'admin')}; restore .env from your backup, "
            f"or run `invoke teardown --env {profile.name}` to start over (it keeps a copy of the files in backups/)"
        )
    created = {role: value or token_source.token_urlsafe(32) for role, value in found.items()}
    # The passwords reach .env before the server exists, so a crash can never leave a server
    # whose password is known nowhere.
    envfile.update(project.env_file, {credentials.password_key(profile.name, r): created[r] for r in roles})
    changes.append(f"generated passwords for {profile.name} in {project.env_file.name} (mode 0600)")
    reset = frozenset(role for role, value in found.items() if not value) if initialized else frozenset()
    return {role: str(value) for role, value in created.items()}, reset
