"""What the commands of an environment as a whole do: setup, status, teardown, db-start/stop, db-backup/restore.

Their only door is invoke (`invoke setup --env alpha`); they are declared in scripts/_commands.py
like every other command, so they share its edge: one-line errors, exit codes, --debug, Ctrl-C,
SIGTERM, a closed standard output.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from scripts import _cli
from services import db_backups
from services.environments import lifecycle, setup, status, steps
from services.errors import PiperError, UsageError
from services.postgres import clients
from services.profiles import Profile
from services.project import Project, current_project


def run_setup(args: argparse.Namespace) -> int:
    profile, project = _cli.selected_profile(args.env)
    plan = steps.plan_setup_steps(profile, project, args.data_file)  # bad input stops before any change
    had_data = lifecycle.has_server(profile, project)  # a new database has nothing to back up yet
    # After setup, never before: setup first refuses a data directory or port that is not this
    # environment's own, and nothing may touch a cluster before that check.
    report = setup.setup_environment(profile, project, allow_branch_mismatch=args.allow_branch_mismatch)
    if had_data:
        _auto_backup(profile, project)
    print_setup_report(report)
    steps.run_setup_steps(plan, _cli.run_script)
    for step in plan.skipped:
        print(f"skipped optional step {step}; run setup with --data-file FILE to include it")
    for hint in next_steps(profile):
        print(f"next: {hint}")
    return 0


def print_setup_report(report: setup.SetupReport) -> None:
    """What setup found and did: its warnings (on standard error), its changes, where the database is."""
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if report.changes:
        print(f"{report.environment}: set up")
        for change in report.changes:
            print(f"  - {change}")
    else:
        print(f"{report.environment}: the database is already in place; nothing changed")
    print(f"database: {report.location} (schema {report.revision})")


def next_steps(profile: Profile) -> list[str]:
    """What a user of this environment really does after setting it up."""
    env = f"--env {profile.name}"
    if profile.hosted:  # users arrive in production by import with an invitation, never by create-user
        return [f"bring a tester's data over: `invoke import-user {env} --username U --email E --data exports/U.json` "
                "(exported on their laptop with `invoke export-user --username U --output exports/U.json`); "
                f"they set a password with `invoke accept-invitation {env}`",
                "`invoke status` to see every environment"]
    hints = [f"`invoke verify-isolation {env}` to prove the isolation holds"]
    if profile.personal_data.data_file:  # the PM's own environment: their data file and the shared PIPER.md
        hints.append("`invoke audit-piper-md` before you commit config/PIPER.md")
    else:
        hints.append(f"`invoke create-user {env} --username NAME` to add a user; "
                     f"`invoke export-user {env} --username U --output exports/U.json` to move one on")
    hints.append(f"`invoke db-backup {env}` to keep a copy; `invoke status` to see every environment")
    return hints


def run_status(args: argparse.Namespace) -> int:
    rows = status.environment_statuses(current_project())
    if args.json:
        print(json.dumps([asdict(row) for row in rows], indent=2))
        return 0
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
        for override in row.overrides:
            print(f"{row.name}: local override {override}")
        for note in row.notes:
            print(f"{row.name}: {note}")
        if row.problem:
            print(f"{row.name}: {row.problem}", file=sys.stderr)
    for orphan in status.orphaned_clusters():
        print(f"orphaned cluster of environment {orphan.environment!r} in {orphan.path}: no checkout links to it "
              f"(it was {orphan.project_data_dir}); clone the checkout there again and run `invoke setup --env "
              f"{orphan.environment}` to adopt it, or remove it with `sudo rm -r {orphan.path}`")
    return 0


def run_teardown(args: argparse.Namespace) -> int:
    profile, project = _cli.selected_profile(args.env)
    lifecycle.check_not_protected(profile, "it cannot be torn down")
    _cli.confirm_by_name(profile.name, f"tearing down {profile.name!r} deletes its database",
                         f"Delete environment {profile.name!r} and all of its data (a backup is taken first)?",
                         yes=args.yes)
    with _ProgressLine() as progress:
        result = lifecycle.teardown_environment(profile, project, confirmed=True, progress=progress)
    if not result.existed:
        print(f"{profile.name}: there was no server to tear down; nothing changed")
        return 0
    if result.backup is not None:
        print(f"{profile.name}: database backed up to {result.backup} (pre-teardown; after a new setup, "
              f"`invoke db-backup --list --env {profile.name}` numbers it for `invoke db-restore --pick N`)")
    print(f"{profile.name}: server stopped, {result.data_dir} deleted, its secrets removed from .env")
    return 0


def run_db_start(args: argparse.Namespace) -> int:
    profile, project = _cli.selected_profile(args.env)
    state = lifecycle.start_environment(profile, project)
    print(f"{profile.name}: server running (pid {state.pid})")
    _auto_backup(profile, project)
    return 0


def run_db_stop(args: argparse.Namespace) -> int:
    profile, project = _cli.selected_profile(args.env)
    _auto_backup(profile, project)  # while the server still runs
    stopped = lifecycle.stop_environment(profile, project)
    print(f"{profile.name}: server stopped" if stopped else f"{profile.name}: server was not running")
    return 0


def run_db_backup(args: argparse.Namespace) -> int:
    profile, project = _cli.selected_profile(args.env)
    if (args.list or args.verify_restore) and args.format == "plain":
        raise UsageError("--format plain writes a new backup; it does not go with --list or --verify-restore")
    if args.list:
        _print_backups(profile, project)
        return 0
    if args.verify_restore:
        with _ProgressLine() as progress:
            checked = lifecycle.verify_environment(profile, project, progress=progress)
        name = checked.backup.path.name
        if checked.dropped_leftover:
            print(f"{profile.name}: dropped the scratch database a killed verification left")
        if not checked.ok:
            raise PiperError(f"{name} did not restore as it was taken: {'; '.join(checked.differences)}; "
                             f"take a new backup with `invoke db-backup --env {profile.name}`")
        rows = sum(checked.found.values())
        print(f"{profile.name}: {name} restores: {len(checked.found)} tables, {rows} rows and the stamp "
              f"{checked.stamp_found!r} match (scratch database dropped; {checked.seconds:.1f} s)")
        return 0
    with _ProgressLine() as progress:
        result = lifecycle.backup_environment(profile, project, plain=args.format == "plain", progress=progress)
    print(f"{profile.name}: backed up to {result.archive} (verified)")
    if result.backup.plain:
        print(f"  plain SQL for other tools (db-restore reads the .dump archives); read by {db_backups.PLAIN_READERS}")
    _print_rotated(profile, result)
    return 0


def run_db_restore(args: argparse.Namespace) -> int:
    profile, project = _cli.selected_profile(args.env)
    if args.list:
        _print_backups(profile, project)
        return 0
    lifecycle.check_not_protected(profile, "restore it with your hosting provider's tools")
    choice = lifecycle.choose_archive(profile, project, file=Path(args.file).resolve() if args.file else None,
                                      pick=args.pick)
    chosen = choice.backup
    what = f"{chosen.path.name} ({chosen.kind}, taken {_when(chosen)})"
    print(f"{profile.name}: restoring {what}, chosen by {choice.how}")
    if choice.passed_over:
        newest = choice.passed_over[0]
        copies = "copy" if len(choice.passed_over) == 1 else "copies"
        print(f"  passed over {len(choice.passed_over)} newer safety {copies}"
              f" (newest: {newest.kind} of {_when(newest)}); restore one with --pick N, see "
              f"`invoke db-backup --list --env {profile.name}`")
    _cli.confirm_by_name(profile.name, f"restoring replaces the database of {profile.name!r}",
                         f"Replace the database of {profile.name!r} with {what} (a backup is taken first)?",
                         yes=args.yes)
    with _ProgressLine() as progress:
        result = lifecycle.restore_environment(profile, project, chosen, from_env=args.from_env, confirmed=True,
                                               progress=progress)
    print(f"{profile.name}: backed up the database first to {result.backup_before} (pre-restore; "
          f"`invoke db-restore --pick 1 --env {profile.name}` undoes this restore)")
    print(f"{profile.name}: restored {result.archive}")
    for change in result.changes:
        print(f"  - {change}")
    _print_rotated(profile, result)
    return 0


def _auto_backup(profile: Profile, project: Project) -> None:
    """Take the backup `backups.auto` asks for, if one is due; a failure is a warning (the command did its job)."""
    try:
        with _ProgressLine() as progress:
            result = lifecycle.auto_backup(profile, project, progress=progress)
    except PiperError as exc:
        print(f"warning: the automatic backup (backups.auto: {profile.backups.auto} in {profile.source.name}) "
              f"failed: {exc}", file=sys.stderr)
        return
    if result is not None:
        print(f"{profile.name}: automatic backup (backups.auto: {profile.backups.auto}) to {result.archive} (verified)")
        _print_rotated(profile, result)


def _print_rotated(profile: Profile, result: lifecycle.BackupResult | lifecycle.RestoreResult) -> None:
    for path in result.rotated_out:
        print(f"  - rotated out {path.name} (backups: policy in {profile.source.name})")


def _when(backup: db_backups.DatabaseBackup) -> str:
    return f"{backup.taken:%Y-%m-%d %H:%M:%S} UTC"


def _print_backups(profile: Profile, project: Project) -> None:
    backups = db_backups.list_backups(profile, project)
    if not backups:
        print(f"{profile.name}: no backups yet; run `invoke db-backup --env {profile.name}`")
        return
    print(f"{profile.name}: {len(backups)} backup(s) in backups/{profile.name}/, newest first "
          f"(`invoke db-restore --pick N` restores number N)")
    header = ("#", "TAKEN (UTC)", "SIZE", "KIND", "VERIFIED", "SCHEMA", "READ BY", "FILE")
    rows = [header]
    for number, backup in enumerate(backups, 1):
        verified = backup.verified
        check = "no" if verified is None else f"{'yes' if verified.get('ok') else 'FAILED'} {verified['at'][:10]}"
        rows.append((str(number), f"{backup.taken:%Y-%m-%d %H:%M:%S}", _size(backup.size),
                     backup.kind + (" (sql)" if backup.plain else ""), check, backup.revision or "?",
                     backup.readers, backup.path.name))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    print("archives are read by the pg_restore of the PostgreSQL major version that wrote them, or newer; an older "
          "one refuses them (docs/BACKUPS.md)")


def _size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable: the last unit always returns")


class _ProgressLine:
    """Renders a dump's or restore's progress as one line on a terminal (tqdm), only once it has taken a second.

    When standard error is no terminal it is None-like: the services then count nothing.
    """

    DELAY = 1.0

    def __init__(self) -> None:
        self.bar = None
        self.action: str | None = None
        self.started = 0.0

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self if sys.stderr.isatty() else None

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __call__(self, progress: clients.Progress) -> None:
        import time

        now = time.monotonic()
        if progress.action != self.action:
            self.__exit__()
            self.action, self.started = progress.action, now
        if self.bar is None:
            if now - self.started < self.DELAY:
                return
            from tqdm import tqdm

            self.bar = tqdm(total=progress.tables_total or None, desc=progress.action, unit=" tables",
                            file=sys.stderr, leave=False, dynamic_ncols=True)
        self.bar.n = progress.tables_done
        self.bar.set_postfix_str(_size(progress.bytes_done), refresh=False)
        self.bar.refresh()
