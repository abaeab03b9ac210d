"""Create a user in the selected environment (idempotent); `invoke create-user` is the same command.

    python scripts/create_test_alpha_user.py --username alfy [--email alfy@example.invalid] [--env alpha]

The ADR named this script for alpha testers; it serves every environment: local ones keep users in
`alpha_users`, hosted production in `users`.
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
from services.users import accounts  # noqa: E402


def run(args: argparse.Namespace) -> int:
    profile, project = _cli.selected_profile(args.env)
    result = accounts.create_user(profile, project, args.username, args.email, args.display_name)
    if result.created:
        print(f"created user {result.username} ({result.email}) in {profile.name}: id {result.id}")
    else:
        print(f"user {result.username} already exists in {profile.name}: id {result.id}; nothing changed")
    return 0


COMMAND = _commands.CREATE_USER


def main(argv: list[str] | None = None) -> int:
    """Create the user, or say it already exists; return the exit code."""
    return COMMAND.main(argv)


if __name__ == "__main__":
    _cli.run_command(main)
