"""The invoke and script doors as real subprocesses, acting on one temporary project and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from services.project import Project
from tests.support import temp_root
from tests.support.projects import REPO

INVOKE = [sys.executable, "-m", "invoke", "--search-root", str(REPO)]

#: PIPER_ variables a test run sets for itself; every other one is the developer's and is dropped.
KEPT_VARIABLES = frozenset({"PIPER_TEMPLATE_CACHE", "PIPER_YAML_CACHE", temp_root.ROOT_VARIABLE})


def cli_env(project: Project, **extra: str) -> dict[str, str]:
    """Return an environment for a subprocess acting on the project (and on nothing else)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPER_") or k in KEPT_VARIABLES}
    env["PIPER_ROOT"] = str(project.root)
    env.update(extra)
    return env


def run_cli(argv: list[str], project: Project, *, input: str | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
    """Run a command (invoke or a script) as a real subprocess in the project."""
    return subprocess.run(argv, cwd=REPO, env=cli_env(project, **extra), input=input, capture_output=True,
                          text=True, timeout=300, check=False)


def export_user(project: Project, env: str, username: str, *extra: str) -> subprocess.CompletedProcess[bytes]:
    """Run scripts/export_user_data.py as a subprocess; its output is bytes, as a redirect to a file gets them."""
    return subprocess.run([sys.executable, "scripts/export_user_data.py", "--username", username, "--env", env, *extra],
                          cwd=REPO, env=cli_env(project), capture_output=True, check=False)


def spawn_in_terminal(argv: list[str], project: Project, **extra: str):  # type: ignore[no-untyped-def]
    """Start a command (e.g. [*INVOKE, "onboard"]) in a pseudo-terminal, as a person at a keyboard runs it (pexpect)."""
    import pexpect

    return pexpect.spawn(argv[0], argv[1:], cwd=str(REPO), env=cli_env(project, **extra), encoding="utf-8",
                         timeout=120, dimensions=(50, 200))


def project_files(root: Path) -> dict[str, bytes | str]:
    """Every file and link under root with its content (a link's target): compare two to see that nothing changed."""
    found: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            found[str(path.relative_to(root))] = os.readlink(path)
        elif path.is_file():
            found[str(path.relative_to(root))] = path.read_bytes()
    return found
