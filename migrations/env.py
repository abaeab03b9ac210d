"""Alembic's environment, for piper-ops itself and for the `alembic` command alike.

Two ways in, one set of comparison settings (so `alembic check` and setup's drift test agree):

- piper-ops (services/database/schema.py) hands over a SQLAlchemy connection in
  `config.attributes["connection"]`, already inside the caller's transaction: the migration
  commits with the stamp and the grants that follow it, or not at all. No profile is selected.
- the `alembic` command (alembic.ini at the project root): the environment is selected as
  everywhere else (`-x env=NAME`, then $PIPER_ENV, then PIPER_ENV in .env), the connection is
  the owner role's from the profile and `.env` (never a URL in alembic.ini), and the database
  must carry that environment's stamp. In the migration's transaction, before it: the stamp is
  checked; after it: the application role gets back its grants and limits, as setup gives them
  (services/database/roles.py). upgrade, downgrade and stamp hold the environment's lock, so a
  hand upgrade never runs alongside setup or a restore; a protected environment (production) is
  never downgraded by hand: roll forward. `--sql` (offline) selects nothing and connects nowhere.

`alembic revision --autogenerate` numbers the new revision after the last (0004 after 0003) unless
`--rev-id` names one.

An error of piper-ops is one line on stderr and exit 1 (refused) or 2 (bad usage), as everywhere
else; `alembic --raiseerr` shows the traceback instead.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import nullcontext
from logging.config import fileConfig
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The checkout this file lives in, for an `alembic` whose environment has not installed piper-ops.
_CODE_ROOT = Path(__file__).resolve().parent.parent
if (_CODE_ROOT / "services").is_dir() and str(_CODE_ROOT) not in sys.path:
    sys.path.insert(0, str(_CODE_ROOT))

from alembic import context  # noqa: E402

from services.database.models import Base  # noqa: E402

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from services.profiles import Profile
    from services.project import Project

log = logging.getLogger("alembic.env")

#: The only -x argument: `alembic -x env=NAME ...`.
ENV_ARGUMENT = "env"


def comparison_settings() -> dict[str, Any]:
    """How autogenerate and `alembic check` compare the models with the database."""
    return {
        "target_metadata": Base.metadata,
        "compare_type": True,
        "compare_server_default": True,
        "process_revision_directives": number_revision,
    }


def number_revision(ctx: Any, revision: Any, directives: list[Any]) -> None:
    """Give a new revision the next number (0004 after 0003) unless `--rev-id` chose one."""
    options = context.config.cmd_opts
    if not directives or options is None or getattr(options, "rev_id", None):
        return
    numbers = [int(script.revision) for script in context.script.walk_revisions() if script.revision.isdigit()]
    directives[0].rev_id = f"{max(numbers, default=0) + 1:04d}"


def run_on_connection(connection: Connection) -> None:
    """Run the command (upgrade, check, current, ...) on piper-ops' connection, in its transaction."""
    context.configure(connection=connection, transactional_ddl=True, **comparison_settings())
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """`alembic upgrade A:B --sql`: print the SQL; no environment is selected, no database touched."""
    context.configure(dialect_name="postgresql", literal_binds=True, transactional_ddl=True, **comparison_settings())
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """The `alembic` command on the selected environment's database; piper-ops errors become one line."""
    from services.errors import EnvironmentMismatchError, PiperError

    try:
        _run_on_selected_environment()
    except PiperError as exc:
        if getattr(context.config.cmd_opts, "raiseerr", False):
            raise
        message = str(exc)
        if isinstance(exc, EnvironmentMismatchError):  # its fix, in this command's words
            message = message.replace("use --env ", f"use -x {ENV_ARGUMENT}=")
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:  # the transaction was rolled back on the way out
        print("error: interrupted; nothing was committed", file=sys.stderr)
        raise SystemExit(1) from None


def _run_on_selected_environment() -> None:
    from services import credentials
    from services.environments import lifecycle, locking

    if context.config.get_main_option("sqlalchemy.url"):
        log.warning("sqlalchemy.url in %s is ignored: the URL comes from the selected environment's profile "
                    "and .env; remove it", context.config.config_file_name)
    profile, project = _selected_profile()
    log.info("environment %r: %s", profile.name, credentials.target(profile, project, "owner").display())
    command = _command_name()
    if command == "downgrade":  # what a downgrade drops, no backup brings back into a live environment
        lifecycle.check_not_protected(profile, "roll forward instead: a new revision that undoes the change "
                                               "(`alembic revision -m ...`), then `alembic upgrade head`")
    # What changes the schema waits for setup, a restore or another upgrade of the environment
    # (and then reads .env again: setup may have given the owner a new password meanwhile).
    changes = command in ("upgrade", "downgrade", "stamp")
    with locking.environment_lock(profile, project) if changes and not profile.hosted else nullcontext():
        if command == "downgrade" and not profile.hosted:  # a destructive command backs up first (invariant 2)
            _back_up_before_downgrade(profile, project)
        _run_as_owner(profile, project)


