"""Benchmark database backups and restores (issue 13) against pg_dump and pg_restore by hand; prints a Markdown table.

    python benchmarks/bench_db_backup.py [--runs N] [--users N] [--kb N]

Measured in one run, in one temporary project on free ports (your own environments are untouched),
on a tester database holding --users fake users (fake-user-N@example.invalid) with --kb KB of
varied JSON preferences each (100 keys of hex text: about as compressible as real preferences):
- backup: `invoke db-backup --env tester` (end to end: start-up, the counting snapshot, pg_dump,
  reading the archive back, its record, rotation) against `pg_dump -Fc -f F` by hand, from the same
  binaries over the same socket as the same role;
- restore: the restore step of db-restore (`clients.restore_database`: pg_restore piped into one
  psql transaction with the application role's limits) against `pg_restore --single-transaction
  --clean --if-exists --no-owner -d DB F` by hand, of the same archive; beside it the whole
  `invoke db-restore --yes --file F`, which backs the database up first;
- verify: `invoke db-backup --verify-restore` (scratch database, restore, count, drop) against the
  plain restore by hand;
- the automatic backup's check when nothing is due: `lifecycle.auto_backup` in process (median of
  500 calls), and `invoke db-start` with `backups.auto: daily` against `off` (the server running).
Medians of --runs runs, ours and by-hand interleaved. Not a test: it never fails for being slow.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

for _key in [k for k in os.environ if k.startswith("PIPER_")]:  # never the developer's selection or secrets
    del os.environ[_key]

from benchmarks._harness import timed  # noqa: E402
from services import credentials  # noqa: E402
from services.database import connection, roles  # noqa: E402
from services.environments import lifecycle  # noqa: E402
from services.postgres import clients, servers  # noqa: E402
from services.profiles import load_profile  # noqa: E402
from tests.support.cli import INVOKE, cli_env  # noqa: E402
from tests.support.projects import make_project, remove_servers, set_up  # noqa: E402


def _populate(profile, project, users: int, kb: int) -> None:  # type: ignore[no-untyped-def]
    keys = 100
    piece = max(1, kb * 1024 // keys // 32)  # md5s of 32 hex characters per key
    with connection.connect(credentials.target(profile, project, "owner")) as conn:
        conn.execute(
            "INSERT INTO alpha_users (username, email, preferences) "
            "SELECT 'fake-user-' || i, 'fake-user-' || i || '@example.invalid', "
            "(SELECT jsonb_object_agg('key_' || j, (SELECT string_agg(md5(i::text || '.' || j || '.' || k), '') "
            " FROM generate_series(1, %s) k)) FROM generate_series(1, %s) j) "
            "FROM generate_series(1, %s) i", (piece, keys, users))
        conn.commit()
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    print(f"populated {users} users with ~{kb} KB of preferences each; database {size / 2**20:.0f} MiB",
          file=sys.stderr)


def main() -> int:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--runs", type=int, default=1)
    cli.add_argument("--users", type=int, default=100_000)
    cli.add_argument("--kb", type=int, default=10)
    args = cli.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-db-backup-"))
    project = make_project(work / "proj")
    try:
        return _run(project, work, args)
    finally:
        remove_servers(project)
        shutil.rmtree(work, ignore_errors=True)


def _run(project, work: Path, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    profile = load_profile("tester", project)
    os.environ["PIPER_ROOT"] = str(project.root)
    set_up(profile, project)
    _populate(profile, project, args.users, args.kb)
    env = cli_env(project)
    server = servers.locate(profile, project)
    owner = credentials.target(profile, project, "owner")
    by_hand = work / "by-hand.dump"
    times: dict[str, list[float]] = {k: [] for k in ("dump", "backup", "pg_restore", "restore_step", "db_restore",
                                                     "verify")}
    archive = None
    for run in range(args.runs):
        print(f"run {run + 1}/{args.runs}", file=sys.stderr)
        by_hand.unlink(missing_ok=True)
        with clients.passfile_env(server, owner.password) as penv:
            times["dump"].append(timed([str(server.bin_dir / "pg_dump"), "-Fc", f"--file={by_hand}",
                                         *clients.connection_args(server, owner.user), profile.database.name], penv))
        times["backup"].append(timed([*INVOKE, "db-backup", "--env", "tester"], env))
        archive = sorted((project.root / "backups" / "tester").glob("*-manual.dump"))[-1]
        with clients.passfile_env(server, owner.password) as penv:
            times["pg_restore"].append(timed(
                [str(server.bin_dir / "pg_restore"), "--single-transaction", "--clean", "--if-exists", "--no-owner",
                 f"--role={owner.user}", *clients.connection_args(server, owner.user),
                 f"--dbname={profile.database.name}", str(archive)], penv))
        started = time.perf_counter()
        clients.restore_database(server, profile.database.name, owner.user, owner.password, archive,
                                 then=roles.application_role_sql(roles.ROLE_NAMES["app"]))
        times["restore_step"].append(time.perf_counter() - started)
        times["db_restore"].append(timed([*INVOKE, "db-restore", "--env", "tester", "--yes", "--file", str(archive)],
                                          env))
        times["verify"].append(timed([*INVOKE, "db-backup", "--env", "tester", "--verify-restore"], env))
    # The automatic backup's check when a backup was taken today: in process, then as db-start.
    assert lifecycle.auto_backup(profile, project) is None
    checks = []
    for _ in range(500):
        started = time.perf_counter()
        lifecycle.auto_backup(profile, project)
        checks.append(time.perf_counter() - started)
    starts: dict[str, list[float]] = {"daily": [], "off": []}
    source = project.environments_dir / "tester.yaml"
    daily = source.read_text()
    off = daily.replace("auto: daily", "auto: 'off'")
    for _ in range(max(5, args.runs * 5)):
        for policy, text in (("daily", daily), ("off", off)):
            source.write_text(text)
            starts[policy].append(timed([*INVOKE, "db-start", "--env", "tester"], env))
    source.write_text(daily)
    _report(times, checks, starts, args, archive)
    return 0


def _report(times: dict[str, list[float]], checks: list[float], starts: dict[str, list[float]],
            args: argparse.Namespace, archive: Path | None) -> None:
    m = {k: statistics.median(v) for k, v in times.items()}
    size = archive.stat().st_size / 2**20 if archive is not None else 0

    def row(what: str, ours: float, base: float, goal: str, base_label: str) -> None:
        print(f"| {what} | {ours:.2f} s | {base_label} {base:.2f} s | {ours / base:.2f}× | {goal} |")

    print(f"db-backup and db-restore: {args.users} users × {args.kb} KB of preferences, archive {size:.0f} MiB, "
          f"median of {args.runs} run(s)")
    print()
    print("| measurement | ours | by hand | ratio | goal |")
    print("|---|---|---|---|---|")
    row("`invoke db-backup` (end to end)", m["backup"], m["dump"], "≤ 1.05×", "`pg_dump -Fc`")
    row("restore step of `db-restore`", m["restore_step"], m["pg_restore"], "≤ 1.05×",
        "`pg_restore --single-transaction`")
    row("whole `invoke db-restore` (safety backup first)", m["db_restore"], m["pg_restore"], "(beside)",
        "`pg_restore --single-transaction`")
    row("`invoke db-backup --verify-restore`", m["verify"], m["pg_restore"], "≤ 1.5×",
        "`pg_restore --single-transaction`")
    check = statistics.median(checks) * 1000
    added = (statistics.median(starts["daily"]) - statistics.median(starts["off"])) * 1000
    print(f"| automatic backup check, nothing due (in process, median of {len(checks)}) | {check:.2f} ms | - | - "
          f"| ≤ 10 ms |")
    print(f"| `invoke db-start`, `auto: daily` vs `off` (median of {len(starts['off'])}) | "
          f"{statistics.median(starts['daily']):.3f} s | off {statistics.median(starts['off']):.3f} s | "
          f"{added:+.1f} ms | ≤ 10 ms added |")


if __name__ == "__main__":
    sys.exit(main())
