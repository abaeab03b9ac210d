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
