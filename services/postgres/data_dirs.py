"""An environment's data directory: create it from the template cluster, relocate it when root, remove it.

The data directory is the project's postgres_data/<env>, or, when root, a directory under
/var/lib/piper-ops that postgres_data/<env> links to (see _data_home).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from services.errors import ClusterError
from services.postgres import server_account, servers, templates

log = logging.getLogger(__name__)

#: Beside PG_VERSION: the environment (and project data directory) a cluster belongs to. It is
#: read without a password, so a command can check a cluster is its own before it stops or deletes it.
OWNER_FILE = "piper-environment"


def initialize(server: servers.Server) -> servers.Server:
    """Create the data directory, a copy of the template cluster, and return the server.

    The template's superuser password is a throwaway written into the copy
    (templates.INITIAL_PASSWORD_FILE); setup replaces it with the environment's own at the first
    start. The copy lands in a temporary sibling that is renamed into place only when complete, so
    an interrupted run leaves nothing that could be mistaken for a real cluster.
    """
    target = server.project_data_dir
    if (server.data_dir / "PG_VERSION").exists():
        return server
    check_can_initialize(server)
    home = _data_home(server)
    servers.remove_leftovers(home, f".{target.name}.deleting-*")  # a teardown killed half-way
    if target.is_symlink() and not target.exists():
        target.unlink()
    elif target.is_dir() and not target.is_symlink():
        target.rmdir()  # empty: check_can_initialize said so
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    if home != target.parent and (home / target.name / "PG_VERSION").exists():
        # The project's link was lost but the relocated cluster is intact: link it again.
        log.warning("reconnecting %s to the existing cluster in %s", target, home / target.name)
        return _link(server, home / target.name)
    template = templates.ensure_template(server)
    staging = home / f".{target.name}.initdb-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    servers.remove_leftovers(home, f".{target.name}.initdb-*")
    try:
        shutil.copytree(template, staging, symlinks=True)
        os.chmod(staging, 0o700)
        _write_owner(staging, server)
        if server.account is not None:
            server_account.chown_tree(staging, server.account)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if home == target.parent:
        os.rename(staging, target)
        return server
    os.rename(staging, home / target.name)
    return _link(server, home / target.name)


def check_can_initialize(server: servers.Server) -> None:
    """Refuse, before anything is written, a data directory path that holds something else than a cluster.

    Free means: nothing there, an empty directory, or a link whose cluster is gone (a relocated
    cluster's link, as root). A link to anything else, or a file, is not ours to replace.
    """
    target = server.project_data_dir
    if (server.data_dir / "PG_VERSION").exists() or not (target.exists() or target.is_symlink()):
        return
    if target.is_symlink() and not target.exists():
        return
    if target.is_dir() and not target.is_symlink() and not any(target.iterdir()):
        return
    raise ClusterError(
        f"{target} exists but holds no PostgreSQL cluster; move it away or set database.data_dir "
        f"in environments/{server.environment}.yaml"
    )


def initial_password(server: servers.Server) -> str | None:
    """Return the throwaway superuser password of a cluster copied from the template, if not yet replaced."""
    try:
        return (server.data_dir / templates.INITIAL_PASSWORD_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def forget_initial_password(server: servers.Server) -> None:
    """Delete the throwaway password once the environment's own has replaced it."""
    (server.data_dir / templates.INITIAL_PASSWORD_FILE).unlink(missing_ok=True)


def check_owner(server: servers.Server) -> None:
    """Refuse a cluster recorded as another environment's, before anything stops, starts or deletes it.

    The record also names the project data directory it was made for (a moved checkout keeps its
    cluster). A cluster made before the record existed is claimed by the next setup (`claim`).
    """
    recorded = _read_owner(server.data_dir)
    other = recorded.split("\n", 1)[0] if recorded is not None else server.environment
    if other != server.environment:
        raise ClusterError(
            f"{server.project_data_dir} holds the cluster of environment {other!r} (its {OWNER_FILE} says so), not "
            f"{server.environment!r}'s; give environments/{server.environment}.yaml a database.data_dir of its own"
        )


def claim(server: servers.Server) -> None:
    """Record the cluster as this environment's when it carries no record yet (clusters made before it)."""
    if (server.data_dir / "PG_VERSION").exists() and _read_owner(server.data_dir) is None:
        _write_owner(server.data_dir, server)


def check_removable(server: servers.Server) -> None:
    """Refuse to delete what is not this environment's own cluster: anything else at its path, or
    a cluster recorded as another environment's."""
    target = server.project_data_dir
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not (target / "PG_VERSION").exists():
        raise ClusterError(f"{target} is not a PostgreSQL data directory; piper-ops deletes only its own clusters, "
                           f"so it was left alone (check database.data_dir in environments/{server.environment}.yaml)")
    check_owner(server)


def remove(server: servers.Server) -> None:
    """Stop the server and delete its data directory (and a relocated one behind a link).

    The directory is first renamed aside (`.<env>.deleting-<pid>`), then removed: a teardown
    killed half-way leaves no half-deleted cluster where the environment's was, and the next
    setup or teardown removes what is left aside.
    """
    check_removable(server)
    target = server.project_data_dir
    servers.stop(server)
    real = Path(os.path.realpath(target)) if target.is_symlink() else target
    aside = real.with_name(f".{real.name}.deleting-{os.getpid()}")
    if real.exists():
        os.rename(real, aside)
    if target.is_symlink():
        target.unlink()
    home = _data_home_path(server)  # where a relocated cluster lives, even when the link is gone
    for parent in {real.parent, home}:
        servers.remove_leftovers(parent, f".{target.name}.deleting-*")
    if home != target.parent:
        try:
            home.rmdir()  # the per-project directory under /var/lib/piper-ops, once empty
        except OSError:
            pass
    if server.socket_dir != server.data_dir / servers.SOCKET_DIR:
        shutil.rmtree(server.socket_dir, ignore_errors=True)


@dataclass(frozen=True)
class OrphanedCluster:
    """A relocated cluster (root only) that no checkout's postgres_data/<env> links to any more."""

    path: Path
    environment: str
    project_data_dir: Path
    """Where the checkout it was made for kept its link."""


def orphaned_clusters() -> list[OrphanedCluster]:
    """Return the clusters under /var/lib/piper-ops/data whose checkout no longer links to them.

    A checkout deleted, or cloned anew without its postgres_data/, leaves its cluster there; a new
    clone at the same path adopts it at its next setup. Ordinary users keep clusters inside the
    checkout, so there are none to find.
    """
    found = []
    for record in sorted(server_account.RUNTIME_ROOT.glob(f"data/*/*/{OWNER_FILE}")):
        try:
            environment, project_dir = record.read_text(encoding="utf-8").splitlines()[:2]
        except (OSError, ValueError):
            continue
        cluster = record.parent
        link = Path(project_dir)
        if not (link.is_symlink() and Path(os.path.realpath(link)) == cluster):
            found.append(OrphanedCluster(cluster, environment, link))
    return found


def _owner_text(server: servers.Server) -> str:
    return f"{server.environment}\n{server.project_data_dir.absolute()}\n"


def _read_owner(data_dir: Path) -> str | None:
    try:
        return (data_dir / OWNER_FILE).read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None


def _write_owner(data_dir: Path, server: servers.Server) -> None:
    path = data_dir / OWNER_FILE
    path.write_text(_owner_text(server), encoding="utf-8")
    os.chmod(path, 0o600)
    if server.account is not None:
        os.chown(path, server.account.uid, server.account.gid)


def _data_home(server: servers.Server) -> Path:
    """Return the directory that will hold the data directory.

    As an ordinary user that is the project's own postgres_data/. As root the server account may
    not be able to enter the checkout (a home directory of mode 0700), and its permissions are not
    ours to loosen: the data then lives in a private directory under /var/lib/piper-ops, and
    postgres_data/<env> is a link to it.
    """
    if server.account is None:
        return server.project_data_dir.parent
    server_account.runtime_dir("data")
    home = _data_home_path(server)
    home.mkdir(mode=0o700, exist_ok=True)
    os.chown(home, server.account.uid, server.account.gid)
    return home


def _data_home_path(server: servers.Server) -> Path:
    """Return the directory that holds (or would hold) the data directory, creating nothing."""
    if server.account is None:
        return server.project_data_dir.parent
    digest = hashlib.sha256(str(server.project_data_dir.absolute()).encode()).hexdigest()[:12]
    return server_account.RUNTIME_ROOT / "data" / digest


def _link(server: servers.Server, real: Path) -> servers.Server:
    """Point the project's data directory at a relocated cluster (atomically) and return the server."""
    target = server.project_data_dir
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    for stale in target.parent.glob(f".{target.name}.link-*"):  # a setup killed here before (we hold the lock)
        stale.unlink(missing_ok=True)
    link = target.with_name(f".{target.name}.link-{os.getpid()}")
    os.symlink(real, link)
    os.rename(link, target)
    data_dir = Path(os.path.realpath(target))
    return replace(server, data_dir=data_dir, socket_dir=servers.socket_dir_for(data_dir, server.port))
