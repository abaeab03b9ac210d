"""What `invoke bench` does: run the benchmarks and rewrite docs/BENCHMARKS.md's latest-run section."""

from __future__ import annotations

import argparse
import sys

from services import benchmarks
from services.errors import UsageError
from services.project import CODE_ROOT


def run_bench(args: argparse.Namespace) -> int:
    names = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else list(benchmarks.BENCHMARKS)
    unknown = [n for n in names if n not in benchmarks.BENCHMARKS]
    if unknown or not names:
        raise UsageError(f"--only names no benchmark ({', '.join(unknown) or 'none'}); choose from "
                         f"{', '.join(benchmarks.BENCHMARKS)}")
    document = CODE_ROOT / "docs" / "BENCHMARKS.md"
    section = ""
    benchmarks.compile_bytecode()
    for name in names:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        item = benchmarks.run_benchmark(name, args.runs)
        if args.dry_run:
            print(f"### {item.name}\n\n{item.table}\n")
        else:  # each table as soon as it is measured: a benchmark that fails later loses none of them
            section = benchmarks.rewrite_latest(document, [item])
    if not args.dry_run:
        print(section)
        print(f"bench: {document.relative_to(CODE_ROOT)} rewritten ({', '.join(names)})", file=sys.stderr)
    return 0
