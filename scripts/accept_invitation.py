"""Accept a production invitation: set your password with the single-use token from the email.

    python scripts/accept_invitation.py --env production

The token and the password are asked on the terminal (the password twice). Without a terminal
they are read from standard input, the token on the first line and, with --password-stdin, the
password on the next. `--token TOKEN` works too, but puts the token where other processes can
see it. The password is stored as an Argon2id hash.
"""

from __future__ import annotations

import argparse
import gc
import getpass
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a command
    gc.disable()  # start-up only makes objects that live to the end; _cli.run_command turns it back on
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts import _cli, _commands  # noqa: E402
from services.errors import UsageError  # noqa: E402
from services.users import invitations  # noqa: E402


def run(args: argparse.Namespace) -> int:
    profile, project = _cli.selected_profile(args.env)
    if args.token in (None, "-"):
        token = getpass.getpass("Invitation token: ") if sys.stdin.isatty() else sys.stdin.readline()
    else:
        token = args.token
        print("warning: a token on the command line is visible to other processes; leave --token out to be asked",
              file=sys.stderr)
    token = token.strip()
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("New password: ")
        if getpass.getpass("Repeat it: ") != password:
            raise UsageError("the two passwords differ; nothing was changed")
    else:
        raise UsageError("no terminal to ask for the password; pass --password-stdin and pipe it in")
    accepted = invitations.accept_invitation(profile, project, token, password)
    print(f"password set for {accepted.username} in {profile.name}; the invitation is now used up")
    return 0


COMMAND = _commands.ACCEPT_INVITATION


def main(argv: list[str] | None = None) -> int:
    """Set the password for the invitation's user; return the exit code."""
    return COMMAND.main(argv)


if __name__ == "__main__":
    _cli.run_command(main)
