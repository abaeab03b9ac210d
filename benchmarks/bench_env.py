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
import os
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks._harness import tester_environment, timed  # noqa: E402
from tests.support.cli import INVOKE  # noqa: E402

GOAL = 0.3


def main() -> int:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--runs", type=int, default=20)
    args = cli.parse_args()
    with tester_environment() as tester:
        server = tester.server
        commands = {
            "`invoke env`": [*INVOKE, "env"],
            "`invoke env --format shell --show-password`": [*INVOKE, "env", "--format", "shell", "--show-password"],
            "reference: `invoke --list` (invoke's own start-up)": [*INVOKE, "--list"],
            "baseline: `cat .env`": ["cat", str(tester.project.env_file)],
            "baseline: `pg_isready` (the server's own)": [str(server.bin_dir / "pg_isready"), "-q", "-h",
                                                         str(server.socket_dir), "-p", str(server.port)],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):  # interleaved, so that the machine's moods fall on all alike
            for name, argv in commands.items():
                times[name].append(timed(argv, tester.env))
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
