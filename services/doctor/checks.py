"""What one check of `invoke doctor` gives back: a `Check`, and the facts every check may read (`Context`).

A check is a small function that looks and returns one or more `Check`s; it never prints, never
changes anything (no lock file, no `.env` write, no server start) and never raises for what it
finds: a broken state is its answer, with the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from services.postgres import binaries, server_account
from services.profiles import Profile
from services.project import Project

Status = Literal["ok", "warn", "fail"]
STATUSES: tuple[Status, ...] = ("ok", "warn", "fail")
#: Scopes other than an environment's name.
MACHINE, PROJECT = "machine", "project"


@dataclass(frozen=True)
class Check:
    """One finding: a stable name, ok|warn|fail, what was seen, and what to do when it is not ok.

    `data` holds the same facts for machines (versions, ports, ages): plain JSON values, no paths
    of people's homes, no secrets.
    """

    name: str
    status: Status
    detail: str
    fix: str | None = None
    scope: str = MACHINE
    data: dict[str, Any] = field(default_factory=dict)


def ok(name: str, detail: str, **data: Any) -> Check:
    return Check(name, "ok", detail, None, data=data)


def warn(name: str, detail: str, fix: str, **data: Any) -> Check:
    return Check(name, "warn", detail, fix, data=data)


def fail(name: str, detail: str, fix: str, **data: Any) -> Check:
    return Check(name, "fail", detail, fix, data=data)


@dataclass
class Context:
    """What a doctor run knows once, shared by its checks: the project, the account, versions seen."""

    project: Project
    profiles: list[Profile]
    account: server_account.Account | None
    versions: dict[Path, str] = field(default_factory=dict)

    def server_version(self, bin_dir: Path) -> str:
        """Return the major version of the server binaries in bin_dir (asked once per run)."""
        if bin_dir not in self.versions:
            self.versions[bin_dir] = binaries.major_version(bin_dir)
        return self.versions[bin_dir]


def size_text(size: int) -> str:
    """Return a byte count for people: 12.3 GiB, 512 MiB."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit in ("B", "KiB") else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
