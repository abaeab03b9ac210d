"""Benchmark user data export and import (issue 4) against psql; prints a Markdown table.

    python benchmarks/bench_user_data.py [--runs N] [--fake-users N] [--profile]

Measured in one run, in one temporary project on free ports (your own environments are untouched),
with user `big` whose preferences are 10 MiB of varied compact JSON (unicode, nested lists, numbers, nulls):
- ours, end to end: `python scripts/export_user_data.py --username big --output F --env alpha` and
  `python scripts/import_user_data.py --username big --data F --yes --env tester` (a fresh import,
  i.e. a create: `big` is deleted from tester, untimed, before every run), as real subprocesses;
- ours, in process (after a warm-up): `exports.export_user` + writing the file, and reading the file +
  `imports.plan_import` + `imports.apply_import`, so that interpreter start-up shows separately;
- baseline: psql from the same PostgreSQL binaries, over the environment's socket as piper_app with
  PGOPTIONS="-c piper.acting_user=big" (row-level security shows piper_app only the acting user's row):
  export `psql -X -Atc "SELECT preferences FROM alpha_users WHERE username = 'big'" -o F`; import
  `\\set content `cat F`` then one `INSERT INTO alpha_users (username, email, display_name,
  preferences) VALUES (..., :'content'::jsonb)` into tester (F: the preferences psql exported).
Two pairs of databases, measured in the same runs, interleaved: alpha -> tester with empty tables,
and alpha_full -> tester_full (copies of those profiles) that also hold --fake-users other users
(fake-user-N, fake-user-N@example.invalid) in alpha_users and as many rows in user_data_events.
Interleaving both sides in every run keeps this machine's drift (often ±30 % over minutes) out of
the full/empty ratio. Medians of --runs runs, ours and psql interleaved. With --profile, also
cProfile both scripts.
Not a test: it never fails for being slow.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import pstats
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

for _key in [k for k in os.environ if k.startswith("PIPER_")]:  # never the developer's selection or secrets
    del os.environ[_key]

from services import credentials, envfile  # noqa: E402
from services.database import connection, roles, sessions  # noqa: E402
from services.files import atomic_file  # noqa: E402
from services.postgres import servers  # noqa: E402
from services.profiles import Profile, load_profile  # noqa: E402
from services.project import Project  # noqa: E402
from services.users import accounts, documents, exports, imports  # noqa: E402
from tests.support.cli import cli_env  # noqa: E402
from tests.support.projects import free_port, make_project, remove_servers, set_up  # noqa: E402

USERNAME = "big"
EMAIL = "big@example.invalid"
DISPLAY = "Big Bench User"
PREFERENCES_BYTES = 10 * 1024 * 1024

_WORDS = ["piper", "café", "naïve", "日本語のテキスト", "Ελληνικά", "русский текст", "עברית", "中文字符", "emoji 🎉🚀",
          "quote \"q\"", "back\\slash", "tab\tand\nnewline", "ünïcödé", "zero-width\u200bjoiner", "ℝ∑∫≠", "plain ascii"]


def big_preferences(target: int = PREFERENCES_BYTES, seed: int = 4) -> dict:
    """Return preferences whose compact UTF-8 JSON is about `target` bytes: varied strings, numbers, nulls, nesting."""
    rng = random.Random(seed)
    prefs: dict = {"tone": "friendly ☕", "projects": ["piper", "ops"], "empty": {}, "none": None}
    size, i = 0, 0
    while size < target:
        item = {
            "id": i,
            "title": " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 6))),
            "score": round(rng.uniform(-1e6, 1e6), rng.randint(0, 6)),
            "count": rng.randint(-10**12, 10**12),
            "ratio": rng.random(),
            "flag": rng.random() < 0.5,
            "missing": None,
            "tags": [rng.choice(_WORDS) for _ in range(rng.randint(0, 5))],
            "nested": [[rng.randint(0, 100), None, rng.choice(_WORDS)], {"deep": {"deeper": [1.5, None, [True, False]]}}],
        }
        prefs.setdefault(f"section_{i // 500:03d}", []).append(item)
        size += len(json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()) + 1
        i += 1
    return prefs


class Side:
    """A source (export) and a target (import) database, and the files of their runs."""

    def __init__(self, name: str, source: Profile, target: Profile, work: Path) -> None:
        self.name, self.source, self.target = name, source, target
        self.export_file = work / f"big_export_{name}.json"
        self.psql_file = work / f"big_preferences_{name}.json"
        self.psql_script = work / f"psql_import_{name}.sql"


class Bench:
    """One temporary project: the empty side (alpha -> tester) and the full side (alpha_full -> tester_full)."""

    def __init__(self, project: Project, work: Path) -> None:
        self.project, self.work = project, work
        self.sides = [Side("empty", load_profile("alpha", project), load_profile("tester", project), work),
                      Side("full", load_profile("alpha_full", project), load_profile("tester_full", project), work)]
        self.env = cli_env(project)

    # -- setup (untimed) --------------------------------------------------------------------------
    def owner(self, profile: Profile, autocommit: bool = False):  # noqa: ANN201
        return connection.connect(credentials.target(profile, self.project, "owner"), autocommit=autocommit)

    def create_big_user(self, prefs: dict) -> None:
        from psycopg.types.json import Jsonb

        for side in self.sides:
            accounts.create_user(side.source, self.project, USERNAME, EMAIL, DISPLAY)
            with self.owner(side.source) as conn:
                conn.execute("UPDATE alpha_users SET preferences = %s WHERE username = %s", (Jsonb(prefs), USERNAME))

    def drop_big(self, profile: Profile) -> None:
        with self.owner(profile, autocommit=True) as conn:
            conn.execute("DELETE FROM alpha_users WHERE username = %s", (USERNAME,))
            conn.execute("VACUUM alpha_users")

    def add_fake_users(self, count: int) -> None:
        """count fake users in alpha_users and as many rows in user_data_events, in both full databases."""
        full = self.sides[1]
        for profile in (full.source, full.target):
            with self.owner(profile) as conn:
                conn.execute(
                    "INSERT INTO alpha_users (username, email, display_name, preferences) "
                    "SELECT 'fake-user-' || g, 'fake-user-' || g || '@example.invalid', 'Fake User ' || g, "
                    "jsonb_build_object('tone', 'fake', 'n', g, 'tags', jsonb_build_array('a', g %% 7)) "
                    "FROM generate_series(1, %s) AS g", (count,))
                conn.execute(
                    "INSERT INTO user_data_events (event, environment, user_id, username, actor, checksum, details) "
                    "SELECT 'export', %s, id, username, 'bench', md5(username) || md5(email), '{}'::jsonb "
                    "FROM alpha_users WHERE username LIKE 'fake-user-%%'", (profile.name,))
            with self.owner(profile, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE alpha_users")
                conn.execute("VACUUM ANALYZE user_data_events")

    # -- ours -------------------------------------------------------------------------------------
    def cli_export(self, side: Side) -> float:
        return _timed([sys.executable, "scripts/export_user_data.py", "--username", USERNAME, "--output",
                       str(side.export_file), "--env", side.source.name], self.env)

    def cli_import(self, side: Side) -> float:
        self.drop_big(side.target)
        return _timed([sys.executable, "scripts/import_user_data.py", "--username", USERNAME, "--data",
                       str(side.export_file), "--yes", "--env", side.target.name], self.env)

    def service_export(self, side: Side) -> float:
        start = time.perf_counter()
        with atomic_file(side.export_file, mode=0o600) as partial:
            exports.export_user(side.source, self.project, USERNAME, into=partial)
        return time.perf_counter() - start

    def service_import(self, side: Side) -> float:
        self.drop_big(side.target)
        start = time.perf_counter()
        with documents.collector_paused():  # as import_user_data.py does
            raw = side.export_file.read_bytes()
            plan = imports.plan_import(side.target, self.project, raw, str(side.export_file), USERNAME, None)
            assert plan.action == "create", plan.action
            imports.apply_import(side.target, self.project, plan)
            del plan
        return time.perf_counter() - start

    # -- psql -------------------------------------------------------------------------------------
    def _psql(self, profile: Profile, *args: str) -> list[str]:
        server = servers.locate(profile, self.project)
        return [str(server.bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(server.socket_dir),
                "-p", str(server.port), "-U", roles.ROLE_NAMES["app"], "-d", profile.database.name, *args]

    def _psql_env(self, profile: Profile) -> dict[str, str]:
        """PGPASSWORD for piper_app, and the acting user that row-level security (migration 0003) requires."""
        return {"PATH": os.environ["PATH"], "PGPASSWORD": envfile.read(self.project.env_file)[credentials.password_key(profile.name, "app")],
                "PGOPTIONS": f"-c {sessions.ACTING_USER_SETTING}={USERNAME}"}

    def psql_export(self, side: Side) -> float:
        return _timed(self._psql(side.source, "-Atc", f"SELECT preferences FROM alpha_users WHERE username = '{USERNAME}'",
                                 "-o", str(side.psql_file)), self._psql_env(side.source))

    def psql_import(self, side: Side) -> float:
        self.drop_big(side.target)
        side.psql_script.write_text(
            f"\\set content `cat {side.psql_file}`\n"
            f"INSERT INTO alpha_users (username, email, display_name, preferences) "
            f"VALUES ('{USERNAME}', '{EMAIL}', '{DISPLAY}', :'content'::jsonb);\n")
        return _timed(self._psql(side.target, "-f", str(side.psql_script)), self._psql_env(side.target))

    # -- the runs ---------------------------------------------------------------------------------
    def measure(self, runs: int) -> dict[str, dict[str, list[float]]]:
        """Return times[side][step]: every step on both sides in every run, so drift hits both alike."""
        steps: dict[str, Callable[[Side], float]] = {
            "cli_export": self.cli_export, "psql_export": self.psql_export, "service_export": self.service_export,
            "cli_import": self.cli_import, "psql_import": self.psql_import, "service_import": self.service_import,
        }
        times: dict[str, dict[str, list[float]]] = {side.name: {name: [] for name in steps} for side in self.sides}
        for run in range(runs + 1):  # run 0 warms caches and puts the files in place; it is not counted
            for name, step in steps.items():
                for side in self.sides if run % 2 else reversed(self.sides):
                    elapsed = step(side)
                    if run:
                        times[side.name][name].append(elapsed)
        return times

    def check(self, digest: str) -> None:
        """Both exports carry the same preferences as were stored, and ours imports them intact."""
        for side in self.sides:
            assert _digest(json.loads(side.psql_file.read_bytes())) == digest, "psql export differs"
            assert _digest(json.loads(side.export_file.read_bytes())["payload"]["preferences"]) == digest, "our export differs"
            with self.owner(side.target) as conn:
                row = conn.execute("SELECT preferences FROM alpha_users WHERE username = %s", (USERNAME,)).fetchone()
            assert row is not None and _digest(row[0]) == digest, f"{side.target.name}'s row differs"

    def profile_scripts(self) -> None:
        """cProfile both scripts as subprocesses (empty side) and print where their time goes."""
        side = self.sides[0]
        for name, argv in (
            ("export", ["scripts/export_user_data.py", "--username", USERNAME, "--output", str(side.export_file),
                        "--env", side.source.name]),
            ("import", ["scripts/import_user_data.py", "--username", USERNAME, "--data", str(side.export_file), "--yes",
                        "--env", side.target.name]),
        ):
            if name == "import":
                self.drop_big(side.target)
            out = self.work / f"{name}.prof"
            subprocess.run([sys.executable, "-m", "cProfile", "-o", str(out), *argv], env=self.env, cwd=REPO, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            text = io.StringIO()
            stats = pstats.Stats(str(out), stream=text)
            stats.sort_stats("cumulative").print_stats(30)
            stats.sort_stats("tottime").print_stats(15)
            print(f"\n### cProfile: {name} script\n", file=sys.stderr)
            print(text.getvalue(), file=sys.stderr)


def _full_copies(project: Project) -> None:
    """Add alpha_full and tester_full: alpha and tester under other names, databases, ports and directories."""
    for base in ("alpha", "tester"):
        data = yaml.safe_load((project.environments_dir / f"{base}.yaml").read_text())
        name = f"{base}_full"
        data.update(name=name, description=f"{base}, with many other users (benchmark)")
        data["database"].update(name=f"piper_{name}", port=free_port(), data_dir=f"postgres_data/{name}")
        (project.environments_dir / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def _digest(value: object) -> str:
    return documents.sha256_hex(documents.canonical_json(value))


def _timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} ... failed ({done.returncode}): {done.stderr.decode(errors='replace')[-2000:]}")
    return elapsed


def main() -> int:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--runs", type=int, default=9)
    cli.add_argument("--fake-users", type=int, default=100_000)
    cli.add_argument("--profile", action="store_true", help="also cProfile both scripts (printed to standard error)")
    args = cli.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-user-data-") as tmp:
        project = make_project(Path(tmp) / "proj")
        _full_copies(project)
        try:
            bench = Bench(project, Path(tmp))
            with contextlib.redirect_stdout(sys.stderr):
                for name in ("alpha", "tester", "alpha_full", "tester_full"):
                    set_up(load_profile(name, project), project)
            prefs = big_preferences()
            bench.create_big_user(prefs)
            digest = _digest(prefs)
            # Not kept alive: 10 MB of Python objects in this process would slow every garbage collection
            # of the in-process runs, which a user's process does not carry.
            del prefs
            gc.collect()
            start = time.perf_counter()
            bench.add_fake_users(args.fake_users)
            filling = time.perf_counter() - start
            times = bench.measure(args.runs)
            bench.check(digest)
            if args.profile:
                bench.profile_scripts()
            sizes = bench.sides[0].export_file.stat().st_size, bench.sides[0].psql_file.stat().st_size
        finally:
            remove_servers(project)
    _report(times["empty"], times["full"], args, sizes, filling)
    return 0


def _report(empty: dict[str, list[float]], full: dict[str, list[float]], args: argparse.Namespace,
            sizes: tuple[int, int], filling: float) -> None:
    med = statistics.median
    n = f"{args.fake_users:,}"

    def s(x: float) -> str:
        return f"{x:.2f} s" if x >= 0.1 else f"{x * 1000:.0f} ms"

    def row(what: str, ours: float, base: float, goal: float, goal_text: str, base_label: str = "") -> None:
        ratio = ours / base
        print(f"| {what} | {s(ours)} | {s(base)}{base_label} | {ratio:.2f}× | {goal_text} | "
              f"{'met' if ratio <= goal else '**missed**'} |")

    print(f"Export file {sizes[0] / 1e6:.1f} MB (ours, with envelope) / {sizes[1] / 1e6:.1f} MB (psql, jsonb text); "
          f"medians of {args.runs} runs; {n} fake users + {n} events added in {filling:.1f} s.\n")
    print("| what | ours | baseline | ratio | goal | result |")
    print("|---|---|---|---|---|---|")
    for label, t, extra in (("empty table", empty, ""), (f"{n} other users", full, "")):
        row(f"export, CLI subprocess ({label}) vs psql", med(t["cli_export"]), med(t["psql_export"]), 2, "≤ 2×", extra)
        row(f"import (create), CLI subprocess ({label}) vs psql", med(t["cli_import"]), med(t["psql_import"]), 2, "≤ 2×", extra)
        row(f"export, in process ({label}) vs psql", med(t["service_export"]), med(t["psql_export"]), 2, "≤ 2×", extra)
        row(f"import (create), in process ({label}) vs psql", med(t["service_import"]), med(t["psql_import"]), 2, "≤ 2×", extra)
    for key, what in (("cli_export", "export, CLI"), ("cli_import", "import, CLI"), ("service_export", "export, in process"),
                      ("service_import", "import, in process"), ("psql_export", "psql export"),
                      ("psql_import", "psql import")):
        ratio = med(full[key]) / med(empty[key])
        goal, result = ("—", "reference") if key.startswith("psql") else ("≤ 1.2×", "met" if ratio <= 1.2 else "**missed**")
        print(f"| {what}: {n} users vs empty table | {s(med(full[key]))} | {s(med(empty[key]))} (empty) | {ratio:.2f}× | "
              f"{goal} | {result} |")
    print("\nAll runs (s):", file=sys.stderr)
    for label, t in (("empty", empty), ("full", full)):
        for key, values in t.items():
            print(f"  {label:5} {key:15} " + " ".join(f"{v:.3f}" for v in values), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
