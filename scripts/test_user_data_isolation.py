"""Verify data isolation in the selected environment (ADR-040); exit 0 only when every check holds.

    python scripts/test_user_data_isolation.py [--env alpha]      # or: invoke verify-isolation

Not a test module: the ADR gave this check its name. It is the `verify-isolation` command, run
against a real environment. Checks: PIPER.md holds no personal data; each user's context holds
only that user's data; row-level security keeps one user's session out of another's row; the
database is stamped as this environment and no other profile points at it; the server and files
are private.
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
from services import isolation  # noqa: E402

__test__ = False  # pytest: this module is a command, not a test


def run(args: argparse.Namespace) -> int:
    profile, project = _cli.selected_profile(args.env)
    results = isolation.verify_isolation(profile, project)
    for result in results:
        print(f"{'PASS' if result.passed else 'FAIL'}  {result.name}: {result.detail}")
    failed = [r.name for r in results if not r.passed]
    if failed:
        print(f"isolation does NOT hold in {profile.name}: {', '.join(failed)} failed", file=sys.stderr)
        return 1
    print(f"isolation holds in {profile.name} ({len(results)} checks)")
    return 0


COMMAND = _commands.VERIFY_ISOLATION


def main(argv: list[str] | None = None) -> int:
    """Run the isolation checks and print each result; return 0 only when all hold."""
    return COMMAND.main(argv)


if __name__ == "__main__":
    _cli.run_command(main)
