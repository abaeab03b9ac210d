"""What `invoke docs` does: regenerate what docs/ derives from the profiles, or check that it is current."""

from __future__ import annotations

import argparse

from services import documentation
from services.errors import PiperError
from services.project import current_project


def run_docs(args: argparse.Namespace) -> int:
    project = current_project()
    files = documentation.generated_files(project, check=args.check)
    stale = documentation.stale(files)
    if args.check:
        if stale:
            names = ", ".join(f.relative for f in stale)
            raise PiperError(f"out of date with environments/*.yaml: {names}; run `invoke docs` and commit the result")
        for item in files:
            print(f"{item.relative} is up to date")
        return 0
    for item in files:
        print(f"{item.relative} {'written' if item.written else 'already up to date; nothing changed'}")
    return 0
