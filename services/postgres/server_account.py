"""The unprivileged OS account that runs PostgreSQL when piper-ops itself runs as root.

PostgreSQL refuses to run as root, and CI and containers run as root. This module is the root path
only (DESIGN invariants 6 and 8): it creates a system account on Linux when none exists, tells
whether that account can reach a path, and finds a place it can reach when it cannot (a root-owned
copy under /var/lib/piper-ops). It never loosens the permissions of a directory outside the project.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from services.errors import ClusterError

ACCOUNT_NAME = "piper-pg"
#: Root-owned home for what the account needs when the checkout is closed to it (mode 0755).
RUNTIME_ROOT = Path("/var/lib/piper-ops")


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    groups: frozenset[int]


def needed() -> bool:
    """Return True when this process runs as root and so must hand the server to another account."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def ensure_account() -> Account:
    """Return the server account, creating it (Linux, root only) when it does not exist yet."""
    account = find_account()
    if account is not None:
        return account
    return _account(_create_account(os.environ.get("PIPER_SERVER_ACCOUNT", ACCOUNT_NAME)))


def find_account() -> Account | None:
    """Return the server account, or None when it does not exist (nothing is created)."""
    try:
        return _account(pwd.getpwnam(os.environ.get("PIPER_SERVER_ACCOUNT", ACCOUNT_NAME)))
    except KeyError:
        return None


def _account(entry: pwd.struct_passwd) -> Account:
    name = entry.pw_name
    if entry.pw_uid == 0:
        raise ClusterError(f"account {name!r} is root; set PIPER_SERVER_ACCOUNT to an unprivileged account")
    groups = {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if name in g.gr_mem}
    return Account(name, entry.pw_uid, entry.pw_gid, frozenset(groups))


def _create_account(name: str) -> pwd.struct_passwd:
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    if not sys.platform.startswith("linux") or not Path(useradd).exists():
        raise ClusterError(
            f"PostgreSQL cannot run as root and account {name!r} does not exist; create it, "
            "or run piper-ops as an ordinary user"
        )
    nologin = next((p for p in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false") if Path(p).exists()), "/bin/false")
    result = subprocess.run(
        [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", nologin, "--comment", "piper-ops PostgreSQL server", name],
        capture_output=True, text=True, check=False,
    )
    if result.returncode not in (0, 9):  # 9: created meanwhile by a concurrent setup
        raise ClusterError(f"could not create account {name!r} for the server: {result.stderr.strip()}")
    return pwd.getpwnam(name)


def can_reach(account: Account, path: Path, *, write: bool = False) -> bool:
    """Return True when the account can enter every directory on the way to path (and write it)."""
    path = Path(path).absolute()
    chain = [*reversed(path.parents), path]
    for index, directory in enumerate(chain):
        try:
            info = os.stat(directory)
        except FileNotFoundError:
            # What does not exist yet will be created by root with the right owner.
            return True
        last = index == len(chain) - 1
        need = stat.S_IXOTH if stat.S_ISDIR(info.st_mode) else stat.S_IROTH
        if last and write:
            need |= stat.S_IWOTH
        if not _permits(account, info, need):
            return False
    return True


def _permits(account: Account, info: os.stat_result, other_bits: int) -> bool:
    mode = info.st_mode
    if info.st_uid == account.uid:
        return mode & (other_bits << 6) == other_bits << 6
    if info.st_gid in account.groups:
        return mode & (other_bits << 3) == other_bits << 3
    return mode & other_bits == other_bits


def runtime_dir(*parts: str) -> Path:
    """Return a root-owned directory under /var/lib/piper-ops that every account can enter."""
    path = RUNTIME_ROOT.joinpath(*parts)
    for directory in [RUNTIME_ROOT, *[RUNTIME_ROOT.joinpath(*parts[: i + 1]) for i in range(len(parts))]]:
        directory.mkdir(mode=0o755, exist_ok=True)
    return path


def reachable_copy(root: Path, members: list[str], account: Account) -> Path:
    """Return root when the account can reach its members, else a root-owned copy it can reach.

    Used for the server binaries of a virtual environment inside a home directory of mode 0700.
    `members` are paths relative to root that are copied with their layout kept, so that relative
    library paths (a wheel's `$ORIGIN/../../../pkg.libs` RPATH) still resolve in the copy. A copy
    is named after what it copies and is never replaced, so a running server never loses its files.
    """
    if all(can_reach(account, root / member) for member in members):
        return root
    from filelock import FileLock

    target = copy_location(root, members)
    with FileLock(str(target) + ".lock", timeout=300, mode=0o600):
        if not (target / ".complete").exists():
            _prune_orphaned_copies()
            _copy_members(root, members, target)
    return target


def _prune_orphaned_copies() -> None:
    """Remove copies whose source is gone (a deleted checkout or virtualenv): nothing can use them."""
    for stamp in (RUNTIME_ROOT / "pginstall").glob("*/.complete"):
        try:
            source = Path(stamp.read_text().strip())
        except OSError:
            continue
        if source.is_absolute() and not source.exists():
            shutil.rmtree(stamp.parent, ignore_errors=True)
            Path(str(stamp.parent) + ".lock").unlink(missing_ok=True)


def copy_location(root: Path, members: list[str]) -> Path:
    """Return where reachable_copy puts (or has put) its copy of root's members."""
    digest = hashlib.sha256(str(root).encode())
    for member in members:
        info = os.stat(root / member)
        digest.update(f"{member}:{info.st_mtime_ns}".encode())
    return RUNTIME_ROOT / "pginstall" / digest.hexdigest()[:16]


def _copy_members(root: Path, members: list[str], target: Path) -> None:
    runtime_dir("pginstall")
    staging = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    for member in members:
        destination = staging / member
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(root / member, destination, symlinks=True)
    for directory, _, _ in os.walk(staging):
        os.chmod(directory, 0o755)
    (staging / ".complete").write_text(str(root))
    os.rename(staging, target)


def chown_tree(path: Path, account: Account) -> None:
    """Give path (and what it holds) to the account; used only on directories piper-ops created."""
    for root, dirs, files in os.walk(path):
        os.chown(root, account.uid, account.gid, follow_symlinks=False)
        for name in dirs + files:
            os.chown(os.path.join(root, name), account.uid, account.gid, follow_symlinks=False)
