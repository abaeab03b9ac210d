"""Accept a production invitation: set your password with the single-use token from the email.

    python scripts/accept_invitation.py --env production --token TOKEN

The password is asked on the terminal (twice), or read from standard input with
--password-stdin; it never appears in process arguments. It is stored as an Argon2id hash.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts import _cli  # noqa: E402
from services import invitations  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    """Set the password for the invitation's user; return the exit code."""
    cli = _cli.parser("Set your production password with an invitation token.")
    cli.add_argument("--token", required=True, help="the token from the invitation email, or - to read it from standard input")
    cli.add_argument("--password-stdin", action="store_true", help="read the password from standard input (first line)")
    return _cli.run(cli, argv, _accept)


def _accept(args: argparse.Namespace) -> int:
    profile, project = _cli.selected_profile(args.env)
    token = sys.stdin.readline().strip() if args.token == "-" else args.token.strip()
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("New password: ")
        if getpass.getpass("Repeat it: ") != password:
            raise _cli.UsageError("the two passwords differ; nothing was changed")
    else:
        raise _cli.UsageError("no terminal to ask for the password; pass --password-stdin and pipe it in")
    accepted = invitations.accept_invitation(profile, project, token, password)
    print(f"password set for {accepted.username} in {profile.name}; the invitation is now used up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
