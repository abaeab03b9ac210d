"""One user's data as a versioned, checksummed document (the format: services/users/documents.py).

There are two export paths, one set of statements (services/database/statements.py). A local
export runs through the server's own psql: starting Python's PostgreSQL driver costs more than
psql's whole export of 10 MB, and psql writes the document straight into its file. The driver
path stays for what psql cannot do here: hosted production (the embedded psql has no TLS), an
export inside a larger transaction (delete-user's), and the wording of every refusal.

Where exports go: the export folder, `exports/` in the checkout (git-ignored, 0700; its files
0600). An --output that git would track is refused (`refuse_trackable`); standard output
redirected to such a file is still written (the shell made it), and `trackable_destination` says
so, for the command to warn.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services import credentials, gitinfo, identifiers
from services.database import events, sessions, stamp, statements
from services.errors import PersonalDataRefused, PiperError, UsageError
from services.files import private_dir
from services.postgres import psql_sessions, servers
from services.profiles import Profile
from services.project import Project
from services.users import documents, store

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

#: The export folder, in the checkout: git-ignored (.gitignore), 0700, where every documented export goes.
EXPORT_FOLDER = "exports"


def export_folder(project: Project) -> Path:
    """Return the project's export folder, created (or closed) to mode 0700.

    A symbolic link to a directory (the user's own place for exports) is used as it is: its mode is
    not ours to change. Anything else that is not a directory is an error naming it.
    """
    folder = project.root / EXPORT_FOLDER
    if folder.is_symlink() or folder.exists():
        if not folder.is_dir():
            raise UsageError(f"{folder} is not a directory, so it cannot be the export folder; move it away, "
                             "or pass another --output")
        if folder.is_symlink():
            return folder
    return private_dir(project.root, EXPORT_FOLDER)


def is_in_export_folder(project: Project, path: Path) -> bool:
    """Return True when path names a file directly in the project's export folder (whether or not it exists yet)."""
    return Path(os.path.realpath(Path(path).absolute().parent)) == Path(os.path.realpath(project.root / EXPORT_FOLDER))


def trackable_destination(project: Project, path: Path | None) -> Path | None:
    """Return path relative to the checkout when git would track a file there (it is inside the checkout and not
    ignored: `git add .` would commit it); None otherwise, and for None."""
    if path is None:
        return None
    try:
        relative = Path(os.path.realpath(path)).relative_to(os.path.realpath(project.root))
    except ValueError:
        return None
    return relative if gitinfo.would_track(project.root, relative) else None


def refuse_trackable(project: Project, path: Path, fix: str) -> None:
    """Refuse (PersonalDataRefused) to put personal data at path when git would track it there (invariant 3)."""
    tracked = trackable_destination(project, path)
    if tracked is not None:
        raise PersonalDataRefused(f"{tracked} would hold personal data inside the checkout where git does not ignore "
                                  f"it (`git add` would commit it); {fix}")


def open_file_path(fd: int) -> Path | None:
    """Return the path of the regular file open on fd (standard output redirected to a file), or None.

    None for anything else (a terminal, a pipe, a device) and when the path cannot be found. Asked
    of the system (macOS: F_GETPATH; Linux: /proc/self/fd), else looked for in the current
    directory, where `> U.json` puts it; a name is believed only if it is that very file.
    """
    try:
        info = os.fstat(fd)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    candidates: list[str] = []
    try:
        if sys.platform == "darwin":
            import fcntl

            candidates.append(os.fsdecode(fcntl.fcntl(fd, fcntl.F_GETPATH, bytes(1024)).rstrip(b"\0")))
        elif os.path.isdir("/proc/self/fd"):
            candidates.append(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        pass
    for candidate in candidates:
        if _same_file(candidate, info):
            return Path(candidate)
    try:
        with os.scandir(".") as entries:
            for entry in entries:
                if entry.inode() == info.st_ino and _same_file(entry.path, info):
                    return Path(entry.path).absolute()
    except OSError:
        pass
    return None


def _same_file(path: str, info: os.stat_result) -> bool:
    try:
        return os.path.samestat(os.stat(path), info)
    except OSError:
        return False


def export_user(profile: Profile, project: Project, username: str, keys: list[str] | None = None, *,
                into: Path) -> tuple[int, str]:
    """Write one user's export document into the file `into` and record the export; return (size, checksum).

    `into` is an empty file the caller made (and later publishes or copies); the export is
    recorded only once the document is complete in it. PostgreSQL writes the payload's JSON
    itself, so megabytes of preferences are never parsed or serialised again in Python. A local
    environment's export runs through the server's own psql (see _export_with_psql); a hosted
    one, and any export psql cannot finish cleanly, through the driver, which also words every
    refusal.
    """
    identifiers.validate_username(username)
    if not profile.hosted:
        exported = _export_with_psql(profile, project, username, keys, into)
        if exported is not None:
            return exported
    with store.user_data_connection(profile, project, acting_user=username) as conn:
        document, checksum = export_in_transaction(conn, profile, username, keys)
        with open(into, "wb") as handle:  # on disk before the commit: no record of an export that was not written
            handle.write(document)
            handle.flush()
            os.fsync(handle.fileno())
    return len(document), checksum


def export_in_transaction(conn: psycopg.Connection, profile: Profile, username: str, keys: list[str] | None,
                          *, lock: bool = False) -> tuple[bytes, str]:
    """Return the export document and its checksum, built and recorded inside the caller's transaction.

    The row is locked (FOR SHARE, or FOR UPDATE with lock=True) until the transaction ends: nobody
    changes or deletes the user between the check, the payload and the record.
    """
    from psycopg.adapt import Loader

    class RawText(Loader):
        def load(self, data: Any) -> bytes:  # the JSON text's UTF-8 bytes, never decoded and encoded again
            return bytes(data)

    table = store.table_for(profile)
    user_id = store.user_row(conn, profile, username, "id", lock=lock or "share")["id"]
    parameters = _export_parameters(username, keys)
    check = conn.execute(statements.render_sql(statements.export_check_sql(table)), parameters).fetchone()
    assert check is not None  # the row was found (and locked) by user_row in this transaction
    _, revision, _, has_keys = check
    if not has_keys:
        present = [k for (k,) in conn.execute(f"SELECT jsonb_object_keys(preferences) FROM {table} WHERE id = %s",
                                              (user_id,))]
        missing = next((k for k in keys or [] if k not in present), "?")
        raise UsageError(f"user {username!r} has no preference key {missing!r}; keys: {', '.join(sorted(present))}")
    with conn.cursor() as cur:
        cur.adapters.register_loader("text", RawText)
        payload = cur.execute(statements.render_sql(_payload_sql(profile)), parameters).fetchone()
    assert payload is not None  # the row was found by user_row in this transaction
    document, checksum = documents.build_export(environment=profile.name, database=profile.database.name,
                                                schema_revision=revision, payload=payload)
    events.record_event(conn, profile.name, "export", user_id=user_id, username=username, checksum=checksum,
                        details={"keys": keys, "bytes": len(document)})
    return document, checksum


def _payload_sql(profile: Profile) -> str:
    table = store.table_for(profile)
    return statements.payload_sql(table, store.EXPORTED_FIELDS[table], with_learning_data=table == "alpha_users")


def _export_parameters(username: str, keys: list[str] | None) -> dict[str, str]:
    return {"username": username, "keys": statements.keys_parameter(keys), "stamp_key": stamp.STAMP_KEY}


def _export_with_psql(profile: Profile, project: Project, username: str, keys: list[str] | None,
                      into: Path) -> tuple[int, str] | None:
    """Export through the server's own psql, in one transaction; None when the driver must do it.

    Starting Python's PostgreSQL driver costs more than psql's whole export of 10 MB, so a local
    export, the common case, runs the driver path's own SQL (export_check_sql, payload_sql,
    EVENT_SQL) through psql instead, and psql writes the document straight into `into`. Anything
    but a clean success (no such user, a missing key, another environment's stamp, no psql, any
    error) rolls back and returns None; the driver path then exports or says what is wrong.
    """
    try:
        server = servers.locate(profile, project)
        owner = credentials.target(profile, project, "owner")
    except PiperError:
        return None
    if not (server.bin_dir / "psql").exists():
        return None
    variables = {**_export_parameters(username, keys),
                 **events.event_values(profile.name, "export", user_id=None, username=username)}
    table = store.table_for(profile)
    try:
        with psql_sessions.psql_session(server, owner.dbname, owner.user, owner.password, variables=variables,
                                        options=f"-c {sessions.ACTING_USER_SETTING}={username}") as psql:
            psql.send("BEGIN ISOLATION LEVEL REPEATABLE READ;\n")  # one snapshot for the check and the payload
            # As the driver path, the row is locked: nobody changes or deletes the user until the export is
            # recorded. (A change committed since the snapshot makes this fail; the driver path takes over.)
            check = psql.query_row(statements.export_check_sql(table) + " FOR SHARE")
            if check is None or len(check) != 4 or check[0] != profile.name.encode() or not check[2] or check[3] != b"t":
                return None
            head = documents.export_head(environment=profile.name, database=profile.database.name,
                                         schema_revision=check[1].decode() or None)
            psql.set("head", head.decode())
            if not psql.query_to_file(f"SELECT :'head', payload.* FROM ({_payload_sql(profile)}) AS payload", into):
                return None
            sealed = _seal_export(into, head)
            if sealed is None:
                return None
            psql.set("user_id", check[2].decode())
            psql.set("checksum", sealed[1])
            psql.set("details", json.dumps({"keys": keys, "bytes": sealed[0]}, ensure_ascii=False))
            psql.send(statements.EVENT_SQL + ";\nCOMMIT;\n")
            failure = psql.finish()
    except (OSError, ValueError) as exc:  # psql could not start or stopped half-way; a path it cannot take
        failure = str(exc)
    if failure is not None:
        log.debug("the export through psql did not finish (%s); exporting through the driver", failure)
        return None
    return sealed


def _seal_export(path: Path, head: bytes) -> tuple[int, str] | None:
    """Finish a document psql wrote (head, payload, newline): hash the payload, put the checksum in
    place of the newline, and flush it all to disk. Return (size, checksum), or None if the file is
    not what psql should have written (psql does not report a failed write, so its start and its
    end are checked). The file is read in pieces: megabytes of preferences never sit in memory."""
    digest = hashlib.sha256()
    with open(path, "r+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size < len(head) + 3:
            return None
        handle.seek(size - 2)
        if handle.read(2) != b"}\n":
            return None
        handle.seek(0)
        if handle.read(len(head)) != head:
            return None
        # The disk writes what psql wrote while the payload is read back from memory and hashed.
        failed: list[OSError] = []
        flushing = threading.Thread(target=_fsync_into, args=(handle.fileno(), failed))
        flushing.start()
        try:
            buffer = memoryview(bytearray(1 << 20))
            remaining = size - 1 - len(head)
            while remaining:
                count = handle.readinto(buffer[:min(len(buffer), remaining)])
                if not count:
                    return None
                digest.update(buffer[:count])
                remaining -= count
        finally:
            flushing.join()
        if failed:
            raise failed[0]  # the disk refused what psql wrote (a later fsync might not say so again)
        checksum = digest.hexdigest()
        tail = documents.export_tail(checksum)
        handle.seek(size - 1)
        handle.write(tail)
        handle.truncate()
        handle.flush()
        os.fsync(handle.fileno())  # all of it on disk before the export is recorded
    return size - 1 + len(tail), checksum


def _fsync_into(fd: int, failed: list[OSError]) -> None:
    try:
        os.fsync(fd)
    except OSError as exc:
        failed.append(exc)
