"""The isolation check: proof that each user sees only their data and no environment sees another's.

`verify_isolation` runs every check and returns each result; it changes nothing that outlives it
(temporary fake users it needs are removed afterwards, even when a check fails, and its probes of
other users' rows run in a transaction that is rolled back).
"""

from __future__ import annotations

import re
import secrets
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from services import audit, credentials
from services.database import connection, roles, sessions, stamp
from services.errors import PiperError
from services.postgres import servers
from services.profiles import AuditTerm, Profile, load_profiles
from services.project import Project
from services.user_context_service import UserContextService
from services.users.documents import deep_merge
from services.users.store import table_for

#: Preference keys whose string values identify a person; they must never appear in PIPER.md.
_IDENTIFYING_KEY = re.compile(r"name|email|mail|phone|org|company|employer|address|city|location|team|manager", re.I)
_TEMP_PREFIX = "isolation-check-"


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str


def verify_isolation(profile: Profile, project: Project) -> list[CheckResult]:
    """Run every isolation check against the environment; return one result per check."""
    with _at_least_two_users(profile, project) as usernames:
        checks: list[tuple[str, Callable[[], CheckResult]]] = [
            ("piper-md", lambda: _check_piper_md(profile, project, usernames)),
            ("contexts", lambda: _check_contexts(profile, project, usernames)),
            ("row-level-security", lambda: _check_row_level_security(profile, project, usernames)),
            ("stamp", lambda: _check_stamp(profile, project)),
            ("access", lambda: _check_access(profile, project)),
        ]
        return [_run(name, check) for name, check in checks]


def _run(name: str, check: Callable[[], CheckResult]) -> CheckResult:
    """Run one check; a check that cannot run has failed (and says why)."""
    try:
        return check()
    except PiperError as exc:
        return CheckResult(name, False, f"could not run: {exc}")


@contextmanager
def _at_least_two_users(profile: Profile, project: Project) -> Iterator[list[str]]:
    """Yield two or more usernames, creating temporary fake users when fewer exist."""
    from psycopg.types.json import Jsonb

    table = table_for(profile)
    created: list[str] = []
    owner = credentials.target(profile, project, "owner")
    try:
        with connection.connect(owner) as conn:
            names = [r[0] for r in conn.execute(f"SELECT username FROM {table} ORDER BY username LIMIT 50")]
            while len(names) + len(created) < 2:
                name = f"{_TEMP_PREFIX}{secrets.token_hex(4)}"
                marker = f"isolation-marker-{secrets.token_hex(8)}"
                conn.execute(f"INSERT INTO {table} (username, email, preferences) VALUES (%s, %s, %s)",
                             (name, f"{name}@example.invalid", Jsonb({"isolation_marker": marker, "name": f"Fake {name}"})))
                created.append(name)
            conn.commit()
        yield names + created
    finally:
        if created:
            with connection.connect(owner) as conn:
                conn.execute(f"DELETE FROM {table} WHERE username = ANY(%s)", (created,))
                conn.commit()


def _check_piper_md(profile: Profile, project: Project, usernames: list[str]) -> CheckResult:
    path = project.config_dir / "PIPER.md"
    try:
        content = path.read_bytes()
    except OSError as exc:
        return CheckResult("piper-md", False, f"cannot read {path} ({exc.strerror})")
    ruleset = audit.build_rules(load_profiles(project))
    terms = _identifying_terms(profile, project, usernames)
    rules = audit.RuleSet(ruleset.rules + audit.term_rules(terms, f"users of {profile.name}"), ruleset.sources)
    findings = audit.audit_content(content, rules, label=str(path.relative_to(project.root)))
    if findings:
        where = ", ".join(f"{f.path}:{f.line}:{f.column} {f.kind} {f.redacted}" for f in findings[:5])
        return CheckResult("piper-md", False, f"{len(findings)} piece(s) of personal data in PIPER.md: {where}")
    return CheckResult("piper-md", True, f"config/PIPER.md holds no personal data ({len(ruleset.rules)} audit rules, "
                                         f"{len(terms)} terms from {len(usernames)} users' data)")


