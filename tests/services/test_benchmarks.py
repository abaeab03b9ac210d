"""services/benchmarks.py: what `invoke bench` measures is the code a user runs, bytecode included."""

from __future__ import annotations

import importlib.util
import os

from services import benchmarks
from services.project import CODE_ROOT


def test_the_bytecode_is_brought_up_to_date_before_a_benchmark_runs() -> None:
    # With PYTHONDONTWRITEBYTECODE set, a changed module would be compiled again at every start-up and
    # the start-up figures would measure the compiler; bench compiles everything once first.
    benchmarks.compile_bytecode()
    sources = [path for folder in ("services", "scripts") for path in (CODE_ROOT / folder).rglob("*.py")]
    stale = [str(path.relative_to(CODE_ROOT)) for path in sources
             if not os.path.exists(cached := importlib.util.cache_from_source(str(path)))
             or os.stat(cached).st_mtime_ns < os.stat(path).st_mtime_ns]
    assert sources and stale == []
