"""Verify data isolation in the selected environment (ADR-040); exit 0 only when every check holds.

    python scripts/test_user_data_isolation.py [--env alpha]

Checks: PIPER.md holds no personal data; each user's context holds only that user's data;
row-level security keeps one user's session out of another's row; the database is stamped as this
environment and no other profile points at it; the server and files are private.
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
from services import isolation  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    """Run the isolation checks and print each result; return 0 only when all hold."""
    cli = _cli.parser("Verify that users and environments are isolated from one another.")
    return _cli.run(cli, argv, _verify)


def _verify(args: argparse.Namespace) -> int:
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


if __name__ == "__main__":
    _cli.run_command(main)
