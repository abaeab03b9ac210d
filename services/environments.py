"""Environments as a whole: set one up, start or stop its server, tear it down, report on all.

`setup_environment` is the one command of ADR-040's onboarding: provision (or reuse) the local
server, create the database and roles, migrate to head and stamp it in one transaction, select
it in `.env`, then run the profile's setup steps. Every step checks before it acts, so a second
run changes nothing.
"""

from __future__ import annotations

import logging
import os
import secrets as token_source
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from services import envfile, gitinfo, migrations, stamp
from services.database import connection
from services.errors import ClusterError, ConfirmationRequired, PiperError, UsageError
from services.postgres import data_dirs, servers
from services.profiles import Profile, load_profiles
from services.project import ENV_VARIABLE, Project
from services.users import table_for

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

#: How long a second `invoke setup` of the same environment waits for the first one.
LOCK_TIMEOUT = 600.0

StepRunner = Callable[[str, list[str]], int]


@dataclass
class SetupReport:
    """What `setup_environment` found and did; `changes` is empty when all was in place."""

    environment: str
    location: str
    revision: str
    changes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


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
        with environment_lock(profile, project):
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
    admin = connection.target(profile, project, "admin", dbname="postgres", socket_dir=sockets)
    initial = data_dirs.initial_password(server)
    if initial is not None:
        _set_password(replace(admin, password=initial), servers.SUPERUSER, secrets["admin"])
        data_dirs.forget_initial_password(server)
    _bootstrap_roles(admin, profile, secrets, changes, reset=reset)
    owner = connection.target(profile, project, "owner", socket_dir=sockets)
    revision = _migrate_and_stamp(owner, profile, project, changes)
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
    owner = connection.target(profile, project, "owner")
    revision = _migrate_and_stamp(owner, profile, project, changes)
    return SetupReport(profile.name, owner.display(), revision, changes)


def _ensure_secrets(profile: Profile, project: Project, *, initialized: bool,
                    changes: list[str]) -> tuple[dict[str, str], frozenset[str]]:
    """Return the environment's passwords, generating missing ones, and the roles whose password
    was generated for a server that already exists (setup then sets it on the role)."""
    known = connection.secrets(project)
    roles = ("admin", "owner", "app")
    found = {role: known.get(connection.password_key(profile.name, role)) for role in roles}
    if all(found.values()):
        return {role: str(value) for role, value in found.items()}, frozenset()
    if initialized and not found["admin"]:
        raise UsageError(
            f"{profile.database.data_dir} exists but {project.env_file} holds no "
            f"{connection.password_key(profile.name, 'admin')}; restore .env from your backup, "
            f"or run `invoke teardown --env {profile.name}` to start over (it keeps a copy of the files in backups/)"
        )
    created = {role: value or token_source.token_urlsafe(32) for role, value in found.items()}
    # The passwords reach .env before the server exists, so a crash can never leave a server
    # whose password is known nowhere.
    envfile.update(project.env_file, {connection.password_key(profile.name, r): created[r] for r in roles})
    changes.append(f"generated passwords for {profile.name} in {project.env_file.name} (mode 0600)")
    reset = frozenset(role for role, value in found.items() if not value) if initialized else frozenset()
    return {role: str(value) for role, value in created.items()}, reset


def _set_password(admin: connection.Target, role: str, password: str) -> None:
    """Give a role a new password (superuser connection)."""
    with connection.connect(admin, autocommit=True) as conn:
        _role_password(conn, "ALTER ROLE {} PASSWORD {}", role, password)


def _role_password(conn: psycopg.Connection, statement: str, role: str, password: str) -> None:
    """Run a CREATE/ALTER ROLE ... PASSWORD statement that never reaches the server log."""
    from psycopg import sql

    # Even when the statement fails: log_min_error_statement would print it, password and all.
    conn.execute("SET log_statement = 'none'")
    conn.execute("SET log_min_error_statement = 'panic'")
    conn.execute(sql.SQL(statement).format(sql.Identifier(role), sql.Literal(password)))


def _bootstrap_roles(admin: connection.Target, profile: Profile, secrets: dict[str, str], changes: list[str],
                     *, reset: frozenset[str] = frozenset()) -> None:
    from psycopg import sql

    owner, app, dbname = connection.ROLE_NAMES["owner"], connection.ROLE_NAMES["app"], profile.database.name
    with connection.connect(admin, autocommit=True) as conn:
        roles = {r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", ([owner, app],))}
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone() is not None
        if roles == {owner, app} and exists and not reset:
            return
        for role, options in ((owner, "LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB"),
                              (app, "LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOBYPASSRLS NOINHERIT")):
            key = "owner" if role == owner else "app"
            if role not in roles:
                _role_password(conn, "CREATE ROLE {} " + options + " PASSWORD {}", role, secrets[key])
                changes.append(f"created role {role}")
            elif key in reset:
                # .env had lost this password: the new one from .env goes onto the role.
                _role_password(conn, "ALTER ROLE {} PASSWORD {}", role, secrets[key])
                changes.append(f"set the new password of role {role}")
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8' TEMPLATE template0").format(
                sql.Identifier(dbname), sql.Identifier(owner)))
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(dbname)))
            conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(
                sql.Identifier(dbname), sql.Identifier(app)))
            changes.append(f"created database {dbname}")


