"""Benchmark how fast commands start (issue 9's figures); prints a Markdown table.

    python benchmarks/bench_startup.py [--runs N]

`invoke --list` and a script's `--help` against the floor of the same interpreter starting and
exiting (`python -c pass`) and of invoke listing a one-task collection, interleaved, medians.
Nothing is written anywhere. Not a test: it never fails for being slow.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks._harness import timed  # noqa: E402
from tests.support.cli import INVOKE  # noqa: E402

#: (what, argv, goal in seconds or None)
MEASURED = (
    ("`invoke --list`", [*INVOKE, "--list"], 0.3),
    ("`python scripts/export_user_data.py --help`", [sys.executable, str(REPO / "scripts/export_user_data.py"),
                                                     "--help"], 0.15),
    ("`invoke setup --help`", [*INVOKE, "setup", "--help"], 0.3),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp)
        (empty / "tasks.py").write_text("from invoke import task\n\n\n@task\ndef hello(c):\n    pass\n")
        floors = {"python -c pass": ([sys.executable, "-c", "pass"], REPO),
                  "invoke listing a one-task collection": ([sys.executable, "-m", "invoke", "--list"], empty)}
        times: dict[str, list[float]] = {name: [] for name in [*floors, *(m[0] for m in MEASURED)]}
        for _ in range(args.runs):
            for name, (argv, cwd) in floors.items():
                times[name].append(timed(argv, cwd=cwd))
            for name, argv, _ in MEASURED:
                times[name].append(timed(argv, cwd=REPO))
    med = {name: statistics.median(values) for name, values in times.items()}
    print("| what | median | runs | goal | result |")
    print("|---|---|---|---|---|")
    for name in floors:
        print(f"| floor: {name} | {med[name]:.3f} s | {args.runs} | | |")
    for name, _, goal in MEASURED:
        result = "met" if med[name] <= goal else "missed"
        print(f"| {name} | {med[name]:.3f} s | {args.runs} | <= {goal} s | {result} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
