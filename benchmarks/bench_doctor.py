"""Benchmark `invoke doctor` on a healthy environment (issue 11: <= 1 s) against `invoke status` and the
server's own `pg_isready` + `psql -c 'select 1'`; prints a Markdown table.

    python benchmarks/bench_doctor.py [--runs N]

Sets up a tester environment in a temporary project on a free port (your own environments are
untouched), then times, interleaved, each command as a user runs it (a new process each time):
`invoke doctor` (the selected environment in full: every check, three password logins and the
schema read), `invoke doctor --report FILE`, `invoke status`, and the floor of asking the same
server by hand with the same binaries: `pg_isready` then `psql -c 'select 1'` as the owner (its
password in a private PGPASSFILE). Not a test: it never fails for being slow.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks._harness import tester_environment, timed  # noqa: E402
from services import envfile  # noqa: E402
from tests.support.cli import INVOKE  # noqa: E402

GOAL = 1.0
_FLOOR = ('pg_isready -q -h "$1" -p "$2" && '
          'psql -X -q -w -h "$1" -p "$2" -U piper_owner -d "$3" -c "select 1" >/dev/null')


def main() -> int:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--runs", type=int, default=15)
    args = cli.parse_args()
    with tester_environment() as tester:
        profile, project, server, env = tester.profile, tester.project, tester.server, tester.env
        check = subprocess.run([*INVOKE, "doctor"], cwd=REPO, env=env, capture_output=True, text=True)
        if check.returncode != 0:
            print(check.stdout, check.stderr, file=sys.stderr)
            raise SystemExit("doctor does not pass on the fresh environment: nothing to measure")
        passfile = tester.scratch / "pgpass"
        password = envfile.read(project.env_file)["PIPER_TESTER_OWNER_PASSWORD"]
        passfile.write_text(f"*:*:*:*:{password}\n")
        passfile.chmod(0o600)
        floor_env = {**env, "PGPASSFILE": str(passfile), "PATH": f"{server.bin_dir}{os.pathsep}{env['PATH']}"}
        commands = {
            "`invoke doctor` (tester in full)": ([*INVOKE, "doctor"], env),
            "`invoke doctor --report FILE`": ([*INVOKE, "doctor", "--report", str(tester.scratch / "report.md")], env),
            "reference: `invoke status`": ([*INVOKE, "status"], env),
            "baseline: `pg_isready` + `psql -c 'select 1'` (the server's own)": (
                ["sh", "-c", _FLOOR, "sh", str(server.socket_dir), str(server.port), profile.database.name],
                floor_env),
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):  # interleaved, so that the machine's moods fall on all alike
            for name, (argv, run_env) in commands.items():
                times[name].append(timed(argv, run_env, check=False))  # doctor exits 1 when a check fails
    floor = statistics.median(times["baseline: `pg_isready` + `psql -c 'select 1'` (the server's own)"])
    print(f"| what ({os.cpu_count()} cores) | median | best | runs | × baseline | goal | result |")
    print("|---|---|---|---|---|---|---|")
    for name, measured in times.items():
        median = statistics.median(measured)
        mine = name.startswith("`invoke doctor")
        goal, result = (f"<= {GOAL} s", "met" if median <= GOAL else "missed") if mine else ("", "")
        print(f"| {name} | {median:.3f} s | {min(measured):.3f} s | {len(measured)} | {median / floor:.1f} | {goal} "
              f"| {result} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
