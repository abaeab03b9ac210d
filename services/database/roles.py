"""The roles of an environment's database and what each may do: created, given passwords, granted.

Three roles live in every local server: the superuser `piper_admin` (setup only), the owner
`piper_owner` (migrations and admin tasks) and the application role `piper_app`, which owns
nothing, cannot bypass row-level security, may read which environment and revision this is but
never change them, and cannot reach the record of data moves or the invitations. Every function
works on a connection it is given; none reads settings of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import psycopg

Role = Literal["admin", "owner", "app"]

#: Role names inside every local server. Each environment has its own server, so the names can
#: repeat; the database name and the environment stamp tell the environments apart.
ROLE_NAMES: dict[str, str] = {"admin": "piper_admin", "owner": "piper_owner", "app": "piper_app"}
SUPERUSER = ROLE_NAMES["admin"]

#: Tables the application role may read but never change, and tables it may not touch at all:
#: the record of data moves and the invitations are for admin tasks (the owner role) only.
READ_ONLY_FOR_APP = ("piper_metadata", "alembic_version")
CLOSED_TO_APP = ("user_data_events", "user_invitations")

_ROLE_OPTIONS = {
    "owner": "LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB",
    "app": "LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOBYPASSRLS NOINHERIT",
}


def set_role_password(conn: psycopg.Connection, role: str, password: str, *, create_with: str | None = None) -> None:
    """ALTER a role's password (or, with create_with, CREATE the role with those options and the
    password), never letting the statement reach the server log."""
    from psycopg import sql

    # Even when the statement fails: log_min_error_statement would print it, password and all.
    conn.execute("SET log_statement = 'none'")
    conn.execute("SET log_min_error_statement = 'panic'")
    statement = "CREATE ROLE {} " + create_with + " PASSWORD {}" if create_with else "ALTER ROLE {} PASSWORD {}"
    conn.execute(sql.SQL(statement).format(sql.Identifier(role), sql.Literal(password)))


def database_exists(conn: psycopg.Connection, dbname: str) -> bool:
    """Return True when the server holds a database of that name."""
    return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone() is not None


def bootstrap(conn: psycopg.Connection, dbname: str, passwords: dict[str, str], *,
              reset: frozenset[str] = frozenset()) -> list[str]:
    """Create the owner and application roles and the database where missing; return what was done.

    conn is a superuser's, in autocommit. passwords maps "owner" and "app" to their passwords;
    roles named in reset exist but get the password given here (their old one was lost).
    """
    from psycopg import sql

    owner, app = ROLE_NAMES["owner"], ROLE_NAMES["app"]
    changes: list[str] = []
    found = {r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", ([owner, app],))}
    exists = database_exists(conn, dbname)
    if found == {owner, app} and exists and not reset and database_access_holds(conn, dbname, app):
        return changes
    for key in ("owner", "app"):
        role = ROLE_NAMES[key]
        if role not in found:
            set_role_password(conn, role, passwords[key], create_with=_ROLE_OPTIONS[key])
            changes.append(f"created role {role}")
        elif key in reset:
            set_role_password(conn, role, passwords[key])
            changes.append(f"set the new password of role {role}")
    if not exists:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8' TEMPLATE template0").format(
            sql.Identifier(dbname), sql.Identifier(owner)))
        changes.append(f"created database {dbname}")
    # Checked apart from the creation: a run killed between CREATE DATABASE and these leaves a
    # database that everyone (or no one but its owner) may connect to; the next run puts it right.
    if not database_access_holds(conn, dbname, app):
        with conn.transaction():
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(dbname)))
            conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(
                sql.Identifier(dbname), sql.Identifier(app)))
        if exists:
            changes.append(f"gave {app} (and no one else) the right to connect to {dbname}")
    return changes


def database_access_holds(conn: psycopg.Connection, dbname: str, app: str) -> bool:
    """Return True when the application role may connect to dbname (and make temporary tables) and
    PUBLIC may do neither."""
    row = conn.execute("SELECT has_database_privilege(%(app)s, %(db)s, 'CONNECT') "
                       "AND has_database_privilege(%(app)s, %(db)s, 'TEMPORARY') "
                       "AND NOT has_database_privilege('public', %(db)s, 'CONNECT, TEMPORARY')",
                       {"app": app, "db": dbname}).fetchone()
    return bool(row and row[0])


def application_role_sql(app_role: str) -> list[str]:
    """Return the statements that give the application role what it may use and keep it from the rest.

    First the grants on what the owner's migrations create, then the limits: it may read which
    environment and revision this is, never change them, and the record of data moves and the
    invitations stay out of its reach (each only where its table exists: an older schema may
    lack one). Plain SQL, so that psql (a restore) and the driver (setup) run the very same.
    """
    app = _quoted(app_role)
    statements = [
        f"GRANT USAGE ON SCHEMA public TO {app}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {app}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {app}",
    ]
    for table, privileges in [*((t, "INSERT, UPDATE, DELETE, TRUNCATE") for t in READ_ONLY_FOR_APP),
                              *((t, "ALL") for t in CLOSED_TO_APP)]:
        revoke = f"REVOKE {privileges} ON public.{_quoted(table)} FROM {app}"
        statements.append(f"DO $piper$ BEGIN IF to_regclass('public.{table}') IS NOT NULL THEN "
                          f"EXECUTE '{revoke}'; END IF; END $piper$")
    return statements


def limit_application_role(conn: psycopg.Connection, app_role: str) -> None:
    """Run application_role_sql inside the caller's transaction (a migration's: never one without the other)."""
    for statement in application_role_sql(app_role):
        conn.execute(statement)


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def application_limits_hold(conn: psycopg.Connection, app_role: str) -> bool:
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


def closed_tables_reachable(conn: psycopg.Connection) -> list[str]:
    """Return the tables closed to the application role that the connection's role can reach."""
    return [name for name in CLOSED_TO_APP if conn.execute(
        "SELECT has_table_privilege(current_user, %s, 'SELECT, INSERT, UPDATE, DELETE')", (f"public.{name}",)
    ).fetchone()[0]]  # type: ignore[index]
