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

from services import envfile  # noqa: E402
from services.postgres import servers  # noqa: E402
from services.profiles import load_profile  # noqa: E402
from tests.support.cli import INVOKE, cli_env  # noqa: E402
from tests.support.projects import make_project, remove_servers, set_up  # noqa: E402

GOAL = 1.0
_FLOOR = ('pg_isready -q -h "$1" -p "$2" && '
          'psql -X -q -w -h "$1" -p "$2" -U piper_owner -d "$3" -c "select 1" >/dev/null')


def _timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=REPO, env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--runs", type=int, default=15)
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
            check = subprocess.run([*INVOKE, "doctor"], cwd=REPO, env=env, capture_output=True, text=True)
            if check.returncode != 0:
                print(check.stdout, check.stderr, file=sys.stderr)
                raise SystemExit("doctor does not pass on the fresh environment: nothing to measure")
            passfile = Path(tmp) / "pgpass"
            password = envfile.read(project.env_file)["PIPER_TESTER_OWNER_PASSWORD"]
            passfile.write_text(f"*:*:*:*:{password}\n")
            passfile.chmod(0o600)
            floor_env = {**env, "PGPASSFILE": str(passfile), "PATH": f"{server.bin_dir}{os.pathsep}{env['PATH']}"}
            commands = {
                "`invoke doctor` (tester in full)": ([*INVOKE, "doctor"], env),
                "`invoke doctor --report FILE`": ([*INVOKE, "doctor", "--report", str(Path(tmp) / "report.md")], env),
                "reference: `invoke status`": ([*INVOKE, "status"], env),
                "baseline: `pg_isready` + `psql -c 'select 1'` (the server's own)": (
                    ["sh", "-c", _FLOOR, "sh", str(server.socket_dir), str(server.port), profile.database.name],
                    floor_env),
            }
            times: dict[str, list[float]] = {name: [] for name in commands}
            for _ in range(args.runs):  # interleaved, so that the machine's moods fall on all alike
                for name, (argv, run_env) in commands.items():
                    times[name].append(_timed(argv, run_env))
        finally:
            remove_servers(project)
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
