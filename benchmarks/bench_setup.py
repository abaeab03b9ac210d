"""Benchmark `invoke setup` and `invoke --list` (issue 2); prints a Markdown table.

    python benchmarks/bench_setup.py [--runs N]

Measured in one run, in temporary projects on free ports (your own environments are untouched):
- cold `invoke setup --env alpha` (no data directory) against the floor of the same binaries run
  by hand: initdb + pg_ctl start + createdb, the two interleaved; and once the very first cold
  setup on the machine, which also makes the template cluster that later ones copy;
- warm `invoke setup --env alpha` (everything in place);
- `invoke --list`.
Not a test: it never fails for being slow.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from services.postgres import servers, templates  # noqa: E402
from services.profiles import load_profile  # noqa: E402
from tests.support.cli import INVOKE, cli_env  # noqa: E402
from tests.support.projects import free_port, make_project, remove_servers  # noqa: E402


def _timed(argv: list[str], env: dict[str, str], **kwargs: object) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload]
    return time.perf_counter() - start


def cold_and_warm(runs: int) -> tuple[list[float], list[float]]:
    cold, warm = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            project = make_project(Path(tmp) / "proj")
            env = cli_env(project)
            try:
                cold.append(_timed([*INVOKE, "setup", "--env", "alpha"], env, cwd=REPO))
                for _ in range(3):
                    warm.append(_timed([*INVOKE, "setup", "--env", "alpha"], env, cwd=REPO))
            finally:
                remove_servers(project)
    return cold, warm


def floor(runs: int) -> list[float]:
    """initdb + pg_ctl start + createdb with the same binaries, as the same account."""
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp) / "proj")
        server = servers.prepare(load_profile("alpha", project), project)
    account = server.account
    kwargs: dict[str, object] = {"user": account.uid, "group": account.gid, "extra_groups": [], "cwd": "/"} if account else {}
    base = Path("/var/lib/piper-ops" if account else tempfile.gettempdir())
    for _ in range(runs):
        work = Path(tempfile.mkdtemp(prefix="bench-floor-", dir=base))
        os.chmod(work, 0o700)
        if account:
            os.chown(work, account.uid, account.gid)
        data, pwfile, port = work / "data", work / "pw", free_port()
        pwfile.write_text("bench-only-password\n")
        if account:
            os.chown(pwfile, account.uid, account.gid)
        env = {"PATH": os.environ["PATH"], "PGPASSWORD": "bench-only-password"}
        bins = server.bin_dir
        start = time.perf_counter()
        subprocess.run([str(bins / "initdb"), "-D", str(data), "--username=bench", f"--pwfile={pwfile}",
                        "--auth=scram-sha-256", "--encoding=UTF8", "--no-locale"], env=env, check=True,
                       stdout=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload]
        subprocess.run([str(bins / "pg_ctl"), "start", "-D", str(data), "-l", str(work / "log"), "-w", "-s",
                        "-o", f"-p {port} -k {work} -c listen_addresses=127.0.0.1"], env=env, check=True,
                       stdout=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload]
        subprocess.run([str(bins / "createdb"), "-h", str(work), "-p", str(port), "-U", "bench", "benchdb"],
                       env=env, check=True, **kwargs)  # type: ignore[call-overload]
        times.append(time.perf_counter() - start)
        subprocess.run([str(bins / "pg_ctl"), "stop", "-D", str(data), "-m", "immediate", "-s"], env=env,
                       check=True, **kwargs)  # type: ignore[call-overload]
        shutil.rmtree(work)
    return times


def listing(runs: int) -> list[float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPER_")}
    return [_timed([sys.executable, "-m", "invoke", "--search-root", str(REPO), "--list"], env, cwd=REPO) for _ in range(runs)]


def first_cold() -> float:
    """Cold setup on a machine whose template cluster is gone: it runs initdb to make it again."""
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp) / "proj")
        server = servers.prepare(load_profile("alpha", project), project)
        template = templates.template_dir(server)
        shutil.rmtree(template, ignore_errors=True)
    return cold_and_warm(1)[0][0]


def main() -> int:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--runs", type=int, default=5)
    args = cli.parse_args()
    first = first_cold()
    base, cold, warm = [], [], []
    for _ in range(args.runs):  # interleaved, so that the machine's moods fall on both alike
        base += floor(1)
        c, w = cold_and_warm(1)
        cold += c
        warm += w
    lst = listing(args.runs * 2)
    med = statistics.median
    print("| what | median | runs | goal | result |")
    print("|---|---|---|---|---|")
    print(f"| floor: initdb + pg_ctl start + createdb | {med(base):.2f} s | {len(base)} | | |")
    ratio = med(cold) / med(base)
    print(f"| cold `invoke setup --env alpha` | {med(cold):.2f} s ({ratio:.2f}x floor) | {len(cold)} | <= 2x floor | {'met' if ratio <= 2 else 'missed'} |")
    print(f"| first cold setup on the machine (makes the template) | {first:.2f} s ({first / med(base):.2f}x floor) | 1 | | |")
    print(f"| warm `invoke setup --env alpha` | {med(warm):.2f} s | {len(warm)} | <= 0.8 s | {'met' if med(warm) <= 0.8 else 'missed'} |")
    print(f"| `invoke --list` | {med(lst):.2f} s | {len(lst)} | <= 0.3 s | {'met' if med(lst) <= 0.3 else 'missed'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
