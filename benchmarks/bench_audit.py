"""Benchmark the PIPER.md audit against grep and git grep with the same words, in the same run.

    python benchmarks/bench_audit.py [--size-mb 100] [--files 20000] [--memory-gb 1]

Generates its data in a temporary directory; prints a markdown table (docs/BENCHMARKS.md). The audit
runs with its default workers (one process per core) and again with `--workers 1`.
Never fails for being slow: it prints figures.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORDS = ("the of and to in is for on that with as by this be are from at or it an was can will Available Privacy "
         "evaluate relevant configuration assistant capabilities integration fallback behaviour user data model "
         "response system calendar project task review version 2024 3.11 release notes context memory summary "
         "valid evaluation Vancouver avatar private dragonfly Christianity xianxia").split()
TERMS = ("christian", "xian", "VA", "DRAGONS")  # the ADR's grep words, any case as in environments/dev.yaml
PROFILE = """name: bench
branch: main
default_user: {username: bench, email: bench@example.invalid}
database: {name: piper_bench, port: 54398}
audit:
  terms:
    - {term: christian, kind: name}
    - {term: xian, kind: username}
    - {term: VA, kind: organisation}
    - {term: DRAGONS, kind: organisation}
"""


def _text(size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    lines, total = [], 0
    while total < size:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 16))) + "\n"
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()


def _write_big(path: Path, size: int) -> None:
    block = _text(8 << 20, 1)
    with open(path, "wb") as out:
        written = 0
        while written < size:
            out.write(block[: size - written])
            written += len(block)


def _project(root: Path) -> None:
    (root / "environments").mkdir(parents=True)
    (root / "config").mkdir()
    (root / "environments" / "bench.yaml").write_text(PROFILE)


def _timed(argv: list[str], cwd: Path, env: dict[str, str] | None = None, runs: int = 3) -> tuple[float, int]:
    best, code = float("inf"), 0
    for _ in range(runs):
        start = time.perf_counter()
        code = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        best = min(best, time.perf_counter() - start)
    return best, code


def _tree_rss_kb(pid: int) -> int:
    # VmRSS of pid and all its descendants (the audit's worker processes), from /proc.
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:  # ended meanwhile
            continue
        total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        stack += [int(child) for child in children]
    return total


def _peak_tree_rss_mb(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    # Sampled every 5 ms: the sum over the processes, which ru_maxrss (one process at a time) misses.
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss_kb(proc.pid))
        time.sleep(0.005)
    return peak / 1024


def _peak_rss_mb(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    # ru_maxrss of waited-for children (kilobytes on Linux): run each measurement in a fresh helper.
    code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, *argv], cwd=cwd, env=env, capture_output=True, text=True)
    return int(out.stdout.strip()) / 1024


def main() -> int:
    cli = argparse.ArgumentParser(description=__doc__)
    cli.add_argument("--size-mb", type=int, default=100)
    cli.add_argument("--files", type=int, default=20000)
    cli.add_argument("--memory-gb", type=float, default=1.0)
    args = cli.parse_args()
    audit_cmd = [sys.executable, str(ROOT / "scripts" / "audit_piper_md.py")]
    pattern = "|".join(TERMS)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        env = dict(os.environ, PIPER_ROOT=str(base / "p"))
        env.pop("PIPER_ENV", None)
        _project(base / "p")
        big = base / "p" / "big.txt"
        _write_big(big, args.size_mb << 20)
        ours, code = _timed(audit_cmd + [str(big)], base, env)
        ours_one, _ = _timed(audit_cmd + ["--workers", "1", str(big)], base, env)
        for label, locale in (("C", "C"), ("C.UTF-8", "C.UTF-8")):
            genv = dict(os.environ, LC_ALL=locale)
            grep, _ = _timed(["grep", "-c", "-i", "-w", "-E", pattern, str(big)], base, genv)
            rows.append((f"{args.size_mb} MB file vs `grep -c -i -w -E` (LC_ALL={label})", ours, grep, 1.2))
            if locale == "C":
                rows.append(("same, ours with `--workers 1` (one core, as grep)", ours_one, grep, 1.2))
        print(f"# audit exit code on the big file: {code}", file=sys.stderr)

        repo = base / "repo"
        _project(repo)
        rng = random.Random(2)
        corpus = _text(40 << 20, 3)
        for i in range(args.files):
            folder = repo / f"d{i % 100:02d}"
            folder.mkdir(exist_ok=True)
            start = rng.randrange(0, len(corpus) - 4096)
            (folder / f"f{i:05d}.md").write_bytes(corpus[start:start + rng.randint(200, 4000)])
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
        subprocess.run(["git", "add", "."], cwd=repo, check=True)
        renv = dict(os.environ, PIPER_ROOT=str(repo))
        renv.pop("PIPER_ENV", None)
        ours_all, _ = _timed(audit_cmd + ["--all"], repo, renv)
        ours_all_one, _ = _timed(audit_cmd + ["--all", "--workers", "1"], repo, renv)
        ggrep, _ = _timed(["git", "grep", "-c", "-i", "-w", "-E", pattern], repo, dict(os.environ, LC_ALL="C"))
        rows.append((f"`--all`, {args.files} files vs `git grep -c -i -w -E`", ours_all, ggrep, 1.5))
        rows.append(("same, ours with `--workers 1`", ours_all_one, ggrep, 1.5))
        shutil.rmtree(repo)
        big.unlink()

        huge = base / "p" / "huge.txt"
        _write_big(huge, int(args.memory_gb * (1 << 30)))
        start = time.perf_counter()
        rss = _peak_rss_mb(audit_cmd + [str(huge)], base, env)
        elapsed = time.perf_counter() - start
        tree = _peak_tree_rss_mb(audit_cmd + [str(huge)], base, env)

    print("| what | ours | baseline | ratio | goal |")
    print("|---|---|---|---|---|")
    for what, mine, theirs, goal in rows:
        print(f"| {what} | {mine:.2f} s | {theirs:.2f} s | {mine / theirs:.2f}× | ≤ {goal}× |")
    print(f"| peak RSS scanning a {args.memory_gb:g} GB file, largest process | {rss:.0f} MB ({elapsed:.1f} s) | — | — "
          "| ≤ 100 MB |")
    print(f"| same, all processes together (sampled every 5 ms) | {tree:.0f} MB | — | — | ≤ 100 MB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
