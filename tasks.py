"""piper-ops tasks: one local PostgreSQL database per environment (ADR-040).

Tasks only parse flags, call one function in services/ (or a script's main), and render the
result. Nothing here imports a database driver at load time, so `invoke --list` stays fast.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TypeVar

from invoke import Exit
from invoke import task as invoke_task

T = TypeVar("T")


def task(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """invoke's @task, with long flags only.

    Its automatic one-letter flags meant different things in different tasks (-d was --debug in
    one, --data-file in another) and ran out of letters (import-user's --dry-run became `-`).
    """
    return invoke_task(auto_shortflags=False, **options)


ENV_HELP = "environment to act on (default: $PIPER_ENV, then PIPER_ENV in .env)"
DEBUG_HELP = "show tracebacks and debug logging"


def _edge(debug: bool, call: Callable[[], T]) -> T:
    """Run call, turning a piper-ops error into one `error: ...` line and its exit code."""
    from scripts._cli import configure_logging
    from services.errors import PiperError

    configure_logging(debug)
    try:
        return call()
    except PiperError as exc:
        if debug:
            raise
        raise Exit(f"error: {exc}", code=exc.exit_code) from None


def _selected(env: str | None) -> tuple[Any, Any]:
    from services.profiles import load_profile, profile_names
    from services.project import current_project, select_environment

    project = current_project()
    return load_profile(select_environment(env, project, profile_names(project)), project), project


def _run_script(name: str, argv: list[str]) -> int:
    """Run scripts/<name>.py's main(argv): a task and its script share one code path."""
    module = importlib.import_module(f"scripts.{name}")
    code: int = module.main(argv)
    return code


def _script_task(name: str, argv: list[str]) -> None:
    code = _run_script(name, argv)
    if code:
        raise Exit(code=code)


def _confirm_by_name(name: str, consequence: str, question: str) -> None:
    """Ask the user to type the environment's name; without a terminal, require --yes."""
    if not sys.stdin.isatty():
        raise Exit(f"error: {consequence}; run it in a terminal to confirm, or pass --yes", code=1)
    if input(f"{question} Type {name} to confirm: ").strip() != name:
        raise Exit("error: not confirmed; nothing was changed", code=1)


def _flags(**values: Any) -> list[str]:
    """Turn keyword values into script flags: None is left out, True is a bare flag."""
    argv: list[str] = []
    for key, value in values.items():
        if value is None or value is False:
            continue
        argv.append("--" + key.replace("_", "-"))
        if value is not True:
            argv.append(str(value))
    return argv


@task(help={
    "env": "environment to set up: dev, alpha, tester or production",
    "allow_branch_mismatch": "go on when the checkout's branch differs from a profile that refuses it",
    "data_file": "JSON file of personal data for profiles whose setup steps take one",
    "debug": DEBUG_HELP,
})
def setup(c, env=None, allow_branch_mismatch=False, data_file=None, debug=False):
    """Provision an environment's PostgreSQL, migrate, stamp, create its default user, write .env."""
    from services import environments

    def _do() -> Any:
        profile, project = _selected(env)
        plan = environments.plan_setup_steps(profile, project, data_file)  # bad input stops before any change
        return plan, environments.setup_environment(profile, project, allow_branch_mismatch=allow_branch_mismatch)

    plan, report = _edge(debug, _do)
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if report.changes:
        print(f"{report.environment}: set up")
        for change in report.changes:
            print(f"  - {change}")
    else:
        print(f"{report.environment}: the database is already in place; nothing changed")
    print(f"database: {report.location} (schema {report.revision})")
    _edge(debug, lambda: environments.run_setup_steps(plan, _run_script))
    for step in plan.skipped:
        print(f"skipped optional step {step}; run setup with --data-file FILE to include it")
    print("next: `invoke status` to see every environment; `python scripts/create_test_alpha_user.py --username NAME` to add a user")


@task(help={"json": "print machine-readable JSON instead of a table", "debug": DEBUG_HELP})
def status(c, json_=False, debug=False):
    """Show every environment at a glance: server, schema revision vs head, users, branch."""
    from services import environments
    from services.project import current_project

    rows = _edge(debug, lambda: environments.environment_statuses(current_project()))
    if json_:
        print(json.dumps([asdict(row) for row in rows], indent=2))
        return
    header = ("", "ENV", "SERVER", "STATE", "DATABASE", "SCHEMA", "USERS", "BRANCH (want/have)", "WHERE")
    table = [header]
    for row in rows:
        state = "running" if row.running else ("stopped" if row.initialized else "not set up")
        if row.server == "hosted":
            configured = not row.location.startswith("not configured")
            state = ("reachable" if row.revision is not None or row.stamp else "unreachable") if configured else "not configured"
        schema = f"{row.revision or '-'}/{row.head}" + ("" if row.revision == row.head else " (behind)" if row.revision else "")
        table.append(("*" if row.selected else "", row.name, row.server, state, row.database, schema,
                      "-" if row.users is None else str(row.users),
                      f"{row.branch_expected}/{row.branch_current or '-'}", row.location))
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for r in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    for row in rows:
        if row.last_backup:
            print(f"{row.name}: last backup {row.last_backup}")
        if row.problem:
            print(f"{row.name}: {row.problem}", file=sys.stderr)


@task(help={"env": ENV_HELP, "yes": "do not ask for confirmation", "debug": DEBUG_HELP})
def teardown(c, env=None, yes=False, debug=False):
    """Back up, then stop an environment's server and delete its database (asks first; refuses protected)."""
    from services import environments

    profile, project = _edge(debug, lambda: _selected(env))
    _edge(debug, lambda: environments.check_not_protected(profile, "it cannot be torn down"))
    if not yes:
        _confirm_by_name(profile.name, f"tearing down {profile.name!r} deletes its database",
                         f"Delete environment {profile.name!r} and all of its data (a backup is taken first)?")
    result = _edge(debug, lambda: environments.teardown_environment(profile, project, confirmed=True))
    if not result.existed:
        print(f"{profile.name}: there was no server to tear down; nothing changed")
        return
    if result.backup is not None:
        print(f"{profile.name}: database backed up to {result.backup}")
    print(f"{profile.name}: server stopped, {result.data_dir} deleted, its secrets removed from .env")


@task(name="db-start", help={"env": ENV_HELP, "debug": DEBUG_HELP})
def db_start(c, env=None, debug=False):
    """Start an environment's PostgreSQL server (recovers after a crash)."""
    from services import environments

    def _do() -> Any:
        profile, project = _selected(env)
        return profile, environments.start_environment(profile, project)

    profile, state = _edge(debug, _do)
    print(f"{profile.name}: server running (pid {state.pid})")


@task(name="db-stop", help={"env": ENV_HELP, "debug": DEBUG_HELP})
def db_stop(c, env=None, debug=False):
    """Stop an environment's PostgreSQL server."""
    from services import environments

    def _do() -> Any:
        profile, project = _selected(env)
        return profile, environments.stop_environment(profile, project)

    profile, stopped = _edge(debug, _do)
    print(f"{profile.name}: server stopped" if stopped else f"{profile.name}: server was not running")


@task(name="db-backup", help={
    "env": ENV_HELP, "list": "list the environment's backups with their dates and sizes instead",
    "debug": DEBUG_HELP,
})
def db_backup(c, env=None, list=False, debug=False):
    """Back up an environment's database (verified pg_dump in backups/<env>/) and rotate old backups."""
    from services import db_backups, environments

    profile, project = _edge(debug, lambda: _selected(env))
    if list:
        backups = db_backups.list_backups(profile, project)
        if not backups:
            print(f"{profile.name}: no backups yet; run `invoke db-backup --env {profile.name}`")
        for backup in backups:
            print(f"{backup.taken:%Y-%m-%d %H:%M:%S}  {backup.size:>11}  {backup.path}")
        return
    result = _edge(debug, lambda: environments.backup_environment(profile, project))
    print(f"{profile.name}: backed up to {result.archive} (verified)")
    for path in result.rotated_out:
        print(f"  - rotated out {path.name} (backups: policy in {profile.source.name})")


@task(name="db-restore", help={
    "env": ENV_HELP, "file": "the archive to restore (default: the environment's newest backup)",
    "from_env": "accept an archive of this other environment (it is stamped for this one once restored)",
    "yes": "do not ask for confirmation", "debug": DEBUG_HELP,
})
def db_restore(c, env=None, file=None, from_env=None, yes=False, debug=False):
    """Restore a database backup over an environment, after backing up what is there (asks first)."""
    from pathlib import Path

    from services import environments

    profile, project = _edge(debug, lambda: _selected(env))
    archive = Path(file).resolve() if file else None
    if not yes:
        what = archive.name if archive else "the newest backup"
        _confirm_by_name(profile.name, f"restoring replaces the database of {profile.name!r}",
                         f"Replace the database of {profile.name!r} with {what} (a backup is taken first)?")
    result = _edge(debug, lambda: environments.restore_environment(profile, project, archive, from_env=from_env,
                                                                   confirmed=True))
    print(f"{profile.name}: backed up the database first to {result.backup_before}")
    print(f"{profile.name}: restored {result.archive}")
    for change in result.changes:
        print(f"  - {change}")


@task(name="create-user", help={
    "env": ENV_HELP, "username": "the user's login name (lower-case; required)",
    "email": "the user's email (default: USERNAME@example.invalid)", "display_name": "the name shown to people",
    "debug": DEBUG_HELP,
})
def create_user(c, username=None, env=None, email=None, display_name=None, debug=False):
    """Create a user in an environment (same as scripts/create_test_alpha_user.py)."""
    _script_task("create_test_alpha_user", _flags(username=username, email=email, display_name=display_name,
                                                  env=env, debug=debug))


@task(name="backup-config", help={
    "dry_run": "show what would be written and removed; change nothing",
    "list": "list the backups of config/PIPER.md with their dates and sizes",
    "private": "write the backup to private/config-backups/ (git-ignored), for content the audit flags",
    "env": "environment whose rotation policy to use (default: $PIPER_ENV, .env, else the built-in default)",
    "debug": DEBUG_HELP,
})
def backup_config(c, dry_run=False, list=False, private=False, env=None, debug=False):
    """Back up config/PIPER.md as PIPER.md.backup-YYYYMMDD and rotate old backups."""
    _script_task("backup_config", _flags(dry_run=dry_run, list=list, private=private, env=env, debug=debug))


@task(name="restore-config", help={
    "date": "(required) YYYYMMDD (that day's newest backup) or YYYYMMDD-HHMMSS; see backup-config --list",
    "private": "keep the backup of the current file in private/config-backups/ (needed when the audit flags it)",
    "env": "environment whose rotation policy to use (default: $PIPER_ENV, .env, else the built-in default)",
    "debug": DEBUG_HELP,
})
def restore_config(c, date=None, private=False, env=None, debug=False):
    """Restore config/PIPER.md from a dated backup, backing up the current file first."""
    _script_task("restore_config", _flags(date=date, private=private, env=env, debug=debug))


@task(name="audit-piper-md", help={
    "all": "scan every git-tracked text file (except the profiles that define the rules)",
    "history": "scan every past version of PIPER.md and its backups in git history",
    "staged": "scan the staged content of PIPER.md and its backups (as the pre-commit hook does)",
    "format": "output format: text, json or sarif",
    "allowlist": "file of accepted findings (default: config/audit-allowlist.yaml)",
    "env": ENV_HELP, "debug": DEBUG_HELP,
})
def audit_piper_md(c, all=False, history=False, staged=False, format="text", allowlist=None, env=None, debug=False):
    """Audit config/PIPER.md and its backups for personal data: exit 0 clean, 1 found, 2 could not run."""
    _script_task("audit_piper_md", _flags(all=all, history=history, staged=staged, format=format,
                                          allowlist=allowlist, env=env, debug=debug))


@task(name="migrate-personal-data", help={
    "username": "the user whose data this is (required)",
    "data_file": "personal-data JSON file (default: the profile's personal_data.data_file)",
    "skip_migration": "only verify that the user exists and print its id",
    "dry_run": "show what would change; write nothing",
    "env": ENV_HELP, "debug": DEBUG_HELP,
})
def migrate_personal_data(c, username=None, data_file=None, skip_migration=False, dry_run=False, env=None, debug=False):
    """Deep-merge a personal-data file into a user's preferences (same as scripts/migrate_personal_data.py)."""
    _script_task("migrate_personal_data", _flags(username=username, data_file=data_file, skip_migration=skip_migration,
                                                 dry_run=dry_run, env=env, debug=debug))


@task(name="export-user", help={
    "username": "the user to export (required)",
    "keys": "comma-separated top-level preference keys to export (default: all)",
    "output": "write to this file (mode 0600) instead of standard output",
    "env": ENV_HELP, "debug": DEBUG_HELP,
})
def export_user(c, username=None, keys=None, output=None, env=None, debug=False):
    """Export one user's data as checksummed JSON (same as scripts/export_user_data.py)."""
    _script_task("export_user_data", _flags(username=username, keys=keys, output=output, env=env, debug=debug))


@task(name="import-user", help={
    "username": "the user to import (required; must match the document)",
    "email": "the user's email in this environment (default: the document's)",
    "data": "the export document, or - for standard input (required)",
    "merge": "on conflict, deep-merge the file into the existing data",
    "replace": "on conflict, replace the existing data with the file's",
    "yes": "do not ask for confirmation",
    "dry_run": "only show what would change",
    "env": ENV_HELP, "debug": DEBUG_HELP,
})
def import_user(c, username=None, data=None, email=None, merge=False, replace=False, yes=False, dry_run=False, env=None,
                debug=False):
    """Import a user's exported data, with consent (same as scripts/import_user_data.py)."""
    _script_task("import_user_data", _flags(username=username, email=email, data=data, merge=merge, replace=replace,
                                            yes=yes, dry_run=dry_run, env=env, debug=debug))


@task(name="delete-user", help={
    "username": "the user to delete (required)", "yes": "do not ask for confirmation", "env": ENV_HELP, "debug": DEBUG_HELP,
})
def delete_user(c, username=None, yes=False, env=None, debug=False):
    """Delete a user and all their data, exported first (same as scripts/delete_user.py)."""
    _script_task("delete_user", _flags(username=username, yes=yes, env=env, debug=debug))


@task(name="accept-invitation", help={
    "token": "the token from the invitation email (default: asked); given here it is visible to other processes",
    "password_stdin": "read the password from standard input (first line)",
    "env": ENV_HELP, "debug": DEBUG_HELP,
})
def accept_invitation(c, token=None, password_stdin=False, env=None, debug=False):
    """Set a production password with an invitation token (same as scripts/accept_invitation.py)."""
    _script_task("accept_invitation", _flags(token=token, password_stdin=password_stdin, env=env, debug=debug))


@task(name="verify-isolation", help={"env": ENV_HELP, "debug": DEBUG_HELP})
def verify_isolation(c, env=None, debug=False):
    """Check that users and environments are isolated: exit 0 only when all checks hold."""
    _script_task("test_user_data_isolation", _flags(env=env, debug=debug))