#: Tables the application role may read but never change, and tables it may not touch at all:
#: the record of data moves and the invitations are for admin tasks (the owner role) only.
READ_ONLY_FOR_APP = ("piper_metadata", "alembic_version")
CLOSED_TO_APP = ("user_data_events", "user_invitations")


def _protect_bookkeeping(raw: psycopg.Connection, app_role: str) -> None:
    """The application role may read which environment and revision this is, never change them;
    the record of data moves and the invitations stay out of its reach altogether."""
    from psycopg import sql

    role = sql.Identifier(app_role)
    read_only = sql.SQL(", ").join(map(sql.Identifier, READ_ONLY_FOR_APP))
    closed = sql.SQL(", ").join(map(sql.Identifier, CLOSED_TO_APP))
    raw.execute(sql.SQL("REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {} FROM {}").format(read_only, role))
    raw.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(closed, role))


def _application_role(profile: Profile, project: Project) -> str | None:
    """Return the application role's name: piper_app locally; for a hosted database the user of
    the URL in database.app_url_env, or None when the profile names no such URL."""
    if not profile.hosted:
        return connection.ROLE_NAMES["app"]
    if not profile.database.app_url_env or not connection.secrets(project).get(profile.database.app_url_env):
        return None
    return connection.target(profile, project, "app").user or None


