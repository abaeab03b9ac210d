"""Delete one user and all their data from an environment, after exporting it (ADR-040).

    python scripts/delete_user.py --username tester123 [--yes]

The user is first exported to private/deleted-users/<env>/ (git-ignored, 0600), so an import of
that file undoes the deletion; a checkout whose git does not ignore that folder is refused before
anything is asked or deleted. The deletion is recorded without the personal data.
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
from services.users import accounts, exports  # noqa: E402


def run(args: argparse.Namespace) -> int:
    profile, project = _cli.selected_profile(args.env)
    accounts.find_user_id(profile, project, args.username)  # an unknown user fails before the question
    # The folder accounts.delete_user exports into: never one `git add` would take.
    exports.refuse_trackable(project, accounts.deleted_users_folder(profile, project),
                             "add private/ to .gitignore, then delete again")
    _cli.confirm(f"Delete {args.username} and all of their data from {profile.name}?", yes=args.yes)
    path, checksum = accounts.delete_user(profile, project, args.username, confirmed=True)
    print(f"deleted {args.username} from {profile.name}; their data was exported first to {path} "
          f"(sha256 {checksum[:12]}); import that file to undo")
    return 0


COMMAND = _commands.DELETE_USER


def main(argv: list[str] | None = None) -> int:
    """Delete the user after confirmation; return the exit code."""
    return COMMAND.main(argv)


if __name__ == "__main__":
    _cli.run_command(main)
