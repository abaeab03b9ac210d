"""An environment's database brought to its profile's state: roles, database, schema, stamp, limits.

Every step checks before it acts, so running it on a database that is already in place changes
nothing. The schema and the stamp move together in one transaction, with the grants the
application role needs and the limits it must keep.
"""

from __future__ import annotations

from services import credentials, migrations
from services.database import connection, roles, schema, stamp
from services.database.connection import Target
from services.errors import ClusterError
from services.profiles import Profile
from services.project import Project


def bootstrap_database(admin: Target, profile: Profile, passwords: dict[str, str], *,
                       reset: frozenset[str] = frozenset()) -> list[str]:
    """Create the owner and application roles and the environment's database where missing;
    give the roles in reset their new password. Return what was done."""
    with connection.connect(admin, autocommit=True) as conn:
        return roles.bootstrap(conn, profile.database.name, passwords, reset=reset)


def database_exists(admin: Target, dbname: str) -> bool:
    """Return True when the server holds dbname."""
    with connection.connect(admin) as conn:
        return roles.database_exists(conn, dbname)


def application_role(profile: Profile, project: Project) -> str | None:
    """Return the application role's name: piper_app locally; for a hosted database the user of
    the URL in database.app_url_env, or None when the profile names no such URL."""
    if not profile.hosted:
        return roles.ROLE_NAMES["app"]
    if not profile.database.app_url_env or not credentials.known_secrets(project).get(profile.database.app_url_env):
        return None
    return credentials.target(profile, project, "app").user or None


def migrate_and_stamp(owner: Target, profile: Profile, project: Project, changes: list[str]) -> str:
    """Migrate the database to head and stamp it as the profile's environment, with the application
    role's grants and limits, in one transaction; return the head. Nothing is done when all holds."""
    head = migrations.head_revision(project)
    app_role = application_role(profile, project)
    if app_role == owner.user:
        app_role = None
    with connection.connect(owner) as conn:
        found = stamp.check_stamp(conn, profile.name, owner.display(), allow_unstamped=True)
        current = schema.current_revision(conn)
        limits_hold = app_role is None or current is None or roles.application_limits_hold(conn, app_role)
        conn.rollback()
    if found == profile.name and current == head and limits_hold:
        return head
    import psycopg
    from sqlalchemy.exc import OperationalError

    try:
        with connection.engine(owner) as eng, eng.begin() as sa_conn:
            raw = sa_conn.connection.driver_connection
            # Re-check inside the transaction: another process may have stamped it meanwhile.
            stamp.check_stamp(raw, profile.name, owner.display(), allow_unstamped=True)
            schema.upgrade(sa_conn, project.migrations_dir, "head")
            stamp.write_stamp(raw, profile.name)
            if app_role is not None:
                roles.limit_application_role(raw, app_role)
    except (OperationalError, psycopg.OperationalError) as exc:  # the server went away mid-migration
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
        raise ClusterError(f"the connection to environment {profile.name!r} at {owner.display()} was lost during the "
                           f"migration: {reason}; nothing was committed: run `invoke setup --env {profile.name}` "
                           "again") from None
    if current != head:
        changes.append(f"migrated {profile.database.name} from {current or 'empty'} to {head}")
    if found is None:
        changes.append(f"stamped {profile.database.name} as environment {profile.name!r}")
    if not limits_hold:
        changes.append(f"restored the privileges of {app_role} (it may use the tables, never change the stamp)")
    return head
