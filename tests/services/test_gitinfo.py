"""services/gitinfo.py: which branch the checkout is on, a detached HEAD, or no git at all."""

from __future__ import annotations

import subprocess
from pathlib import Path

from services import gitinfo


def test_branch_detached_head_and_no_repository(tmp_path: Path) -> None:
    assert gitinfo.current_branch(tmp_path) is None
    subprocess.run(["git", "init", "-q", "-b", "production", str(tmp_path)], check=True)
    assert gitinfo.current_branch(tmp_path) == "production"  # no commit yet: still the branch
    git = ["git", "-C", str(tmp_path), "-c", "user.email=ci@example.invalid", "-c", "user.name=ci"]
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    subprocess.run([*git, "checkout", "-q", "--detach"], check=True)
    assert gitinfo.current_branch(tmp_path) == gitinfo.DETACHED
