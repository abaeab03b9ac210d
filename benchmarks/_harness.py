"""What the benchmarks that time commands against a tester environment share: the environment, the clock."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from services.postgres import servers
from services.profiles import Profile, load_profile
from services.project import Project
from tests.support.cli import cli_env
from tests.support.projects import REPO, make_project, remove_servers, set_up


@dataclass(frozen=True)
class Tester:
    """A tester environment set up in a temporary project on a free port, and how to run commands in it."""

    profile: Profile
    project: Project
    server: servers.Server
    env: dict[str, str]
    scratch: Path


@contextlib.contextmanager
def tester_environment() -> Iterator[Tester]:
    """Yield a fresh tester environment (your own environments are untouched); remove it afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp) / "proj")
        try:
            profile = load_profile("tester", project)
            print("setting up a tester environment to measure against ...", file=sys.stderr)
            with contextlib.redirect_stdout(sys.stderr):  # its steps' lines are not the table
                set_up(profile, project)
            yield Tester(profile, project, servers.locate(profile, project), cli_env(project), Path(tmp))
        finally:
            remove_servers(project)


def timed(argv: list[str], env: dict[str, str] | None = None, *, cwd: Path = REPO, check: bool = True) -> float:
    """Run argv once as a user would (a new process, from the checkout, no input) and return its wall time.

    With check, a command that fails stops the benchmark with its exit code and the end of what it said.
    """
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if check and result.returncode != 0:
        raise SystemExit(f"`{' '.join(argv)}` failed (exit {result.returncode}): {result.stderr.strip()[-500:]}")
    return elapsed
