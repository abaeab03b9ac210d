"""Create a user in the selected environment's alpha_users (idempotent).

    python scripts/create_test_alpha_user.py --username alfy [--email alfy@example.invalid] [--env alpha]
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
    """Create the user, or say it already exists; return the exit code."""
    cli = _cli.parser("Create a user in the environment's alpha_users table.")
    cli.add_argument("--username", required=True, help="the user's login name (lower-case)")
    cli.add_argument("--email", help="the user's email (default: USERNAME@example.invalid)")
    cli.add_argument("--display-name", help="the name shown to people")
    return _cli.run(cli, argv, _create)


def _create(args: argparse.Namespace) -> int:
    profile, project = _cli.selected_profile(args.env)
    result = users.create_user(profile, project, args.username, args.email, args.display_name)
    if result.created:
        print(f"created user {result.username} ({result.email}) in {profile.name}: id {result.id}")
    else:
        print(f"user {result.username} already exists in {profile.name}: id {result.id}; nothing changed")
    return 0


if __name__ == "__main__":
    _cli.run_command(main)
