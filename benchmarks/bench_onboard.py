"""Benchmark `invoke onboard` by flags against the `invoke setup` it runs (issue 11); prints a Markdown table.

    python benchmarks/bench_onboard.py [--runs N]

Measured in temporary projects on free ports (your own environments are untouched), the two
interleaved so that the machine's moods fall on both alike:
- cold: `invoke onboard --username U --email E --no-import --yes` on a fresh project against
  `invoke setup --env tester` on another fresh one (the goal: onboard <= 2x setup);
- warm: the same two commands again on projects where everything is in place (onboard then
  checks everything and changes nothing);
- with data: cold onboard that also migrates a personal-data file (setup --data-file FILE the baseline).
Onboard does what setup does plus the isolation check (`invoke verify-isolation`), so its cost
over setup is mostly that check. Not a test: it never fails for being slow.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks._harness import timed  # noqa: E402
from tests.support.cli import INVOKE, cli_env  # noqa: E402
from tests.support.projects import make_project, remove_servers  # noqa: E402

USER, EMAIL = "fake.bench", "fake.bench@example.invalid"


def _pair(argv: list[str], warm_runs: int) -> tuple[float, list[float]]:
    """Run argv cold on a fresh project, then warm_runs times again; return (cold, warm times)."""
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp) / "proj")
        env = cli_env(project)
        if "{data}" in argv:
            data = Path(tmp) / "data.json"
            data.write_text(json.dumps({"piper_personal_data": 1, "username": USER if "onboard" in argv else
                                        "tester123", "preferences": {"tone": "plain", "topics": ["fake"] * 50}}))
            argv = [str(data) if arg == "{data}" else arg for arg in argv]
        try:
            cold = timed(argv, env)
            return cold, [timed(argv, env) for _ in range(warm_runs)]
        finally:
            remove_servers(project)


def main() -> int:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--runs", type=int, default=5)
    args = cli.parse_args()
    onboard = [*INVOKE, "onboard", "--username", USER, "--email", EMAIL, "--no-import", "--yes"]
    setup = [*INVOKE, "setup", "--env", "tester"]
    onboard_data = [*INVOKE, "onboard", "--username", USER, "--email", EMAIL, "--data", "{data}", "--yes"]
    setup_data = [*INVOKE, "setup", "--env", "tester", "--data-file", "{data}"]
    cold = {"onboard": [], "setup": [], "onboard_data": [], "setup_data": []}  # type: dict[str, list[float]]
    warm = {"onboard": [], "setup": []}  # type: dict[str, list[float]]
    for _ in range(args.runs):
        for name, argv in (("onboard", onboard), ("setup", setup)):
            first, again = _pair(argv, 2)
            cold[name].append(first)
            warm[name] += again
        for name, argv in (("onboard_data", onboard_data), ("setup_data", setup_data)):
            cold[name].append(_pair(argv, 0)[0])
    med = statistics.median

    def row(what: str, ours: list[float], base: list[float]) -> str:
        ratio = med(ours) / med(base)
        return (f"| {what} | {med(ours):.2f} s | {med(base):.2f} s | {ratio:.2f}x | {len(ours)} | <= 2x setup | "
                f"{'met' if ratio <= 2 else 'missed'} |")

    print("| what | onboard | setup it runs | ratio | runs | goal | result |")
    print("|---|---|---|---|---|---|---|")
    print(row("cold (fresh project), by flags, no data", cold["onboard"], cold["setup"]))
    print(row("warm (all in place), by flags, no data", warm["onboard"], warm["setup"]))
    print(row("cold, with a personal-data file (setup --data-file)", cold["onboard_data"], cold["setup_data"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