def _identifying_terms(profile: Profile, project: Project, usernames: list[str]) -> list[AuditTerm]:
    table = table_for(profile)
    terms: list[AuditTerm] = []
    with connection.connect(credentials.target(profile, project, "owner")) as conn:
        for username, email, display_name, preferences in conn.execute(
                f"SELECT username, email, display_name, preferences FROM {table} WHERE username = ANY(%s)", (usernames,)):
            terms.append(AuditTerm(username, "username"))
            terms.append(AuditTerm(email, "email"))
            if display_name:
                terms.append(AuditTerm(display_name, "name"))
            terms.extend(AuditTerm(value, "other") for value in _identifying_values(preferences))
    return [t for t in terms if any(ch.isalnum() for ch in t.term) and len(t.term.encode()) <= 200]


def _identifying_values(value: Any, key: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for child_key, child in value.items():
            yield from _identifying_values(child, child_key)
    elif isinstance(value, list):
        for child in value:
            yield from _identifying_values(child, key)
    elif isinstance(value, str) and len(value.strip()) >= 4 and (_IDENTIFYING_KEY.search(key) or value.startswith("isolation-marker-")):
        yield value.strip()


def _check_contexts(profile: Profile, project: Project, usernames: list[str]) -> CheckResult:
    service = UserContextService(profile, project)
    generic = service.generic_config()
    table = table_for(profile)
    with connection.connect(credentials.target(profile, project, "owner")) as conn:
        preferences = dict(conn.execute(f"SELECT username, preferences FROM {table} WHERE username = ANY(%s)", (usernames,)))
    for username in usernames:
        context = service.get_context(username)
        if context != deep_merge(generic, preferences[username]):
            return CheckResult("contexts", False, f"the context of {username!r} is not exactly PIPER.md merged with "
                                                  "that user's own preferences")
        # And again through the cache, after another user's context was built.
        other = next(u for u in usernames if u != username)
        service.get_context(other)
        if service.get_context(username) != context:
            return CheckResult("contexts", False, f"the cached context of {username!r} changed after reading {other!r}")
    return CheckResult("contexts", True, f"{len(usernames)} users: each context is exactly PIPER.md merged with that "
                                         "user's own preferences, also when cached")


def _check_row_level_security(profile: Profile, project: Project, usernames: list[str]) -> CheckResult:
    import psycopg

    a, b = usernames[0], usernames[1]
    table = table_for(profile)
    app = credentials.target(profile, project, "app")
    with connection.connect(app) as conn:
        flags = conn.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user").fetchone()
        owner = conn.execute("SELECT tableowner = current_user FROM pg_tables WHERE tablename = %s", (table,)).fetchone()
        if flags is None or flags[0] or flags[1] or (owner and owner[0]):
            return CheckResult("row-level-security", False, f"{app.user} is a superuser, may bypass RLS, or owns {table}; "
                                                            "connect the application as a role that owns nothing")
        reachable = roles.closed_tables_reachable(conn)
        if reachable:
            return CheckResult("row-level-security", False, f"{app.user} can reach {', '.join(reachable)}, which only "
                                                            f"admin tasks may; run `invoke setup --env {profile.name}`")
        unseen = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
        sessions.act_as(conn, a)
        try:
            read = conn.execute(f"SELECT count(*) FROM {table} WHERE username = %s", (b,)).fetchone()[0]  # type: ignore[index]
            updated = conn.execute(f"UPDATE {table} SET preferences = preferences WHERE username = %s", (b,)).rowcount
            deleted = conn.execute(f"DELETE FROM {table} WHERE username = %s", (b,)).rowcount
            own = conn.execute(f"SELECT count(*) FROM {table} WHERE username = %s", (a,)).fetchone()[0]  # type: ignore[index]
        except psycopg.errors.InsufficientPrivilege as exc:
            conn.rollback()
            return CheckResult("row-level-security", False, f"{app.user} lacks privileges on {table}: {exc.diag.message_primary}")
        finally:
            conn.rollback()  # the probes above change nothing, whatever they managed to do
    detail = (f"as {a!r}, {app.user} read {read}, updated {updated} and deleted {deleted} of {b!r}'s rows "
              f"(sees its own: {own}); with no acting user it sees {unseen} rows")
    return CheckResult("row-level-security", (read, updated, deleted, unseen, own) == (0, 0, 0, 0, 1), detail)


def _check_stamp(profile: Profile, project: Project) -> CheckResult:
    owner = credentials.target(profile, project, "owner")
    with connection.connect(owner) as conn:
        found = stamp.read_stamp(conn)
    if found != profile.name:
        return CheckResult("stamp", False, f"{owner.display()} is stamped {found!r}, not {profile.name!r}")
    problem = _app_can_change_stamp(profile, project)
    if problem:
        return CheckResult("stamp", False, problem)
    mine = _database_identity(profile, project)
    for other in load_profiles(project):
        if other.name != profile.name and mine is not None and _database_identity(other, project) == mine:
            return CheckResult("stamp", False, f"profile {other.name!r} points at the same server and database as "
                                               f"{profile.name!r} ({other.source}); give each environment its own")
    return CheckResult("stamp", True, f"{profile.database.name} is stamped {profile.name!r}; no other profile points at it")


def _app_can_change_stamp(profile: Profile, project: Project) -> str | None:
    """Return a problem when the application role can rewrite the stamp (tried, then rolled back)."""
    import psycopg

    try:
        app = credentials.target(profile, project, "app")
    except PiperError:
        return None  # no application role to try (hosted without app_url_env); the RLS check says so
    with connection.connect(app) as conn:
        try:
            conn.execute("UPDATE piper_metadata SET value = value WHERE key = 'environment'")
        except psycopg.errors.InsufficientPrivilege:
            return None
        finally:
            conn.rollback()
    return (f"{app.user} may change the environment stamp; run `invoke setup --env {profile.name}` to restore its "
            "privileges")


def _database_identity(profile: Profile, project: Project) -> tuple[str, str] | None:
    """Return (server, database) for comparing profiles: one server per port or data directory."""
    if profile.hosted:
        try:
            where = credentials.target(profile, project, "owner")
        except PiperError:
            return None
        return (f"{where.host}:{where.port or 5432}", where.dbname)
    return (f"port:{profile.database.port}", profile.database.name)


def _check_access(profile: Profile, project: Project) -> CheckResult:
    problems: list[str] = []
    env_file = project.env_file
    if env_file.exists() and stat.S_IMODE(env_file.stat().st_mode) & 0o077:
        problems.append(f"{env_file.name} is readable by others (chmod 600 {env_file})")
    if profile.hosted:
        sslmode = credentials.target(profile, project, "owner").sslmode
        if sslmode not in ("verify-full", "verify-ca", "require"):
            problems.append(f"the connection does not require TLS (sslmode={sslmode})")
        return _access_result(problems, f"TLS required (sslmode={sslmode}); .env private")
    for directory in (project.data_root, servers.locate(profile, project).data_dir):
        if directory.exists() and stat.S_IMODE(directory.stat().st_mode) & 0o077:
            problems.append(f"{directory} is open to other accounts (chmod 700 {directory})")
    admin = credentials.target(profile, project, "admin", dbname="postgres")
    with connection.connect(admin) as conn:
        trust = conn.execute("SELECT count(*) FROM pg_hba_file_rules WHERE auth_method IN ('trust', 'password', 'md5')"
                             ).fetchone()[0]  # type: ignore[index]
        listen = conn.execute("SHOW listen_addresses").fetchone()[0]  # type: ignore[index]
        socket_mode = conn.execute("SHOW unix_socket_permissions").fetchone()[0]  # type: ignore[index]
    if trust:
        problems.append(f"pg_hba.conf has {trust} rule(s) without scram-sha-256")
    if listen not in ("", "127.0.0.1", "::1", "localhost"):
        problems.append(f"the server listens on {listen!r}, beyond loopback")
    return _access_result(problems, f"scram-sha-256 only, listening on {listen or 'the socket only'}, socket mode "
                                    f"{socket_mode}, .env and data directories private")


def _access_result(problems: list[str], ok: str) -> CheckResult:
    return CheckResult("access", not problems, "; ".join(problems) if problems else ok)

