"""Export one user's data as a versioned, self-describing JSON document (ADR-040).

    python scripts/export_user_data.py --username alfy > alfy_data.json
    python scripts/export_user_data.py --username alfy --keys tone,projects --output alfy_data.json

The document goes to standard output (or --output); messages go to standard error. It holds
personal data: keep it out of git (private/ is ignored) and delete it once imported.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a command
    gc.disable()  # start-up only makes objects that live to the end; _cli.run_command turns it back on
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts import _cli, _commands  # noqa: E402
from services.errors import UsageError  # noqa: E402
from services.files import atomic_file  # noqa: E402
from services.users import exports  # noqa: E402


def run(args: argparse.Namespace) -> int:
    profile, project = _cli.selected_profile(args.env)
    keys = [k.strip() for k in args.keys.split(",") if k.strip()] if args.keys else None
    if args.keys is not None and not keys:
        raise UsageError("--keys names no key; pass e.g. --keys tone,projects")
    if args.output is None and sys.stdout.isatty():
        raise UsageError("the export holds personal data; redirect it to a file (> FILE) or pass --output FILE")
    if args.output is not None:
        if not args.output.absolute().parent.is_dir():
            raise UsageError(f"{args.output.absolute().parent} is not a directory; create it or pass another --output")
        if args.output.is_dir():
            raise UsageError(f"{args.output} is a directory; name the file, e.g. --output {args.output / (args.username + '.json')}")
        with atomic_file(args.output, mode=0o600) as partial:
            size, checksum = exports.export_user(profile, project, args.username, keys, into=partial)
        where = str(args.output)
    else:
        with tempfile.TemporaryDirectory(prefix="piper-export-") as private:  # 0700: the document is personal data
            document = Path(private) / "export.json"
            document.touch(mode=0o600)
            size, checksum = exports.export_user(profile, project, args.username, keys, into=document)
            with open(document, "rb") as handle:
                shutil.copyfileobj(handle, sys.stdout.buffer, 1 << 20)
        sys.stdout.buffer.flush()
        where = "standard output"
    print(f"exported {args.username} from {profile.name} to {where} ({size} bytes, sha256 {checksum})",
          file=sys.stderr)
    return 0


COMMAND = _commands.EXPORT_USER


def main(argv: list[str] | None = None) -> int:
    """Write the user's export document; return the exit code."""
    return COMMAND.main(argv)


if __name__ == "__main__":
    _cli.run_command(main)
