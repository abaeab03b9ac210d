"""Export one user's data as a versioned, self-describing JSON document (ADR-040).

    python scripts/export_user_data.py --username alfy --output exports/alfy.json
    python scripts/export_user_data.py --username alfy --keys tone,projects --output exports/alfy.json
    python scripts/export_user_data.py --username alfy > alfy.json

The document goes to --output (written atomically, 0600) or standard output; messages go to
standard error. It holds personal data: the export folder `exports/` is git-ignored and 0700
(created by the first --output into it); an --output that git would track is refused, and a
redirect (> FILE) there is closed to 0600 and warned about, naming the fix. Delete it once imported.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
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
    suggested = f"{exports.EXPORT_FOLDER}/{args.username}.json"
    if output is None and sys.stdout.isatty():
        raise UsageError(f"the export holds personal data; pass --output {suggested} (git-ignored, private) "
                         "or redirect it to a file (> FILE)")
    if output is not None and output.is_dir():
        raise UsageError(f"{output} is a directory; name the file, e.g. --output {output / (args.username + '.json')}")
    if output is not None and exports.is_in_export_folder(project, output):
        exports.refuse_trackable(project, output, f"add {exports.EXPORT_FOLDER}/ to .gitignore, then export again")
        exports.export_folder(project)  # made 0700 on first use (or closed to it)
    elif output is not None:  # a file we write ourselves never goes where `git add` would take it (invariant 3)
        exports.refuse_trackable(project, output, f"export with --output {suggested} instead (git-ignored, 0700)")
    destination = None  # what standard output is redirected to (--output was checked above)
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
        destination = exports.open_file_path(sys.stdout.fileno()) if output is None else None
        if destination is not None:
            _close_to_owner(sys.stdout.fileno())  # `> U.json` made it with the umask's mode: personal data is 0600
        with _private_document(project) as document:
            size, checksum = exports.export_user(profile, project, args.username, keys, into=document)
            with open(document, "rb") as handle, _stream(output) as stream:
                shutil.copyfileobj(handle, stream, 1 << 20)
                stream.flush()
        where = "standard output" if output is None else str(output)
    print(f"exported {args.username} from {profile.name} to {where} ({size} bytes, sha256 {checksum})",
          file=sys.stderr)
    tracked = exports.trackable_destination(project, destination)
    if tracked is not None and exports.is_in_export_folder(project, destination):  # a checkout that lacks the rule
        print(f"warning: {tracked} holds personal data and git does not ignore it; add {exports.EXPORT_FOLDER}/ "
              "to .gitignore", file=sys.stderr)
    elif tracked is not None:
        print(f"warning: {tracked} holds personal data inside the checkout and git does not ignore it (`git add` "
              f"would commit it); export with --output {suggested} instead (git-ignored, 0700)", file=sys.stderr)
    return 0


def _close_to_owner(fd: int) -> None:
    """Give the file open on fd mode 0600 when it is ours (a shell redirect made it with the umask's mode)."""
    try:
        if os.fstat(fd).st_uid == os.geteuid():
            os.fchmod(fd, 0o600)
    except OSError:
        pass  # not ours to change; the folder's 0700 still keeps it private


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
