"""Import one user's exported data into this environment, with consent (ADR-040).

    python scripts/import_user_data.py --username alfy --email alfy@example.com --data alfy_data.json
    python scripts/import_user_data.py --username alfy --data alfy_data.json --merge --yes

Verifies the document's format and checksum, shows what will change and asks before writing.
An existing user with other data is a conflict: refused unless --merge or --replace.
Into production, the user is created without a password and an invitation is written to outbox/.
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
from services.files import read_regular_file  # noqa: E402
from services.users import documents, imports  # noqa: E402

_ACTIONS = {
    "create": "create user {username} ({email})",
    "unchanged": "nothing: {username} already holds exactly this data",
    "conflict": "refuse: {username} already exists with other data",
    "merge": "merge the file into {username}'s data (the file wins where both hold a value)",
    "replace": "replace {username}'s data with the file's",
}


def run(args: argparse.Namespace) -> int:
    # The parsed document is millions of objects that live until the command ends: the cycle
    # collector would pass over them again and again for nothing (docs/BENCHMARKS.md).
    with documents.collector_paused():
        return _import_document(args)


def _import_document(args: argparse.Namespace) -> int:
    profile, project = _cli.selected_profile(args.env)
    raw, origin = _read(args.data)
    mode = "merge" if args.merge else "replace" if args.replace else "refuse"
    plan = imports.plan_import(profile, project, raw, origin, args.username, args.email, mode)  # type: ignore[arg-type]
    show_import_plan(plan, profile.name, origin)
    if plan.action == "unchanged":
        print(f"{plan.username} in {profile.name} already holds this data; nothing changed")
        return 0
    if args.dry_run:
        if plan.action == "conflict":
            imports.apply_import(profile, project, plan)  # raises the conflict, with its fix
        print("dry run: nothing was written")
        return 0
    if plan.action != "conflict":
        _cli.confirm(f"Import {plan.username} into {profile.name}?", yes=args.yes)
    result = imports.apply_import(profile, project, plan)
    print(f"imported {plan.username} into {profile.name} ({result.action}): id {result.user_id}")
    if result.invitation_file is not None:
        print(f"invitation for {plan.email} written to {result.invitation_file}; send it to the user "
              "(it holds a single-use token)")
    return 0


def show_import_plan(plan: imports.ImportPlan, environment: str, origin: str) -> None:
    """The consent screen of an import (on standard error): where the document comes from, what it changes."""
    doc = plan.document
    print(f"import {plan.username} into {environment} from {origin} (exported from {doc.source_environment or '?'} "
          f"at {doc.exported_at or '?'}, sha256 {doc.checksum[:12]}):", file=sys.stderr)
    print(f"  action: {_ACTIONS[plan.action].format(username=plan.username, email=plan.email)}", file=sys.stderr)
    print(f"  preferences: {documents.summarize_changes(plan.changes)}", file=sys.stderr)
    if plan.fields_not_carried:
        print(f"  not carried into {plan.table}: {', '.join(plan.fields_not_carried)} (they stay in {origin})", file=sys.stderr)


def _read(data: str) -> tuple[bytes, str]:
    if data == "-":
        return sys.stdin.buffer.read(documents.MAX_DOCUMENT_BYTES + 1), "standard input"
    return read_regular_file(Path(data), documents.MAX_DOCUMENT_BYTES, what="export document"), data


COMMAND = _commands.IMPORT_USER


def main(argv: list[str] | None = None) -> int:
    """Import the document after confirmation; return the exit code."""
    return COMMAND.main(argv)


if __name__ == "__main__":
    _cli.run_command(main)
