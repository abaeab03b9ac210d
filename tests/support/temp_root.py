"""The one private temporary directory of a test run; everything the suite makes goes in it.

Test projects hold generated passwords in their `.env` files, so nothing of a run may outlive it
in a shared /tmp. The first pytest process (the only one, or the controller of pytest-xdist's
workers) makes the directory, mode 0700, and names it in $PIPER_TESTS_TMPDIR for the processes it
starts; in it live pytest's basetemp, the profile and template caches, and TMPDIR for everything
else (socket directories, client password files, temporary files of the commands under test).
The process that made it removes it at the end of the run, after every server is stopped.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

ROOT_VARIABLE = "PIPER_TESTS_TMPDIR"


def create() -> Path:
    """Make a new private root (mode 0700) in the system's temporary directory and name it in the environment."""
    root = Path(tempfile.mkdtemp(prefix="piper-tests-")).resolve()
    os.chmod(root, 0o700)
    os.environ[ROOT_VARIABLE] = str(root)
    return root


def current() -> Path | None:
    """Return the run's root, if a pytest process of this run has made one."""
    named = os.environ.get(ROOT_VARIABLE)
    return Path(named) if named else None


def path(*parts: str) -> Path | None:
    """Return a directory inside the run's root (made, mode 0700), or None outside a test run."""
    root = current()
    if root is None:
        return None
    directory = root.joinpath(*parts)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return directory


def remove(root: Path) -> None:
    """Delete the root and everything in it."""
    shutil.rmtree(root, ignore_errors=True)
    if os.environ.get(ROOT_VARIABLE) == str(root):
        del os.environ[ROOT_VARIABLE]
