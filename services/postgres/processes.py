"""The processes behind a server's lock files: is a PID a live postgres, and which processes use a path.

Every command that finds a server asks whether the PID in postmaster.pid is a live postgres (see
servers._lock_owner), so that question is answered from /proc on Linux, where it costs a read of
one small file; importing psutil alone costs 12 ms of each command's start-up. Elsewhere (macOS)
psutil answers it, and it does all the rest here.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessFacts:
    """What tells a live postgres from a PID that was reused or a process that has died."""

    name: str
    created: float
    """When it started, in seconds since the epoch (what postmaster.pid's third line holds)."""
    zombie: bool


def facts(pid: int) -> ProcessFacts | None:
    """Return the facts of a process, or None when there is no such process.

    Raises PermissionError when the system does not let this user see the process (it exists).
    """
    if sys.platform.startswith("linux") and os.path.isdir("/proc/self"):
        return _from_proc(pid)
    import psutil

    try:
        process = psutil.Process(pid)
        return ProcessFacts(process.name(), process.create_time(), process.status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:
        raise PermissionError(f"process {pid}") from None


def _from_proc(pid: int) -> ProcessFacts | None:
    # /proc/PID/stat: "PID (COMM) STATE PPID ..."; field 22 is the start time in clock ticks since boot
    # (proc(5)). COMM may hold spaces and parentheses: it ends at the last ")".
    try:
        line = Path(f"/proc/{pid}/stat").read_bytes().decode("utf-8", "replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    name = line[line.index("(") + 1:line.rindex(")")]
    fields = line[line.rindex(")") + 2:].split()
    return ProcessFacts(name, _boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK"), fields[0] == "Z")


@functools.cache
def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def kill_processes_using(path: Path) -> None:
    """Kill the processes whose command line names path (a server left running in a staging directory)."""
    import psutil

    needle = str(path)
    for process in psutil.process_iter(["cmdline"]):
        try:
            if any(needle in part for part in process.info["cmdline"] or ()):
                process.kill()
                process.wait(timeout=10)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.TimeoutExpired):
            continue