def _back_up_before_downgrade(profile: Profile, project: Project) -> None:
    from services import db_backups
    from services.postgres import data_dirs, servers

    server = servers.prepare(profile, project)
    data_dirs.check_owner(server)
    taken, _ = db_backups.take_backup(profile, project, server, kind="pre-downgrade")
    print(f"{profile.name}: database backed up to {taken.path} (pre-downgrade; `invoke db-restore --pick 1 --env "
          f"{profile.name}` brings it back)", file=sys.stderr)


def _command_name() -> str | None:
    """Return the name of the alembic command being run (upgrade, current, check, ...)."""
    function = getattr(context.config.cmd_opts, "cmd", (None,))[0]
    return getattr(function, "__name__", None)


def _run_as_owner(profile: Profile, project: Project) -> None:
    import psycopg
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.pool import NullPool

    from services import credentials
    from services.database import connection, roles, stamp
    from services.environments import provisioning
    from services.errors import ClusterError

    owner = credentials.target(profile, project, "owner")
    app_role = provisioning.application_role(profile, project)
    raw = connection.connect(owner)  # a server that is down is one line with its fix
    engine = create_engine("postgresql+psycopg://", creator=lambda: raw, poolclass=NullPool)
    applied: list[Any] = []
    try:
        with engine.connect() as sa_connection:
            context.configure(connection=sa_connection, transactional_ddl=True,
                              on_version_apply=lambda **step: applied.append(step), **comparison_settings())
            with context.begin_transaction():
                # In the migration's transaction: no other process can stamp it in between.
                stamp.check_stamp(raw, profile.name, owner.display())
                context.run_migrations()
                if applied and app_role is not None and app_role != owner.user:
                    roles.limit_application_role(raw, app_role)
    except (OperationalError, psycopg.OperationalError) as exc:  # the server went away mid-command
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
        raise ClusterError(f"the connection to environment {profile.name!r} at {owner.display()} was lost: {reason}; "
                           "nothing was committed: check `invoke status`, then run the command again") from None
    finally:
        engine.dispose()
        raw.close()
    if applied and app_role is not None and app_role != owner.user:
        log.info("gave %s back its privileges (it may use the tables, never change the stamp)", app_role)


def _selected_profile() -> tuple[Profile, Project]:
    """Return the profile of `-x env=NAME`, else $PIPER_ENV, else PIPER_ENV in .env, and its project."""
    from services.errors import UsageError
    from services.profiles import load_profile, profile_names
    from services.project import ENV_VARIABLE, select_environment

    arguments = context.get_x_argument(as_dictionary=True)
    unknown = sorted(set(arguments) - {ENV_ARGUMENT})
    if unknown:
        raise UsageError(f"unknown -x argument {unknown[0]!r}; the only one is -x {ENV_ARGUMENT}=NAME")
    if ENV_ARGUMENT in arguments and not arguments[ENV_ARGUMENT]:
        raise UsageError(f"-x {ENV_ARGUMENT} needs a name; use -x {ENV_ARGUMENT}=NAME")
    project = _project()
    known = profile_names(project)
    try:
        name = select_environment(arguments.get(ENV_ARGUMENT), project, known)
    except UsageError as exc:
        if not str(exc).startswith("no environment selected"):
            raise
        raise UsageError(
            f"no environment selected; pass -x {ENV_ARGUMENT}=NAME (e.g. `alembic -x {ENV_ARGUMENT}=alpha current`), "
            f"set {ENV_VARIABLE}, or run `invoke setup --env NAME` (profiles: {', '.join(known) or 'none found'})"
        ) from None
    return load_profile(name, project), project


def _project() -> Project:
    """$PIPER_ROOT when set, else the project alembic.ini sits in, else the checkout of this code."""
    from services.project import ROOT_VARIABLE, Project, current_project

    ini = context.config.config_file_name
    if not os.environ.get(ROOT_VARIABLE) and ini:
        folder = Path(ini).resolve().parent
        if (folder / "environments").is_dir():
            return Project(folder)
    return current_project()


def main() -> None:
    config = context.config
    given = config.attributes.get("connection")
    if given is not None:  # piper-ops: the caller's connection, inside the caller's transaction
        run_on_connection(given)
        return
    if config.config_file_name:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    if context.is_offline_mode():
        run_migrations_offline()
    else:
        run_migrations_online()


main()
