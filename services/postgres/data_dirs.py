"""An environment's data directory: create it from the template cluster, relocate it when root, remove it.

The data directory is the project's postgres_data/<env>, or, when root, a directory under
/var/lib/piper-ops that postgres_data/<env> links to (see _data_home).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from dataclasses import replace
from pathlib import Path

from services.errors import ClusterError
from services.postgres import server_account, servers, templates

log = logging.getLogger(__name__)


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
    if target.exists() or target.is_symlink():
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        elif target.is_symlink() and not target.exists():
            target.unlink()
        else:
            raise ClusterError(
                f"{target} exists but holds no PostgreSQL cluster; move it away or set database.data_dir "
                f"in environments/{server.environment}.yaml"
            )
    home = _data_home(server)
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


def initial_password(server: servers.Server) -> str | None:
    """Return the throwaway superuser password of a cluster copied from the template, if not yet replaced."""
    try:
        return (server.data_dir / templates.INITIAL_PASSWORD_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def forget_initial_password(server: servers.Server) -> None:
    """Delete the throwaway password once the environment's own has replaced it."""
    (server.data_dir / templates.INITIAL_PASSWORD_FILE).unlink(missing_ok=True)


def remove(server: servers.Server) -> None:
    """Stop the server and delete its data directory (and a relocated one behind a link)."""
    target = server.project_data_dir
    if target.exists() and any(target.iterdir()) and not (target / "PG_VERSION").exists():
        raise ClusterError(f"{target} is not a PostgreSQL data directory; piper-ops deletes only its own clusters, "
                           f"so it was left alone (check database.data_dir in environments/{server.environment}.yaml)")
    servers.stop(server)
    if target.is_symlink():
        real = Path(os.path.realpath(target))
        target.unlink()
        shutil.rmtree(real, ignore_errors=True)
        try:
            real.parent.rmdir()  # the per-project directory under /var/lib/piper-ops, once empty
        except OSError:
            pass
    elif target.exists():
        shutil.rmtree(target)
    if server.socket_dir != server.data_dir / servers.SOCKET_DIR:
        shutil.rmtree(server.socket_dir, ignore_errors=True)


def _data_home(server: servers.Server) -> Path:
    """Return the directory that will hold the data directory.

    As an ordinary user that is the project's own postgres_data/. As root the server account may
    not be able to enter the checkout (a home directory of mode 0700), and its permissions are not
    ours to loosen: the data then lives in a private directory under /var/lib/piper-ops, and
    postgres_data/<env> is a link to it.
    """
    if server.account is None:
        return server.project_data_dir.parent
    digest = hashlib.sha256(str(server.project_data_dir.absolute()).encode()).hexdigest()[:12]
    home = server_account.runtime_dir("data") / digest
    home.mkdir(mode=0o700, exist_ok=True)
    os.chown(home, server.account.uid, server.account.gid)
    return home


def _link(server: servers.Server, real: Path) -> servers.Server:
    """Point the project's data directory at a relocated cluster (atomically) and return the server."""
    target = server.project_data_dir
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    link = target.with_name(f".{target.name}.link-{os.getpid()}")
    link.unlink(missing_ok=True)
    os.symlink(real, link)
    os.rename(link, target)
    data_dir = Path(os.path.realpath(target))
    return replace(server, data_dir=data_dir, socket_dir=servers.socket_dir_for(data_dir, server.port))
