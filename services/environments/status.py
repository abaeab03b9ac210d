"""`invoke status`: every environment at a glance, read without changing anything."""

from __future__ import annotations

import os
from dataclasses import dataclass

from services import credentials, db_backups, envfile, gitinfo, migrations
from services.database import connection, schema, stamp
from services.database.connection import Target
from services.errors import PiperError
from services.postgres import data_dirs, servers
from services.profiles import Profile, load_profiles
from services.project import ENV_VARIABLE, Project
from services.users import store


@dataclass(frozen=True)
class EnvironmentStatus:
    """One environment at a glance (`invoke status`)."""

    name: str
    server: str
    protected: bool
    selected: bool
    initialized: bool
    running: bool
    pid: int | None
    location: str
    data_dir: str | None
    port: int | None
    database: str
    stamp: str | None
    revision: str | None
    head: str
    users: int | None
    branch_expected: str
    branch_current: str | None
    problem: str | None
    last_backup: str | None = None
    """The newest database backup in backups/<env>/, if any."""
    configured_port: int | None = None
    """The port the profile and its overrides name; differs from `port` (where the running server
    really listens, from its postmaster.pid) until the server is restarted."""
    overrides: tuple[str, ...] = ()
    """The local overrides applied to the profile (`database.port=5499 (PIPER_ALPHA_PORT in .env)`)."""
    notes: tuple[str, ...] = ()
    """What the user should know that is not a failure: a port change waiting for a restart."""


def environment_statuses(project: Project, selected: str | None = None) -> list[EnvironmentStatus]:
    """Return the status of every environment of the project."""
    head = migrations.head_revision(project)
    branch = gitinfo.current_branch(project.root)
    selected = selected or os.environ.get(ENV_VARIABLE) or envfile.read(project.env_file).get(ENV_VARIABLE)
    return [_status(p, project, head, branch, selected) for p in load_profiles(project)]


def _status(profile: Profile, project: Project, head: str, branch: str | None, selected: str | None) -> EnvironmentStatus:
    base = {"name": profile.name, "server": profile.database.server, "protected": profile.protected,
            "selected": profile.name == selected, "database": profile.database.name, "head": head,
            "branch_expected": profile.branch, "branch_current": branch}
    facts: dict[str, object] = {"initialized": False, "running": False, "pid": None, "data_dir": None,
                                "port": None, "stamp": None, "revision": None, "users": None, "problem": None}
    location = ""
    notes: list[str] = []
    try:
        if profile.hosted and not credentials.known_secrets(project).get(profile.database.url_env or ""):
            location = f"not configured (${profile.database.url_env} is not set)"
        elif profile.hosted:
            target = credentials.target(profile, project, "owner")
            location = target.display()
            facts["initialized"] = True
            facts.update(_database_facts(target, store.table_for(profile)))
            facts["running"] = True
        else:
            server = servers.locate(profile, project)
            state = servers.state(server)
            location = f"{server.socket_dir} port {server.port}" if state.initialized else "-"
            facts.update(initialized=state.initialized, running=state.running, pid=state.pid,
                         data_dir=str(server.project_data_dir), port=server.port, configured_port=server.configured_port)
            if state.running and server.port != server.configured_port:
                notes.append(f"the server runs on port {server.port} (its postmaster.pid), but port {server.configured_port} "
                             f"is configured; every command uses {server.port} until you restart it: `invoke db-stop "
                             f"--env {profile.name}` then `invoke db-start --env {profile.name}`")
            if state.running:
                facts.update(_database_facts(credentials.target(profile, project, "owner", socket_dir=str(server.socket_dir)),
                                             store.table_for(profile)))
    except PiperError as exc:
        facts["problem"] = str(exc)
    return EnvironmentStatus(location=location, last_backup=_last_backup(profile, project),  # type: ignore[arg-type]
                             overrides=tuple(o.describe() for o in profile.overrides), notes=tuple(notes), **base, **facts)


def orphaned_clusters() -> list[data_dirs.OrphanedCluster]:
    """Return the clusters no checkout links to any more (root only; see data_dirs.orphaned_clusters)."""
    return data_dirs.orphaned_clusters()


def _last_backup(profile: Profile, project: Project) -> str | None:
    backups = db_backups.list_backups(profile, project)
    return str(backups[0].path) if backups else None


def _database_facts(target: Target, users_table: str) -> dict[str, object]:
    with connection.connect(target) as conn:
        found = stamp.read_stamp(conn)
        revision = schema.current_revision(conn)
        users = None
        if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{users_table}",)).fetchone()[0]:  # type: ignore[index]
            users = conn.execute(f"SELECT count(*) FROM public.{users_table}").fetchone()[0]  # type: ignore[index]
    problem = None
    if found is not None and found != target.environment:
        problem = f"database is stamped for environment {found!r}"
    return {"stamp": found, "revision": revision, "users": users, "problem": problem}
