"""services/postgres/processes.py: what /proc says of a process is what psutil says of it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from services.postgres import processes, servers

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's; elsewhere psutil answers")


def _agrees_with_psutil(pid: int) -> processes.ProcessFacts:
    found = processes.facts(pid)
    assert found is not None
    process = psutil.Process(pid)
    assert found.name == process.name()[:15] or process.name().startswith(found.name)
    assert abs(found.created - process.create_time()) < 0.05
    assert found.zombie == (process.status() == psutil.STATUS_ZOMBIE)
    return found


def test_a_live_postmaster_is_known_by_its_name_and_start_time(alpha) -> None:
    profile, project = alpha
    server = servers.locate(profile, project)
    pid = servers.state(server).pid
    assert pid is not None
    found = _agrees_with_psutil(pid)
    assert "postgres" in found.name and not found.zombie
    # postmaster.pid's third line is the start time the lock check compares with.
    started = int((server.data_dir / "postmaster.pid").read_text().splitlines()[2])
    assert abs(found.created - started) <= 1


def test_a_name_with_spaces_and_parentheses_and_a_zombie_and_a_gone_process() -> None:
    odd = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                            "open('/proc/self/comm', 'w').write('a) b (c')\nprint(flush=True)\ntime.sleep(30)"],
                           stdout=subprocess.PIPE)
    try:
        odd.stdout.readline()
        assert _agrees_with_psutil(odd.pid).name == "a) b (c"
    finally:
        odd.kill()
        odd.wait()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        assert _agrees_with_psutil(child.pid).zombie  # exited, not yet waited for
    finally:
        child.wait()
    assert processes.facts(child.pid) is None
    assert processes.facts(os.getpid()).name == psutil.Process().name()
