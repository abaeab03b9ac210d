"""Export one user's data as a versioned, self-describing JSON document (ADR-040).

    python scripts/export_user_data.py --username alfy > alfy_data.json
    python scripts/export_user_data.py --username alfy --keys tone,projects --output alfy_data.json

The document goes to standard output (or --output); messages go to standard error. It holds
personal data: keep it out of git (private/ is ignored) and delete it once imported.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

if __package__ in (None, ""):  # run as a command
    gc.disable()  # start-up only makes objects that live to the end; _cli.run_command turns it back on
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts import _cli, _commands  # noqa: E402
from services import identifiers  # noqa: E402
from services.errors import PiperError, UsageError  # noqa: E402
from services.files import atomic_file, private_dir, private_scratch  # noqa: E402
from services.project import Project  # noqa: E402
from services.users import exports  # noqa: E402


def run(args: argparse.Namespace) -> int:
    profile, project = _cli.selected_profile(args.env)
    identifiers.validate_username(args.username)  # before any file is made for the document
    keys = [k.strip() for k in args.keys.split(",") if k.strip()] if args.keys else None
    if args.keys is not None and not keys:
        raise UsageError("--keys names no key; pass e.g. --keys tone,projects")
    output = None if args.output in (None, Path("-")) else args.output
    if output is None and sys.stdout.isatty():
        raise UsageError("the export holds personal data; redirect it to a file (> FILE) or pass --output FILE")
    if output is not None and output.is_dir():
        raise UsageError(f"{output} is a directory; name the file, e.g. --output {output / (args.username + '.json')}")
    if output is not None and (output.is_file() or not output.exists()):
        if not output.absolute().parent.is_dir():
            raise UsageError(f"{output.absolute().parent} is not a directory; create it or pass another --output")
        try:
            with atomic_file(output, mode=0o600) as partial:
                size, checksum = exports.export_user(profile, project, args.username, keys, into=partial)
        except OSError as exc:  # a full disk, a file size limit: the partial file is gone, output untouched
            raise PiperError(f"the export could not be written to {output} ({exc.strerror or exc}); "
                             f"{output.name} was left as it was: free some space, or pass another --output") from None
        where = str(output)
    else:
        # Standard output, or what --output names that is no file to replace (a device, a FIFO):
        # the document is made in the private folder, then written through.
        with _private_document(project) as document:
            size, checksum = exports.export_user(profile, project, args.username, keys, into=document)
            with open(document, "rb") as handle, _stream(output) as stream:
                shutil.copyfileobj(handle, stream, 1 << 20)
                stream.flush()
        where = "standard output" if output is None else str(output)
    print(f"exported {args.username} from {profile.name} to {where} ({size} bytes, sha256 {checksum})",
          file=sys.stderr)
    return 0


@contextlib.contextmanager
def _private_document(project: Project) -> Iterator[Path]:
    """Yield an empty 0600 file in the git-ignored private/ folder (0700), removed afterwards.

    Not in the shared temporary directory: a command killed meanwhile must leave no personal data
    there; the next export removes what a killed one left (files.sweep_partials).
    """
    with private_scratch(private_dir(project.root, "private"), "export") as document:
        yield document


@contextlib.contextmanager
def _stream(output: Path | None) -> Iterator[BinaryIO]:
    """Yield standard output, or the device or FIFO output names (written through, never replaced)."""
    where = "standard output" if output is None else str(output)
    try:
        if output is None:
            yield sys.stdout.buffer
        else:
            with open(output, "wb") as handle:
                yield handle
    except BrokenPipeError:
        raise  # the edge says what a closed standard output means
    except OSError as exc:
        raise PiperError(f"the export could not be written to {where} ({exc.strerror or exc}); it was recorded in "
                         "the database but is incomplete there: export again to a place with room") from None


COMMAND = _commands.EXPORT_USER


def main(argv: list[str] | None = None) -> int:
    """Write the user's export document; return the exit code."""
    return COMMAND.main(argv)


if __name__ == "__main__":
    _cli.run_command(main)
