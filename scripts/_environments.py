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
from services.project import current_project


def run_setup(args: argparse.Namespace) -> int:
    profile, project = _cli.selected_profile(args.env)
    plan = steps.plan_setup_steps(profile, project, args.data_file)  # bad input stops before any change
    report = setup.setup_environment(profile, project, allow_branch_mismatch=args.allow_branch_mismatch)
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if report.changes:
        print(f"{report.environment}: set up")
        for change in report.changes:
            print(f"  - {change}")
    else:
        print(f"{report.environment}: the database is already in place; nothing changed")
    print(f"database: {report.location} (schema {report.revision})")
    steps.run_setup_steps(plan, _cli.run_script)
    for step in plan.skipped:
        print(f"skipped optional step {step}; run setup with --data-file FILE to include it")
    print("next: `invoke status` to see every environment; "
          "`python scripts/create_test_alpha_user.py --username NAME` to add a user")
    return 0


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
    result = lifecycle.teardown_environment(profile, project, confirmed=True)
    if not result.existed:
        print(f"{profile.name}: there was no server to tear down; nothing changed")
        return 0
    if result.backup is not None:
        print(f"{profile.name}: database backed up to {result.backup}")
    print(f"{profile.name}: server stopped, {result.data_dir} deleted, its secrets removed from .env")
    return 0


def run_db_start(args: argparse.Namespace) -> int:
    profile, project = _cli.selected_profile(args.env)
    state = lifecycle.start_environment(profile, project)
    print(f"{profile.name}: server running (pid {state.pid})")
    return 0


def run_db_stop(args: argparse.Namespace) -> int:
    profile, project = _cli.selected_profile(args.env)
    stopped = lifecycle.stop_environment(profile, project)
    print(f"{profile.name}: server stopped" if stopped else f"{profile.name}: server was not running")
    return 0


def run_db_backup(args: argparse.Namespace) -> int:
    profile, project = _cli.selected_profile(args.env)
    if args.list:
        backups = db_backups.list_backups(profile, project)
        if not backups:
            print(f"{profile.name}: no backups yet; run `invoke db-backup --env {profile.name}`")
        for backup in backups:
            print(f"{backup.taken:%Y-%m-%d %H:%M:%S}  {backup.size:>11}  {backup.path}")
        return 0
    result = lifecycle.backup_environment(profile, project)
    print(f"{profile.name}: backed up to {result.archive} (verified)")
    for path in result.rotated_out:
        print(f"  - rotated out {path.name} (backups: policy in {profile.source.name})")
    return 0


def run_db_restore(args: argparse.Namespace) -> int:
    profile, project = _cli.selected_profile(args.env)
    archive = Path(args.file).resolve() if args.file else None
    what = archive.name if archive else "the newest backup"
    _cli.confirm_by_name(profile.name, f"restoring replaces the database of {profile.name!r}",
                         f"Replace the database of {profile.name!r} with {what} (a backup is taken first)?",
                         yes=args.yes)
    result = lifecycle.restore_environment(profile, project, archive, from_env=args.from_env, confirmed=True)
    print(f"{profile.name}: backed up the database first to {result.backup_before}")
    print(f"{profile.name}: restored {result.archive}")
    for change in result.changes:
        print(f"  - {change}")
    return 0


