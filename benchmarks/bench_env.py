"""Benchmark `invoke env` (issue 11: <= 0.3 s) against `cat .env` and the server's own `pg_isready`; Markdown table.

    python benchmarks/bench_env.py [--runs N]

Sets up a tester environment in a temporary project on a free port (your own environments are
untouched), then times, interleaved, each command as a user runs it (a new process each time):
`invoke env`, `invoke env --format shell --show-password`, `cat .env` (reading the file only) and
`pg_isready` (the smallest thing that asks the server), and `invoke --list` (invoke's
own start-up, which every task pays). Not a test: it never fails for being slow.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from services.postgres import servers  # noqa: E402
from services.profiles import load_profile  # noqa: E402
from tests.support.cli import INVOKE, cli_env  # noqa: E402
from tests.support.projects import make_project, remove_servers, set_up  # noqa: E402

GOAL = 0.3


def _timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--runs", type=int, default=20)
    args = cli.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp) / "proj")
        try:
            profile = load_profile("tester", project)
            print("setting up a tester environment to measure against ...", file=sys.stderr)
            with contextlib.redirect_stdout(sys.stderr):  # its steps' lines are not the table
                set_up(profile, project)
            server = servers.locate(profile, project)
            env = cli_env(project)
            commands = {
                "`invoke env`": [*INVOKE, "env"],
                "`invoke env --format shell --show-password`": [*INVOKE, "env", "--format", "shell", "--show-password"],
                "reference: `invoke --list` (invoke's own start-up)": [*INVOKE, "--list"],
                "baseline: `cat .env`": ["cat", str(project.env_file)],
                "baseline: `pg_isready` (the server's own)": [str(server.bin_dir / "pg_isready"), "-q", "-h",
                                                             str(server.socket_dir), "-p", str(server.port)],
            }
            times: dict[str, list[float]] = {name: [] for name in commands}
            for _ in range(args.runs):  # interleaved, so that the machine's moods fall on all alike
                for name, argv in commands.items():
                    times[name].append(_timed(argv, env))
        finally:
            remove_servers(project)
    print(f"| what ({os.cpu_count()} cores) | median | best | runs | goal | result |")
    print("|---|---|---|---|---|---|")
    for name, measured in times.items():
        median = statistics.median(measured)
        goal, result = ("", "")
        if name.startswith("`invoke env"):
            goal, result = f"<= {GOAL} s", "met" if median <= GOAL else "missed"
        print(f"| {name} | {median:.3f} s | {min(measured):.3f} s | {len(measured)} | {goal} | {result} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
