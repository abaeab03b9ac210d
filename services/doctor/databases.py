"""The doctor's checks that connect: the passwords in `.env` open their roles, the database is this
environment's (its stamp) and at the migrations' head. Nothing is changed: a refused password is
reported, never reset (that is `invoke setup`'s work)."""

from __future__ import annotations

from services import credentials, migrations
from services.database import connection, roles, schema, stamp
from services.doctor.checks import Check, fail, ok, warn
from services.environments import access
from services.errors import PiperError
from services.profiles import Profile
from services.project import Project

#: The roles whose passwords `.env` holds, and the database each is checked on.
_ROLES = (("admin", "postgres"), ("owner", None), ("app", None))


def password_check(profile: Profile, project: Project, socket_dir: str | None) -> Check:
    """Each role's password in `.env` (or the shell) is the one its server takes."""
    setup = f"`invoke setup --env {profile.name}`"
    if profile.hosted:
        return _hosted_password_check(profile, project)
    known = credentials.known_secrets(project)
    missing = [credentials.password_key(profile.name, r) for r, _ in _ROLES
               if not known.get(credentials.password_key(profile.name, r))]
    if missing:
        return fail("passwords", f"{project.env_file.name} holds no {', '.join(missing)}",
                    f"run {setup}: it gets you back into your own server with new passwords (the data is kept)")
    if socket_dir is None:
        return warn("passwords", "not checked: the server is not running", f"`invoke db-start --env {profile.name}`")
    refused = []
    for role, dbname in _ROLES:
        target = credentials.target(profile, project, role, dbname=dbname, socket_dir=socket_dir)
        try:
            if not access.can_authenticate(target):
                refused.append(roles.ROLE_NAMES[role])
        except PiperError as exc:
            return fail("passwords", f"cannot check the passwords: {exc}", f"run {setup}")
    if refused:
        return fail("passwords", f"the server refuses the password in .env of {', '.join(refused)} (.env was "
                    "restored from an old copy, or edited)",
                    f"run {setup}: it gives the roles the passwords in .env again and changes nothing else",
                    refused=refused)
    return ok("passwords", f"the passwords in .env open {', '.join(roles.ROLE_NAMES[r] for r, _ in _ROLES)}")


def hosted_basics(profile: Profile, project: Project) -> Check:
    """A hosted environment without connecting: whether its URL is set."""
    variable = profile.database.url_env or ""
    if credentials.known_secrets(project).get(variable):
        return ok("hosted", f"hosted; ${variable} is set (`invoke doctor --env {profile.name}` connects to it)")
    return ok("hosted", f"hosted; not configured here (${variable} is not set)")


def _hosted_password_check(profile: Profile, project: Project) -> Check:
    variables = [v for v in (profile.database.url_env, profile.database.app_url_env) if v]
    known = credentials.known_secrets(project)
    unset = [v for v in variables if not known.get(v)]
    if unset:
        return fail("passwords", f"{', '.join(unset)} not set", "put the hosted database's URLs in .env or the shell")
    refused = []
    for role in ("owner", "app"):
        try:
            target = credentials.target(profile, project, role)
            if not access.can_authenticate(target):
                refused.append(target.url_env or role)
        except PiperError as exc:
            return fail("passwords", f"cannot reach the hosted database: {exc}", "check the URL and the network")
    if refused:
        return fail("passwords", f"the hosted server refuses the password of {', '.join(refused)}",
                    "check the URLs' passwords")
    return ok("passwords", f"the URLs in {', '.join(variables)} open the hosted database (TLS)")


def schema_check(profile: Profile, project: Project, socket_dir: str | None, head: str) -> Check:
    """The database carries this environment's stamp and is at the migrations' head."""
    setup = f"`invoke setup --env {profile.name}`"
    if socket_dir is None and not profile.hosted:
        return warn("schema", "not checked: the server is not running", f"`invoke db-start --env {profile.name}`",
                    head=head)
    try:
        target = credentials.target(profile, project, "owner", socket_dir=socket_dir)
        with connection.connect(target) as conn:
            found = stamp.read_stamp(conn)
            revision = schema.current_revision(conn)
    except PiperError as exc:
        return fail("schema", f"cannot read the schema revision: {exc}", f"see the message; then {setup}", head=head)
    data = {"revision": revision, "head": head, "stamp": found}
    if found is not None and found != profile.name:
        return fail("schema", f"database {profile.database.name} is stamped for environment {found!r}, not "
                    f"{profile.name!r}", f"use --env {found}, or give environments/{profile.name}.yaml its own "
                    "database settings", **data)
    if found is None or revision is None:
        return fail("schema", f"database {profile.database.name} is not set up (no stamp or no schema)",
                    f"run {setup}", **data)
    if revision != head:
        return fail("schema", f"the schema is at revision {revision}; this checkout's head is {head}",
                    f"run {setup} (it migrates to the head); if the database is ahead, check out the branch that "
                    "migrated it", **data)
    return ok("schema", f"stamped {profile.name!r}, at the head revision {head}", **data)


def head_revision(project: Project) -> str:
    """Return the migrations' head without writing anything (doctor writes nothing, not even the cache)."""
    return migrations.head_revision(project, refresh=False)
