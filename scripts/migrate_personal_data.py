"""Migrate a user's personal data into their preferences (ADR-040).

    python scripts/migrate_personal_data.py --username USER --env dev             # the profile's data file
    python scripts/migrate_personal_data.py --username alfy --skip-migration     # only check the user exists
    python scripts/migrate_personal_data.py --username tester123 --data-file tester_data.json [--dry-run]
    python scripts/migrate_personal_data.py --username tester123 --data-file private/original.json [--yes]

The data file's shape is documented in docs/USER_DATA.md. A personal-data file names the user it
belongs to; the original product's bare object of preferences names nobody, so the command shows
its keys and the user it would go to, and asks first (--yes for scripts; setup never asks).
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a command
    gc.disable()  # start-up only makes objects that live to the end; _cli.run_command turns it back on
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts import _cli, _commands  # noqa: E402
from services.users import accounts, documents, personal_data  # noqa: E402


def run(args: argparse.Namespace) -> int:
    profile, project = _cli.selected_profile(args.env)
    if args.skip_migration:
        user_id = accounts.find_user_id(profile, project, args.username)
        print(f"user {args.username} exists in {profile.name}: id {user_id}; checked only, no personal data migrated")
        return 0
    document = personal_data.load_data_file(profile, project, args.username, args.data_file)
    confirmed = document.names_user or args.yes
    if not confirmed and not args.dry_run:
        # The file names no user: the user says whose it is. Unknown users and files already applied
        # are told first (a dry run), so that a re-run has nothing to ask.
        plan = personal_data.migrate_personal_data(profile, project, args.username, document, dry_run=True)
        if plan.already_applied_at is None:
            _cli.confirm(f"{plan.source} names no user; its keys: {documents.shown_keys(document.preferences)}. "
                         f"Migrate them into the preferences of {args.username} in {profile.name}?", yes=False)
        confirmed = True
    result = personal_data.migrate_personal_data(profile, project, args.username, document, dry_run=args.dry_run,
                                                 confirmed=confirmed)
    summary = documents.summarize_changes(result.changes)
    named = "" if result.names_user else " (a bare object of preferences, naming no user)"
    if result.already_applied_at is not None:
        print(f"{result.source} was already migrated into {args.username} in {profile.name} on "
              f"{result.already_applied_at:%Y-%m-%d %H:%M} (sha256 {result.checksum[:12]}); nothing changed")
    elif args.dry_run:
        print(f"dry run: migrating {result.source}{named} into {args.username} in {profile.name} would change "
              f"preferences ({summary}); nothing was written")
    elif result.applied:
        print(f"migrated {result.source}{named} into {args.username} in {profile.name} ({summary}); "
              f"sha256 {result.checksum}")
    return 0


COMMAND = _commands.MIGRATE_PERSONAL_DATA


def main(argv: list[str] | None = None) -> int:
    """Migrate (or verify) one user's personal data; return the exit code."""
    return COMMAND.main(argv)


if __name__ == "__main__":
    _cli.run_command(main)
