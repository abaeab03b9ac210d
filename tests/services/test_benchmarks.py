"""services/benchmarks.py: what `invoke bench` measures is the code a user runs, bytecode included."""

from __future__ import annotations

import importlib.util
import shutil
import struct

from services import benchmarks
from services.project import CODE_ROOT


def test_the_bytecode_is_brought_up_to_date_before_a_benchmark_runs(tmp_path) -> None:
    # With PYTHONDONTWRITEBYTECODE set, a changed module would be compiled again at every start-up and the
    # start-up figures would measure the compiler; bench compiles everything once first. On a copy of the
    # code without any bytecode, every module gets a .pyc that Python takes as current (its header holds
    # the source's mtime and size).
    root = tmp_path / "checkout"
    for folder in ("services", "scripts", "migrations", "benchmarks"):
        shutil.copytree(CODE_ROOT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(CODE_ROOT / "tasks.py", root / "tasks.py")
    sources = [*root.rglob("*.py")]
    assert not [*root.rglob("*.pyc")]
    benchmarks.compile_bytecode(root)
    stale = []
    for path in sources:
        cached = importlib.util.cache_from_source(str(path))
        try:
            header = open(cached, "rb").read(16)
        except FileNotFoundError:
            stale.append(str(path.relative_to(root)))
            continue
        flags, mtime, size = struct.unpack("<III", header[4:16])
        info = path.stat()
        if header[:4] != importlib.util.MAGIC_NUMBER or flags != 0 or mtime != int(info.st_mtime) & 0xFFFFFFFF \
                or size != info.st_size & 0xFFFFFFFF:
            stale.append(str(path.relative_to(root)))
    assert len(sources) > 80 and stale == []
