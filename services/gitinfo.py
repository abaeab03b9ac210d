"""What git says about the checkout: which branch is checked out."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def current_branch(root: Path) -> str | None:
    """Return the checked-out branch, or None outside git, on a detached HEAD or without git."""
    git = shutil.which("git")
    if git is None:
        return None
    result = subprocess.run([git, "symbolic-ref", "--short", "-q", "HEAD"], cwd=root, capture_output=True,
                            text=True, check=False)
    branch = result.stdout.strip()
    return branch or None