def _grant_application_role(raw: psycopg.Connection, app_role: str) -> None:
    """Let the application role use what the owner's migrations create.

    Runs in the migration's transaction, so a database is never migrated without its grants.
    """
    from psycopg import sql

    app = sql.Identifier(app_role)
    raw.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(app))
    raw.execute(sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {}").format(app))
    raw.execute(sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {}").format(app))
    raw.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}").format(app))


def _migrate_and_stamp(owner: connection.Target, profile: Profile, project: Project, changes: list[str]) -> str:
    head = migrations.head_revision(project)
    app_role = _application_role(profile, project)
    if app_role == owner.user:
        app_role = None
    with connection.connect(owner) as conn:
        found = stamp.check_stamp(conn, profile.name, owner.display(), allow_unstamped=True)
        current = migrations.current_revision(conn)
        limits_hold = app_role is None or current is None or _application_limits_hold(conn, app_role)
        conn.rollback()
    if found == profile.name and current == head and limits_hold:
        return head
    with connection.engine(owner) as eng, eng.begin() as sa_conn:
        raw = sa_conn.connection.driver_connection
        # Re-check inside the transaction: another process may have stamped it meanwhile.
        stamp.check_stamp(raw, profile.name, owner.display(), allow_unstamped=True)
        if app_role is not None:
            _grant_application_role(raw, app_role)
        migrations.upgrade(sa_conn, project, "head")
        stamp.write_stamp(raw, profile.name)
        if app_role is not None:
            _protect_bookkeeping(raw, app_role)
    if current != head:
        changes.append(f"migrated {profile.database.name} from {current or 'empty'} to {head}")
    if found is None:
        changes.append(f"stamped {profile.database.name} as environment {profile.name!r}")
    if not limits_hold:
        changes.append(f"restored the privileges of {app_role} (it may use the tables, never change the stamp)")
    return head


def _application_limits_hold(conn: psycopg.Connection, app_role: str) -> bool:
    """Return True when the application role can use the user tables and cannot change the stamp.

    A hand restore (pg_restore --clean) or a role added later can leave it otherwise; setup then
    puts the privileges right even when the schema is already at head.
    """
    checks = ["has_table_privilege(%(r)s, 'public.alpha_users', 'SELECT')"]
    checks += [f"NOT has_table_privilege(%(r)s, 'public.{t}', 'UPDATE')" for t in READ_ONLY_FOR_APP]
    # Tables of a newer revision may not exist yet while the schema is behind.
    checks += [f"(to_regclass('public.{t}') IS NULL OR NOT has_table_privilege(%(r)s, 'public.{t}', "
               "'SELECT, INSERT, UPDATE, DELETE'))" for t in CLOSED_TO_APP]
    row = conn.execute("SELECT " + " AND ".join(checks), {"r": app_role}).fetchone()
    return bool(row and row[0])


@dataclass(frozen=True)
class StepPlan:
    """The setup steps to run, as (script, argv), and the optional ones skipped (with why)."""

    steps: tuple[tuple[str, tuple[str, ...]], ...]
    skipped: tuple[str, ...]


def plan_setup_steps(profile: Profile, project: Project, data_file: str | None = None) -> StepPlan:
    """Work out the profile's setup steps before anything is provisioned.

    A data file a step needs but that does not exist is an error now, not after a server was
    created and selected: bad input changes nothing.
    """
    import string

    # A data file given at setup is relative to where the user stands; the profile's, to the project.
    if data_file:
        chosen, origin = Path(data_file).resolve(), "--data-file"
    elif profile.personal_data.data_file:
        chosen, origin = project.root / profile.personal_data.data_file, f"personal_data.data_file of {profile.name}"
    else:
        chosen, origin = None, ""
    values = {"username": profile.default_user.username, "email": profile.default_user.email,
              "data_file": str(chosen) if chosen else ""}
    steps: list[tuple[str, tuple[str, ...]]] = []
    skipped: list[str] = []
    for step in profile.setup_steps:
        needed = {name for arg in step.args for _, name, _, _ in string.Formatter().parse(arg) if name}
        missing = sorted(name for name in needed if not values.get(name))
        if missing and step.optional:
            skipped.append(f"{step.script} (no {', '.join(missing)})")
            continue
        if missing:
            raise UsageError(f"environment {profile.name!r} needs a data file at setup; pass --data-file PATH")
        if "data_file" in needed and chosen is not None and not chosen.is_file():
            raise UsageError(f"{chosen} ({origin}) does not exist; put the personal-data file there "
                             "(shape in docs/USER_DATA.md), or pass --data-file FILE to setup")
        steps.append((step.script, tuple(arg.format(**values) for arg in step.args) + ("--env", profile.name)))
    return StepPlan(tuple(steps), tuple(skipped))


def run_setup_steps(plan: StepPlan, run_step: StepRunner) -> None:
    """Run the planned setup steps in order through run_step(script, argv); stop at the first failure."""
    for script, args in plan.steps:
        code = run_step(script, list(args))
        if code != 0:
            failure = PiperError(f"setup step `{script} {' '.join(args)}` failed (exit {code}); fix it and run setup again")
            failure.exit_code = code  # bad input stays exit 2, a refusal exit 1
            raise failure


@contextmanager
def environment_lock(profile: Profile, project: Project, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the environment's lock: two commands never provision or stop one server at once."""
    from filelock import FileLock, Timeout

    project.data_root.mkdir(mode=0o700, exist_ok=True)
    project.data_root.chmod(0o700)  # data and secrets: closed to other accounts, whatever made it
    lock = FileLock(str(project.data_root / f".{profile.name}.lock"))
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


def start_environment(profile: Profile, project: Project) -> servers.ServerState:
    """Start the environment's server (recovering from a crash); return its state."""
    with environment_lock(profile, project):
        server = servers.prepare(profile, project)
        return servers.start(server, config_file=profile.source)


def stop_environment(profile: Profile, project: Project) -> bool:
    """Stop the environment's server; return False when it was not running."""
    with environment_lock(profile, project):
        return servers.stop(servers.locate(profile, project))


def check_not_protected(profile: Profile, refusal: str) -> None:
    """Refuse a destructive operation on a protected environment; `refusal` says what to do instead."""
    if profile.protected:
        raise PiperError(f"environment {profile.name!r} is protected (protected: true in {profile.source}); {refusal}")


@dataclass(frozen=True)
class TeardownResult:
    data_dir: Path
    backup: Path | None
    existed: bool = True


def teardown_environment(profile: Profile, project: Project, *, confirmed: bool) -> TeardownResult:
    """Back up the database, then stop the server, delete its data and forget its secrets.

    The backup comes first and must succeed: a failed backup leaves everything as it was.
    """
    check_not_protected(profile, "it cannot be torn down")
    if not confirmed:
        raise ConfirmationRequired(f"tearing down {profile.name!r} deletes its database; confirm, or pass --yes")
    from services import db_backups

    with environment_lock(profile, project):
        server = servers.prepare(profile, project)
        backup = None
        existed = server.project_data_dir.exists() or server.project_data_dir.is_symlink()
        if servers.state(server).initialized:
            if _has_passwords(profile, project):
                servers.start(server, config_file=profile.source)
                if _database_exists(profile, project, server):
                    backup = db_backups.backup_database(profile, project, server)
            else:
                # .env lost its passwords: no dump is possible, so keep a cold copy of the files.
                servers.stop(server)
                backup = db_backups.archive_data_directory(profile, project, server)
        data_dirs.remove(server)
        changes: dict[str, str | None] = {connection.password_key(profile.name, r): None for r in ("admin", "owner", "app")}
        if envfile.read(project.env_file).get(ENV_VARIABLE) == profile.name:
            changes[ENV_VARIABLE] = None
        if project.env_file.exists():
            envfile.update(project.env_file, changes)
    return TeardownResult(server.project_data_dir, backup, existed)


@dataclass(frozen=True)
class BackupResult:
    archive: Path
    rotated_out: tuple[Path, ...]


@dataclass(frozen=True)
class RestoreResult:
    archive: Path
    backup_before: Path
    changes: tuple[str, ...]


def backup_environment(profile: Profile, project: Project) -> BackupResult:
    """Take a verified pg_dump archive of the environment's database, then rotate old archives."""
    from services import db_backups

    with environment_lock(profile, project):
        server = _running_server(profile, project)
        archive = db_backups.backup_database(profile, project, server)
        dropped = db_backups.rotate_backups(profile, project)
    return BackupResult(archive, tuple(b.path for b in dropped))


def restore_environment(profile: Profile, project: Project, archive: Path | None = None, *,
                        from_env: str | None = None, confirmed: bool) -> RestoreResult:
    """Back the database up, then restore an archive over it (the newest of the environment's by
    default) in one transaction; then migrate it to head and restore the application role's limits."""
    from services import db_backups

    check_not_protected(profile, "restore it with your hosting provider's tools")
    if archive is None:
        newest = db_backups.list_backups(profile, project)
        if not newest:
            raise UsageError(f"environment {profile.name!r} has no backups in backups/{profile.name}/; "
                             f"take one with `invoke db-backup --env {profile.name}` or pass --file")
        archive = newest[0].path
    if not confirmed:
        raise ConfirmationRequired(f"restoring {archive.name} replaces the database of {profile.name!r}; confirm, or pass --yes")
    with environment_lock(profile, project):
        server = _running_server(profile, project)
        before = db_backups.restore_backup(profile, project, server, archive, from_env=from_env)
        changes: list[str] = []
        owner = connection.target(profile, project, "owner", socket_dir=str(server.socket_dir))
        _migrate_and_stamp(owner, profile, project, changes)
    return RestoreResult(archive, before, tuple(changes))


def _running_server(profile: Profile, project: Project) -> servers.Server:
    server = servers.prepare(profile, project)
    if not servers.state(server).initialized:
        raise UsageError(f"environment {profile.name!r} has no database server; run `invoke setup --env {profile.name}`")
    servers.start(server, config_file=profile.source)
    return server


def _has_passwords(profile: Profile, project: Project) -> bool:
    known = connection.secrets(project)
    return all(known.get(connection.password_key(profile.name, role)) for role in ("admin", "owner"))


def _database_exists(profile: Profile, project: Project, server: servers.Server) -> bool:
    admin = connection.target(profile, project, "admin", dbname="postgres", socket_dir=str(server.socket_dir))
    with connection.connect(admin) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (profile.database.name,)).fetchone() is not None


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
    try:
        if profile.hosted and not connection.secrets(project).get(profile.database.url_env or ""):
            location = f"not configured (${profile.database.url_env} is not set)"
        elif profile.hosted:
            target = connection.target(profile, project, "owner")
            location = target.display()
            facts["initialized"] = True
            facts.update(_database_facts(target, table_for(profile)))
            facts["running"] = True
        else:
            server = servers.locate(profile, project)
            state = servers.state(server)
            location = f"{server.socket_dir} port {server.port}" if state.initialized else "-"
            facts.update(initialized=state.initialized, running=state.running, pid=state.pid,
                         data_dir=str(server.project_data_dir), port=server.port)
            if state.running:
                facts.update(_database_facts(connection.target(profile, project, "owner", socket_dir=str(server.socket_dir)),
                                             table_for(profile)))
    except PiperError as exc:
        facts["problem"] = str(exc)
    return EnvironmentStatus(location=location, last_backup=_last_backup(profile, project), **base, **facts)  # type: ignore[arg-type]


def _last_backup(profile: Profile, project: Project) -> str | None:
    archives = [p for p in (project.root / "backups" / profile.name).glob("*") if p.suffix in (".dump", ".gz")]
    return str(max(archives, key=lambda p: p.stat().st_mtime)) if archives else None


def _database_facts(target: connection.Target, users_table: str) -> dict[str, object]:
    with connection.connect(target) as conn:
        found = stamp.read_stamp(conn)
        revision = migrations.current_revision(conn)
        users = None
        if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{users_table}",)).fetchone()[0]:  # type: ignore[index]
            users = conn.execute(f"SELECT count(*) FROM public.{users_table}").fetchone()[0]  # type: ignore[index]
    problem = None
    if found is not None and found != target.environment:
        problem = f"database is stamped for environment {found!r}"
    return {"stamp": found, "revision": revision, "users": users, "problem": problem}
