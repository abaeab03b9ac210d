"""`invoke bench`: every figure of docs/BENCHMARKS.md measured again, against its floor, in one run.

Each benchmark is a script in benchmarks/ that measures ours and its baseline side by side and
prints a Markdown table (never failing for being slow: a figure is not a test). This runs the
chosen ones one after another and writes their tables into the "latest run" section of
docs/BENCHMARKS.md (between its markers), leaving the dated history below it as it is.
"""

from __future__ import annotations

import compileall
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from services.errors import PiperError, UsageError
from services.files import write_atomic
from services.project import CODE_ROOT

#: Each benchmark, its script, and whether it takes --runs.
BENCHMARKS = {"startup": ("bench_startup.py", True), "setup": ("bench_setup.py", True), "audit": ("bench_audit.py", False),
              "hook": ("bench_hook.py", True), "user-data": ("bench_user_data.py", True), "env": ("bench_env.py", True),
              "onboard": ("bench_onboard.py", True), "doctor": ("bench_doctor.py", True),
              "db-backup": ("bench_db_backup.py", True)}
BEGIN, END = "<!-- bench:latest:begin -->", "<!-- bench:latest:end -->"


@dataclass(frozen=True)
class Measured:
    name: str
    table: str
    seconds: float
    started: datetime | None = None


def run_benchmark(name: str, runs: int | None = None) -> Measured:
    """Run one benchmark script and return its table (its progress goes to standard error)."""
    if name not in BENCHMARKS:
        raise UsageError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
    script, takes_runs = BENCHMARKS[name]
    argv = [sys.executable, str(CODE_ROOT / "benchmarks" / script)]
    if runs is not None and takes_runs:
        argv += ["--runs", str(runs)]
    started = datetime.now()
    # A user's Python writes bytecode at the first run; with PYTHONDONTWRITEBYTECODE (some sandboxes set
    # it) every start-up would compile what changed since, and the figures would measure the compiler
    # (the caller runs compile_bytecode once first).
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    result = subprocess.run(argv, cwd=CODE_ROOT, stdout=subprocess.PIPE, stderr=None, text=True, check=False,
                            env={**env, "PYTHONPATH": str(CODE_ROOT)})
    if result.returncode != 0:
        raise PiperError(f"benchmark {name} ({script}) failed with exit code {result.returncode}; "
                         f"run `python benchmarks/{script}` to see why")
    table = "\n".join(line for line in result.stdout.splitlines() if line.startswith("|"))
    if not table:
        raise PiperError(f"benchmark {name} ({script}) printed no table; run `python benchmarks/{script}` to see why")
    return Measured(name, table, (datetime.now() - started).total_seconds(), started)


def compile_bytecode(root: Path = CODE_ROOT) -> None:
    """Bring the project's bytecode up to date, as a user's first run of each command does."""
    for folder in ("services", "scripts", "migrations", "benchmarks"):
        compileall.compile_dir(root / folder, quiet=1)
    compileall.compile_file(root / "tasks.py", quiet=1)


def rewrite_latest(document: Path, measured: list[Measured], *, when: datetime | None = None) -> str:
    """Write the tables into document's latest-run section; return the section written.

    `when` stands for the time a table was measured where its Measured does not say.

    Each benchmark's table is replaced alone, with the time it was measured: `--only NAME` keeps the
    latest tables of the others. Tables come in the order of BENCHMARKS; one of a benchmark no
    longer known is dropped.
    """
    text = document.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise UsageError(f"{document} has no {BEGIN} ... {END} section; add the two markers where the latest "
                         "run goes")
    when = when or datetime.now()
    before, rest = text.split(BEGIN, 1)
    old, after = rest.split(END, 1)
    tables = _tables(old)
    for item in measured:
        tables[item.name] = (f"### {item.name} ({item.seconds:.0f} s, {item.started or when:%Y-%m-%d %H:%M})\n\n"
                             f"{item.table}\n")
    lines = [BEGIN, f"## Latest `invoke bench` run of each benchmark ({os.cpu_count()} cores)", "",
             "Each table is the latest run of its benchmark (`invoke bench --only NAME` replaces that one alone).", ""]
    lines += [tables[name] for name in BENCHMARKS if name in tables]
    section = "\n".join(lines) + END
    write_atomic(document, before + section + after)
    return section


def _tables(section: str) -> dict[str, str]:
    # The section's tables by benchmark name: each from its "### name (...)" heading to the next.
    tables: dict[str, str] = {}
    for block in section.split("\n### ")[1:]:
        name = block.split(" ", 1)[0].split("\n", 1)[0]
        tables[name] = "### " + block.rstrip("\n") + "\n"
    return tables
