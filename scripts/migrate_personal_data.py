"""Migrate a user's personal data into their preferences (ADR-040).

    python scripts/migrate_personal_data.py --username USER --env dev             # the profile's data file
    python scripts/migrate_personal_data.py --username alfy --skip-migration     # only check the user exists
    python scripts/migrate_personal_data.py --username tester123 --data-file tester_data.json [--dry-run]

The data file's shape is documented in docs/USER_DATA.md; it must name the user it belongs to.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a command
    gc.disable()  # start-up only makes objects that live to the end; _cli.run_command turns it back on
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts import _cli  # noqa: E402
from services import users  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    """Migrate (or verify) one user's personal data; return the exit code."""
    cli = _cli.parser("Deep-merge a personal-data file into a user's preferences, in one transaction.")
    cli.add_argument("--username", required=True, help="the user whose data this is")
    cli.add_argument("--data-file", type=Path, help="personal-data JSON file (default: the profile's personal_data.data_file)")
    cli.add_argument("--skip-migration", action="store_true", help="only verify that the user exists and print its id")
    cli.add_argument("--dry-run", action="store_true", help="show what would change; write nothing")
    return _cli.run(cli, argv, _migrate)


def _migrate(args: argparse.Namespace) -> int:
    profile, project = _cli.selected_profile(args.env)
    if args.skip_migration:
        user_id = users.find_user_id(profile, project, args.username)
        print(f"user {args.username} exists in {profile.name}: id {user_id}; checked only, no personal data migrated")
        return 0
    result = users.migrate_personal_data(profile, project, args.username, args.data_file, dry_run=args.dry_run)
    summary = users.dumps_summary(result.changes)
    if result.already_applied_at is not None:
        print(f"{result.source} was already migrated into {args.username} in {profile.name} on "
              f"{result.already_applied_at:%Y-%m-%d %H:%M} (sha256 {result.checksum[:12]}); nothing changed")
    elif args.dry_run:
        print(f"dry run: migrating {result.source} into {args.username} in {profile.name} would change preferences "
              f"({summary}); nothing was written")
    elif result.applied:
        print(f"migrated {result.source} into {args.username} in {profile.name} ({summary}); sha256 {result.checksum}")
    return 0


if __name__ == "__main__":
    _cli.run_command(main)
