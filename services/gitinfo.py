"""What git says about the checkout: which branch is checked out."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

#: What current_branch returns for a checkout on no branch (a detached HEAD, as CI often has).
DETACHED = "(detached HEAD)"


def current_branch(root: Path) -> str | None:
    """Return the checked-out branch, DETACHED on a detached HEAD, or None outside git or without git."""
    git = shutil.which("git")
    if git is None:
        return None
    result = subprocess.run([git, "symbolic-ref", "--short", "-q", "HEAD"], cwd=root, capture_output=True,
                            text=True, check=False)
    if result.stdout.strip():
        return result.stdout.strip()
    inside = subprocess.run([git, "rev-parse", "--git-dir"], cwd=root, capture_output=True, text=True, check=False)
    return DETACHED if inside.returncode == 0 else None


def would_track(root: Path, path: Path) -> bool:
    """Return True when git would track path in the work tree at root: tracked, or not ignored (`git add .` takes it).

    False when git ignores it, when it is git's own (`.git/`), and outside git or without git:
    nothing commits it there. Asks `git check-ignore`, which counts a tracked file as not ignored.
    """
    git = shutil.which("git")
    if git is None or ".git" in Path(path).parts:
        return False
    try:
        result = subprocess.run([git, "check-ignore", "-q", "--", str(path)], cwd=root, capture_output=True,
                                check=False)
    except OSError:  # git could not run there: nothing commits the file through it
        return False
    return result.returncode == 1  # 0 ignored, 1 not ignored, 128 not a work tree (or outside it)
