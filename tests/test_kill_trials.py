"""kill -9 trials on every write path, at deterministic points (issue 10, sections 4 and 5).

After each kill, what the command writes is there in full or not at all, nothing that holds a
secret is left where another account could read it, and the next run of the same command
finishes the job and leaves nothing behind. docs/RELIABILITY.md lists the guarantees these
trials prove and the figures measured.

A trial never relies on a sleep that may end after the command has finished: it starts the
command in a session of its own, waits until the command is at its point, stops the whole
process group (SIGSTOP), checks it is still there, and sends SIGKILL to the group. A trial whose
point never came fails. The points, reached without changing the product:

- a named step: the command runs with a test-only `sitecustomize` (on PYTHONPATH) whose audit
  hook stops the process at the n-th audit event matching a pattern (the rename of a data
  directory aside, the link that publishes a backup, the removal of a throwaway password);
- a statement: the test holds a lock that one SQL statement of the command needs, so the command
  waits at exactly that statement, seen in pg_stat_activity;
- a child process (pg_ctl, postgres --single) running, a file written (inotify), the first bytes
  of standard output read.

A trial that finds a real problem stays, marked `known_bug(reason)` (a strict xfail), until the
product is fixed.
"""

from __future__ import annotations

import contextlib
import ctypes
import fnmatch
import hashlib
import json
import logging
import os
import select
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import psutil
import psycopg
import pytest
from psycopg.types.json import Jsonb

from scripts import create_test_alpha_user
from services import credentials, db_backups, envfile, migrations
from services.database import connection, schema
from services.database.connection import Target
from services.errors import PiperError
from services.postgres import server_account, servers
from services.profiles import Profile, load_profile, load_profiles
from services.project import Project
from services.users import documents
from tests.support import temp_root
from tests.support.cli import INVOKE, cli_env, run_cli
from tests.support.projects import REPO

pytestmark = pytest.mark.slow
log = logging.getLogger(__name__)

_POLL = 0.003
_TIMEOUT = 90.0
_PAUSE_VARIABLE = "KILL_TRIAL_PAUSE"
_HOOK = '''"""Test-only (tests/test_kill_trials.py): stop this process at a named step of a kill -9 trial.

$KILL_TRIAL_PAUSE is `event|text|n;...`: at the n-th audit event `event` whose arguments contain
`text` (each step in turn) the process sends itself SIGSTOP, and the trial kills it there; with
$KILL_TRIAL_MARK it creates that file instead and goes on.
"""
import os
import signal
import sys

_steps = [step.split("|") for step in os.environ.get("KILL_TRIAL_PAUSE", "").split(";") if step]
if _steps:
    _at = [0, 0]

    def _pause(event, args):
        if _at[0] >= len(_steps):
            return
        name, text, nth = _steps[_at[0]]
        if event != name or text not in repr(args):
            return
        _at[1] += 1
        if _at[1] < int(nth):
            return
        _at[0], _at[1] = _at[0] + 1, 0
        if _at[0] == len(_steps):
            if os.environ.get("KILL_TRIAL_MARK"):
                open(os.environ["KILL_TRIAL_MARK"], "x").close()
            else:
                os.kill(os.getpid(), signal.SIGSTOP)

    sys.addaudithook(_pause)
'''


# --- starting a command and killing it at its point -----------------------------------------------


class Point:
    """Where a trial kills a command: `reached` returns what it saw there, or None until then.

    `wait(seconds)` passes the time between two looks (a point that can be woken by the kernel
    waits on it instead of sleeping).
    """

    def __init__(self, name: str, reached: Callable[[subprocess.Popen, psutil.Process], str | None],
                 pause: str | None = None, close: Callable[[], None] = lambda: None,
                 wait: Callable[[float], None] = time.sleep) -> None:
        self.name = name
        self.reached = reached
        self.pause = pause
        self.close = close
        self.wait = wait


def at_step(name: str, *steps: tuple[str, str, int]) -> Point:
    """The command stopped itself at a named step: the n-th audit event matching each (event, text, n) in turn."""
    def reached(popen: subprocess.Popen, process: psutil.Process) -> str | None:
        try:
            return f"stopped at {name}" if process.status() == psutil.STATUS_STOPPED else None
        except psutil.NoSuchProcess:
            return None
    return Point(name, reached, pause=";".join(f"{event}|{text}|{n}" for event, text, n in steps))


def child_running(name: str, *args: str, also: Callable[[], str | None] | None = None) -> Point:
    """A process below the command named `name` runs with `args` in its command line (and `also` holds)."""
    def reached(popen: subprocess.Popen, process: psutil.Process) -> str | None:
        for child in _descendants(process):
            try:
                if child.name() == name and all(a in child.cmdline() for a in args):
                    extra = also() if also is not None else ""
                    if extra is not None:
                        return f"{name} {' '.join(args)} running (pid {child.pid}){extra}".strip()
            except psutil.Error:
                continue
        return None
    return Point(f"{name} running", reached)


def waiting_at(statement: str, where: Callable[[], Target], *, before: Point | None = None,
               then: Callable[[], None] | None = None, count: int = 1) -> Point:
    """`count` backends wait on a lock the test holds, at a statement starting with `statement`.

    With `before`, the command is first brought to that point, `then` runs (it takes the lock),
    and the command is let go on to the statement.
    """
    state: dict[str, object] = {"conn": None, "released": before is None}

    def reached(popen: subprocess.Popen, process: psutil.Process) -> str | None:
        if not state["released"]:
            assert before is not None
            if before.reached(popen, process) is None:
                return None
            if then is not None:
                then()
            state["released"] = True
            os.killpg(popen.pid, signal.SIGCONT)
            return None
        if state["conn"] is None:
            state["conn"] = connection.connect(where(), autocommit=True)
        rows = state["conn"].execute(  # type: ignore[union-attr]
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid() "
            "AND query LIKE %s", (statement + "%",)).fetchall()
        return f"{len(rows)} waiting at `{statement}`" if len(rows) >= count else None

    def close() -> None:
        if state["conn"] is not None:
            state["conn"].close()  # type: ignore[union-attr]

    return Point(f"waiting at {statement}", reached, pause=before.pause if before else None, close=close)


def file_created(directory: Path, name: str, then: Point) -> Point:
    """A file `name` was created in directory since the trial began, and `then` holds.

    For a moment too short to poll for (postgres --single writing its postmaster.pid): the trial
    waits on inotify (Linux), so the kernel wakes it as the file appears; elsewhere it polls.
    """
    watch = _Inotify(directory)
    seen: list[bool] = []

    def reached(popen: subprocess.Popen, process: psutil.Process) -> str | None:
        events = watch.created() if watch.available else []  # read every time: a pending event ends each wait
        if not seen and (name in events if watch.available else (directory / name).exists()):
            seen.append(True)
        if not seen:
            return None
        saw = then.reached(popen, process)
        return None if saw is None else f"{name} created, {saw}"

    return Point(f"{name} created and {then.name}", reached, close=watch.close,
                 wait=watch.wait if watch.available else time.sleep)


class _Inotify:
    """The names created in one directory, from Linux's inotify (through libc); `available` is False elsewhere."""

    _MODIFY, _CREATE, _MOVED_TO = 0x2, 0x100, 0x80

    def __init__(self, directory: Path) -> None:
        self.fd = -1
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
            events = self._MODIFY | self._CREATE | self._MOVED_TO  # a write wakes the trial too
            if self.fd >= 0 and libc.inotify_add_watch(self.fd, os.fsencode(directory), events) < 0:
                os.close(self.fd)
                self.fd = -1
        except (AttributeError, OSError):
            self.fd = -1
        self.available = self.fd >= 0

    def wait(self, seconds: float) -> None:
        select.select([self.fd], [], [], seconds)

    def created(self) -> list[str]:
        """Return the names created (or written) since the last call."""
        names = []
        with contextlib.suppress(BlockingIOError):
            data = os.read(self.fd, 65536)
            offset = 0
            while offset < len(data):
                _, _, _, length = struct.unpack_from("iIII", data, offset)
                names.append(data[offset + 16:offset + 16 + length].rstrip(b"\0").decode())
                offset += 16 + length
        return names

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass
class Killed:
    """What a trial saw when it killed the command, and what the command had printed by then."""

    saw: str
    stdout: bytes
    stderr: str


def _hook_dir() -> Path:
    """Return the directory holding the trials' sitecustomize (in the run's private root), written once."""
    root = temp_root.path("kill-trials")
    directory = root if root is not None else Path(tempfile.mkdtemp(prefix="kill-trials-"))
    hook = directory / "sitecustomize.py"
    if not hook.exists():  # pytest-xdist workers may race here: each writes a whole file and renames it
        partial = directory / f".sitecustomize.{os.getpid()}"
        partial.write_text(_HOOK)
        os.replace(partial, hook)
    return directory


class Running:
    """A command started by `start`: its process, and the files its output goes to."""

    def __init__(self, popen: subprocess.Popen, out, err) -> None:  # type: ignore[no-untyped-def]
        self.popen, self._out, self._err = popen, out, err

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stdout(self) -> bytes:
        if self._out is None:
            return b""
        self._out.seek(0)
        return self._out.read()

    def stderr(self) -> str:
        self._err.seek(0)
        return self._err.read().decode("utf-8", "replace")

    def finish(self, timeout: float = _TIMEOUT) -> tuple[int, str]:
        """Wait for the command; return (exit code, standard error)."""
        self.popen.wait(timeout=timeout)
        return self.popen.returncode, self.stderr()


def start(argv: list[str], project: Project, *, pause: str | None = None, mark: Path | None = None,
          stdout: int | None = None, **extra: str) -> Running:
    """Start a command as `run_cli` would, in a session of its own (its process group is the trial's to kill).

    With pause, the command stops itself at that named step (see _HOOK); with mark as well, it
    creates the file mark there instead and goes on.
    """
    env = cli_env(project, **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_hook_dir()), env.get("PYTHONPATH")]))
    if pause:
        env[_PAUSE_VARIABLE] = pause
    if mark is not None:
        env["KILL_TRIAL_MARK"] = str(mark)
    # The output files live as long as the Running that reads them (unlinked already: nothing is left on disk).
    out = tempfile.TemporaryFile() if stdout is None else None  # noqa: SIM115
    err = tempfile.TemporaryFile()  # noqa: SIM115
    popen = subprocess.Popen(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                             stdout=out if out is not None else stdout, stderr=err, start_new_session=True)
    return Running(popen, out, err)


def kill_at(argv: list[str], project: Project, point: Point, *, stdout: int | None = None,
            timeout: float = _TIMEOUT, only_parent: bool = False, **extra: str) -> Killed:
    """Run the command until it reaches point, then SIGKILL its whole process group; return what was seen.

    With only_parent, only the command's own process is killed (as the OOM killer or `kill -9 PID`
    would) and its children go on; the caller waits for them (`wait_group_gone`).
    Fails the test when the command finishes first or the point does not come within timeout.
    """
    return kill_running(start(argv, project, pause=point.pause, stdout=stdout, **extra), point, timeout=timeout,
                        what=_show(argv), only_parent=only_parent)


def kill_running(running: Running, point: Point, *, timeout: float = _TIMEOUT, what: str = "the command",
                 only_parent: bool = False) -> Killed:
    """Wait until a started command reaches point, then SIGKILL its process group (see kill_at)."""
    popen = running.popen
    deadline = time.monotonic() + timeout
    try:
        process = psutil.Process(popen.pid)
        while True:
            if popen.poll() is not None:
                pytest.fail(f"`{what}` finished (exit {popen.returncode}) before the kill point "
                            f"({point.name}); stderr: {running.stderr()[-800:]}")
            saw = point.reached(popen, process)
            if saw is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(popen.pid, signal.SIGSTOP)
                    # Nothing moves now: kill only if the command is still where it was seen.
                    saw = point.reached(popen, process)
                    if saw is not None:
                        break
                    os.killpg(popen.pid, signal.SIGCONT)
            if time.monotonic() > deadline:
                pytest.fail(f"`{what}` did not reach {point.name} in {timeout:.0f} s")
            point.wait(_POLL)
        if only_parent:
            os.kill(popen.pid, signal.SIGKILL)
            popen.wait(timeout=30)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGCONT)  # its children go on without it
        else:
            os.killpg(popen.pid, signal.SIGKILL)
            popen.wait(timeout=30)
            wait_group_gone(popen.pid)
        log.info("killed `%s` at %s: %s", what, point.name, saw)
        return Killed(saw, running.stdout(), running.stderr())
    finally:
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)
            popen.wait(timeout=30)
        point.close()


def _show(argv: list[str]) -> str:
    return " ".join(Path(a).name if a == sys.executable else a for a in argv if a not in INVOKE[1:])


def _descendants(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children(recursive=True)
    except psutil.Error:
        return []


def _in_group(process: psutil.Process, pgid: int) -> bool:
    with contextlib.suppress(ProcessLookupError, PermissionError, psutil.Error):
        return os.getpgid(process.pid) == pgid
    return False


def wait_group_gone(pgid: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = []
        for process in psutil.process_iter():
            with contextlib.suppress(ProcessLookupError, PermissionError, psutil.Error):
                if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                    alive.append(process.pid)
        if not alive:
            return
        time.sleep(0.02)
    pytest.fail(f"processes of the killed command's group {pgid} still run after {timeout:.0f} s")


# --- what a test holds and looks at ---------------------------------------------------------------


def admin(profile: Profile, project: Project, dbname: str | None = None) -> Target:
    return credentials.target(profile, project, "admin", dbname=dbname)


def owner(profile: Profile, project: Project) -> Target:
    return credentials.target(profile, project, "owner")


class Lock:
    """A lock the test holds in an open transaction until `release` (the command then waits for it)."""

    def __init__(self, where: Target | Callable[[], Target], *statements: str) -> None:
        self._where, self._statements, self._conn = where, statements, None

    def take(self) -> None:
        where = self._where() if callable(self._where) else self._where
        self._conn = connection.connect(where)
        for statement in self._statements:
            self._conn.execute(statement)

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.rollback()
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Self:
        self.take()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def settle(profile: Profile, project: Project, timeout: float = 20.0) -> None:
    """Wait until no other session is at work on the server: a killed command's backend has rolled back."""
    deadline = time.monotonic() + timeout
    with connection.connect(admin(profile, project, "postgres"), autocommit=True) as conn:
        while True:
            busy = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                                "AND pid <> pg_backend_pid()").fetchone()[0]
            if not busy:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"{busy} session(s) of a killed command still open after {timeout:.0f} s")
            time.sleep(0.02)


def query(profile: Profile, project: Project, sql: str, params: object = None) -> list[tuple]:
    with connection.connect(owner(profile, project)) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def app_may_change_stamp(profile: Profile, project: Project) -> bool | None:
    """Whether the application role may UPDATE piper_metadata; None when the database cannot be looked at."""
    try:
        with connection.connect(admin(profile, project), autocommit=True) as conn:
            row = conn.execute("SELECT CASE WHEN to_regclass('public.piper_metadata') IS NULL THEN NULL ELSE "
                               "has_table_privilege('piper_app', 'public.piper_metadata', 'UPDATE') END").fetchone()
            return None if row is None else row[0]
    except (PiperError, psycopg.Error):
        return None


def postmaster(profile: Profile, project: Project) -> int:
    pid = servers.state(servers.locate(profile, project)).pid
    assert pid is not None, f"the server of {profile.name} is not running"
    return pid


def kill_server(profile: Profile, project: Project) -> None:
    """SIGKILL the environment's postmaster (its backends end when they see it gone)."""
    pid = postmaster(profile, project)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while _alive(pid):
        assert time.monotonic() < deadline, "the killed postmaster did not go"
        time.sleep(0.02)


# --- leftovers and secrets ------------------------------------------------------------------------

#: What a killed run may leave for the next one to remove, and nothing may leave for good.
LEFTOVERS = ("*.partial", ".pgpass*", ".*.deleting-*", ".*.initdb-*", ".*.link-*")
#: Parts of a project that are public by design (tracked in git).
_PUBLIC = ("environments", "config", "alembic.ini")


def _homes(project: Project) -> list[Path]:
    """Return where the project's clusters live outside it: as root, their homes under /var/lib/piper-ops."""
    homes = []
    if server_account.needed():
        for profile in load_profiles(project):
            if not profile.hosted:
                real = servers.locate(profile, project).project_data_dir
                digest = hashlib.sha256(str(real.absolute()).encode()).hexdigest()[:12]
                homes.append(server_account.RUNTIME_ROOT / "data" / digest)
    _homes_seen.update(homes)
    return list(dict.fromkeys(homes))


_homes_seen: set[Path] = set()


def _walk(root: Path) -> Iterator[tuple[Path, list[str], list[str]]]:
    for dirpath, dirnames, filenames in os.walk(root):
        yield Path(dirpath), dirnames, filenames


def leftovers(project: Project) -> list[Path]:
    """Return what killed runs left: partial files, password files, staging and deleted directories,
    and piper-ops' own names in $TMPDIR (except the socket directory of a server, which lives there)."""
    found = []
    for root in [project.root, *_homes(project)]:
        for dirpath, dirnames, filenames in _walk(root):
            for name in dirnames + filenames:
                if any(fnmatch.fnmatch(name, pattern) for pattern in LEFTOVERS):
                    found.append(dirpath / name)
            dirnames[:] = [d for d in dirnames if not any(fnmatch.fnmatch(d, p) for p in LEFTOVERS)]
    scratch = Path(tempfile.gettempdir())
    for entry in scratch.iterdir():
        name = entry.name
        if fnmatch.fnmatch(name, "piper-pg-*") and entry.is_dir():
            if any(not (f.name.startswith(".s.PGSQL.")) for f in entry.iterdir()):
                found.append(entry)
        elif name.startswith("piper-") or any(fnmatch.fnmatch(name, p) for p in LEFTOVERS):
            found.append(entry)
    return found


def secrets(project: Project) -> set[str]:
    """Return the passwords in the project's .env."""
    return {value for key, value in envfile.read(project.env_file).items() if key.endswith("_PASSWORD") and value}


def secret_copies(project: Project, known: set[str]) -> list[Path]:
    """Return the files besides .env that hold one of the passwords: in the project, the clusters, $TMPDIR."""
    needles = [s.encode() for s in known if s]
    found = []
    skip = {project.env_file, project.env_file.with_name(project.env_file.name + ".lock")}
    for root in [project.root, *_homes(project), Path(tempfile.gettempdir())]:
        for dirpath, _, filenames in _walk(root):
            for name in filenames:
                path = dirpath / name
                if path in skip:
                    continue
                try:
                    info = os.lstat(path)
                    if not stat.S_ISREG(info.st_mode) or info.st_size > 1 << 28:
                        continue
                    data = path.read_bytes()
                except OSError:
                    continue
                if any(needle in data for needle in needles):
                    found.append(path)
    return found


def exposed(project: Project) -> list[Path]:
    """Return the files of the project (outside its public environments/ and config/) that another
    account could read, the project itself taken as open to all (a checkout in an ordinary home)."""
    found = []
    for dirpath, dirnames, filenames in _walk(project.root):
        if dirpath == project.root:
            dirnames[:] = [d for d in dirnames if d not in _PUBLIC]
        # Another account enters only directories open to it; what lies below a closed one is out of reach.
        dirnames[:] = [d for d in dirnames if os.lstat(dirpath / d).st_mode & 0o001]
        for name in filenames:
            if dirpath == project.root and name in _PUBLIC:
                continue  # alembic.ini: the project's own, tracked
            info = os.lstat(dirpath / name)
            if stat.S_ISREG(info.st_mode) and info.st_mode & 0o004:
                found.append(dirpath / name)
    return found


def _private(path: Path) -> bool:
    try:
        return not os.lstat(path).st_mode & 0o077
    except FileNotFoundError:
        return True


def check_after_kill(project: Project, known: set[str], *profiles: Profile) -> list[Path]:
    """Right after a kill: whatever was left is private, no password is anywhere but .env and such
    private leftovers, and the application role still cannot change the stamp of the profiles'
    databases (where they can be looked at). Return the leftovers (the next run must remove them)."""
    for profile in profiles:
        assert app_may_change_stamp(profile, project) is not True, "the application role may change the stamp"
    left = leftovers(project)
    log.info("left after the kill: %s", ", ".join(str(p) for p in left) or "nothing")
    files_left = set()
    for path in left:
        if path.is_dir() and not path.is_symlink():
            files_left.update(p for p in path.rglob("*"))
        files_left.add(path)
    copies = secret_copies(project, known | secrets(project))
    assert [p for p in copies if p not in files_left] == [], "a password was written outside .env"
    assert [p for p in copies if not _private(p)] == [], "a password is in a file others may read"
    # (A partial backup of config/PIPER.md is public content, in a public folder, and removed by the next run.)
    assert [p for p in left if not _private(p) and not p.is_symlink() and str(p).startswith(str(project.root))
            and not _closed_below(p, project.root) and p.relative_to(project.root).parts[0] not in _PUBLIC] == [], \
        "a leftover is open to others"
    assert exposed(project) == [], "a file of the project is open to others"
    if project.env_file.exists():
        assert stat.S_IMODE(project.env_file.stat().st_mode) == 0o600
    return left


def _closed_below(path: Path, root: Path) -> bool:
    """True when a directory between root and path is closed to other accounts."""
    for parent in path.relative_to(root).parents:
        if parent != Path(".") and not os.lstat(root / parent).st_mode & 0o001:
            return True
    return False


def check_clean(project: Project, known: set[str]) -> None:
    """After the next run: nothing left at all, and no password anywhere but .env."""
    assert leftovers(project) == [], "the next run left (or did not remove) these"
    assert secret_copies(project, known | secrets(project)) == [], "a password was written outside .env"
    assert exposed(project) == [], "a file of the project is open to others"
    if project.env_file.exists():
        assert stat.S_IMODE(project.env_file.stat().st_mode) == 0o600


def check_environment(profile: Profile, project: Project, users: list[str]) -> None:
    """The environment is whole: stamped, at head, the users given, every role gets in with .env's password,
    and the application role may use the users but never change the stamp."""
    rows = query(profile, project, "SELECT key, value FROM piper_metadata")
    assert rows == [("environment", profile.name)]
    with connection.connect(owner(profile, project)) as conn:
        assert schema.current_revision(conn) == migrations.head_revision(project)
    assert [r[0] for r in query(profile, project, "SELECT username FROM alpha_users ORDER BY username")] == users
    for role in ("admin", "app"):
        with connection.connect(credentials.target(profile, project, role)):  # type: ignore[arg-type]
            pass
    assert app_may_change_stamp(profile, project) is False
    with connection.connect(admin(profile, project)) as conn:
        assert conn.execute("SELECT has_table_privilege('piper_app', 'public.alpha_users', "
                            "'SELECT, INSERT, UPDATE, DELETE')").fetchone() == (True,)


def known_bug(reason: str) -> pytest.MarkDecorator:
    """Mark a trial that finds a real problem: it must fail with an assertion (not by missing its kill point)."""
    return pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason)


def one_error(errors: str) -> str:
    """Check a failed command said why in one `error:` line, its last, with no traceback; return that line."""
    lines = errors.strip().splitlines()
    assert "Traceback" not in errors, errors
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], errors
    return lines[-1]


def setup_cli(env: str) -> list[str]:
    return [*INVOKE, "setup", "--env", env]


def script(name: str, *args: str) -> list[str]:
    return [sys.executable, f"scripts/{name}.py", *args]


# --- setup ----------------------------------------------------------------------------------------


def _setup_points(profile: Profile, project: Project) -> dict[str, Point]:
    def started() -> str | None:
        data_dir = servers.locate(profile, project).data_dir
        return ", postmaster.pid written" if (data_dir / "postmaster.pid").exists() else None

    password_set = at_step("superuser's password set", ("os.remove", "piper-initial-password", 1))
    return {
        # Half-way through copying the template cluster into the staging directory.
        "template-copy": at_step("template copy", ("open", f".{profile.name}.initdb-", 300)),
        # pg_ctl waits for the server it launched (which runs on in a session of its own).
        "pg_ctl-start": child_running("pg_ctl", "start", also=started),
        # The superuser has the password of .env; the template's throwaway is not removed yet.
        "superuser-password": password_set,
        # CREATE ROLE of the owner waits for pg_authid, which the test holds.
        "role-creation": waiting_at(
            "CREATE ROLE", lambda: admin(profile, project, "postgres"), before=password_set,
            then=lambda: _hold(Lock(lambda: admin(profile, project, "postgres"),
                                    "LOCK TABLE pg_catalog.pg_authid IN EXCLUSIVE MODE"))),
    }


_held: list[Lock] = []


def _hold(lock: Lock) -> None:
    lock.take()
    _held.append(lock)


def _release_held() -> None:
    while _held:
        _held.pop().release()


@pytest.fixture(autouse=True)
def _trial_cleanup() -> Iterator[None]:
    """Release what a trial holds; remove what a failed trial left outside its project (/var/lib/piper-ops)."""
    yield
    _release_held()
    for home in list(_homes_seen):
        for pattern in (".*.deleting-*", ".*.initdb-*"):
            for leftover in home.glob(pattern):
                shutil.rmtree(leftover, ignore_errors=True)
        with contextlib.suppress(OSError):
            home.rmdir()  # once empty, as the product leaves it after a teardown
    _homes_seen.clear()


@pytest.mark.parametrize("where", ["template-copy", "pg_ctl-start", "superuser-password", "role-creation"])
def test_setup_killed_is_finished_by_the_next_setup(project: Project, where: str) -> None:
    profile = load_profile("tester", project)
    killed = kill_at(setup_cli("tester"), project, _setup_points(profile, project)[where])
    assert killed.saw
    _release_held()
    if where == "role-creation":
        settle(profile, project)  # the CREATE ROLE the kill interrupted ends, one way or the other
    known = secrets(project)
    check_after_kill(project, known, profile)
    # .env holds all three passwords or none; a cluster is complete or absent.
    assert len(known) in (0, 3)
    data_dir = servers.locate(profile, project).project_data_dir
    assert not data_dir.exists() or (data_dir / "PG_VERSION").exists()

    again = run_cli(setup_cli("tester"), project)
    assert again.returncode == 0, again.stderr
    check_environment(profile, project, ["tester123"])
    assert envfile.read(project.env_file)["PIPER_ENV"] == "tester"
    check_clean(project, known)


@pytest.mark.skipif(not server_account.needed(), reason="the data directory is linked from the project only as root")
def test_setup_killed_while_linking_the_relocated_data_directory(project: Project) -> None:
    profile = load_profile("tester", project)
    kill_at(setup_cli("tester"), project, at_step("link", ("os.rename", f".{profile.name}.link-", 1)))
    known = secrets(project)
    check_after_kill(project, known, profile)
    again = run_cli(setup_cli("tester"), project)
    assert again.returncode == 0, again.stderr
    check_environment(profile, project, ["tester123"])
    check_clean(project, known)


def test_setup_killed_in_a_migration_leaves_the_schema_where_it_was(fresh_tester) -> None:
    profile, project = fresh_tester
    with connection.engine(owner(profile, project)) as eng, eng.begin() as conn:
        schema.downgrade(conn, project.migrations_dir, "0001")
    known = secrets(project)
    # 0002 runs (its tables are made in the transaction), then 0003 waits at its first statement.
    with Lock(owner(profile, project), "LOCK TABLE alpha_users IN ACCESS SHARE MODE"):
        kill_at(setup_cli("tester"), project,
                waiting_at("ALTER TABLE alpha_users ENABLE ROW LEVEL SECURITY", lambda: admin(profile, project)))
    settle(profile, project)
    check_after_kill(project, known, profile)
    with connection.connect(owner(profile, project)) as conn:
        assert schema.current_revision(conn) == "0001"
        assert conn.execute("SELECT to_regclass('public.user_data_events')").fetchone() == (None,)
    assert query(profile, project, "SELECT value FROM piper_metadata") == [("tester",)]
    assert app_may_change_stamp(profile, project) is False

    again = run_cli(setup_cli("tester"), project)
    assert again.returncode == 0, again.stderr
    assert f"to {migrations.head_revision(project)}" in again.stdout
    check_environment(profile, project, ["tester123"])
    check_clean(project, known)


@pytest.mark.parametrize("where", ["server-stopped-for-the-reset", "single-user-running"])
def test_setup_killed_getting_back_into_a_cluster_whose_env_was_lost(fresh_tester, where: str) -> None:
    profile, project = fresh_tester
    lost = secrets(project)
    project.env_file.unlink()  # .env lost: setup generates new passwords and resets them in single-user mode
    data_dir = servers.locate(profile, project).data_dir
    points = {
        # The server is stopped and postgres --single is about to start.
        "server-stopped-for-the-reset": lambda: at_step("reset", ("subprocess.Popen", "--single", 1)),
        # postgres --single holds the data directory: its postmaster.pid names it (with its PID negated).
        "single-user-running": lambda: file_created(data_dir, "postmaster.pid", child_running(
            "postgres", "--single", also=lambda: _single_user_lock(data_dir))),
    }
    try:
        kill_at(setup_cli("tester"), project, points[where]())
        known = lost | secrets(project)
        check_after_kill(project, known, profile)
        assert len(secrets(project)) == 3

        again = run_cli(setup_cli("tester"), project)
        assert again.returncode == 0, again.stderr
        check_environment(profile, project, ["tester123"])
        check_clean(project, known)
    finally:
        _forget_single_user_lock(data_dir)


def _single_user_lock(data_dir: Path) -> str | None:
    """Return what postmaster.pid says once a single-user backend has written its PID (negated) there."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, IndexError, ValueError):
        return None
    return f", postmaster.pid holds {pid}" if pid < 0 else None


def _forget_single_user_lock(data_dir: Path) -> None:
    """Remove the postmaster.pid a killed `postgres --single` left (its PID negated) once nothing holds it.

    The next setup must do it itself (the trial checks that); this is for when it does not: a
    negated PID once made every later command, and so the fixtures' clean-up, end in a traceback.
    """
    lock = data_dir / "postmaster.pid"
    try:
        pid = int(lock.read_text().splitlines()[0])
    except (OSError, IndexError, ValueError):
        return
    if pid < 0 and not _alive(-pid):
        lock.unlink()


def _alive(pid: int) -> bool:
    """Whether a process runs (a zombie no init has reaped yet does not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# --- teardown -------------------------------------------------------------------------------------


def teardown_cli(env: str = "tester") -> list[str]:
    return [*INVOKE, "teardown", "--env", env, "--yes"]


def dumps(project: Project, env: str = "tester") -> list[Path]:
    return sorted((project.root / "backups" / env).glob("*.dump"))


def check_archive(profile: Profile, project: Project, archive: Path, users: list[str]) -> None:
    """The archive is complete: pg_restore reads its table of contents and its users are the ones given."""
    server = servers.locate(profile, project)
    data = subprocess.run([str(server.bin_dir / "pg_restore"), "--data-only", "--table=alpha_users", "--file=-",
                           str(archive)], capture_output=True, text=True, check=True).stdout
    rows = [line.split("\t")[1] for line in data.splitlines() if line.count("\t") > 2 and not line.startswith("COPY")]
    assert sorted(rows) == users
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600


def check_torn_down(profile: Profile, project: Project) -> None:
    server = servers.locate(profile, project)
    assert not server.project_data_dir.exists() and not server.project_data_dir.is_symlink()
    left = envfile.read(project.env_file)
    assert not [key for key in left if key.startswith(f"PIPER_{profile.name.upper()}_")]
    assert left.get("PIPER_ENV") != profile.name


def test_teardown_killed_during_pg_dump_leaves_the_environment_whole(fresh_tester) -> None:
    profile, project = fresh_tester
    known = secrets(project)
    with Lock(owner(profile, project), "LOCK TABLE alpha_users IN ACCESS EXCLUSIVE MODE"):
        kill_at(teardown_cli(), project, waiting_at("LOCK TABLE", lambda: admin(profile, project)))
    settle(profile, project)
    check_after_kill(project, known, profile)
    check_environment(profile, project, ["tester123"])
    assert dumps(project) == []

    again = run_cli(teardown_cli(), project)
    assert again.returncode == 0, again.stderr
    check_torn_down(profile, project)
    [archive] = dumps(project)
    check_archive(profile, project, archive, ["tester123"])
    check_clean(project, known)


@pytest.mark.parametrize("where", ["renamed-aside", "half-deleted"])
def test_teardown_killed_after_the_rename_aside_is_finished_by_the_next(fresh_tester, where: str) -> None:
    profile, project = fresh_tester
    known = secrets(project)
    aside = ("shutil.rmtree", f".{profile.name}.deleting-", 1)
    point = at_step(where, aside) if where == "renamed-aside" else at_step(where, aside, ("os.remove", "", 300))
    kill_at(teardown_cli(), project, point)
    left = check_after_kill(project, known, profile)
    assert [p.name.split("-")[0] for p in left if ".deleting-" in p.name] == [f".{profile.name}.deleting"]
    # Gone from its place, and nothing lost: the verified archive was taken before.
    assert not servers.locate(profile, project).project_data_dir.exists()
    [archive] = dumps(project)
    check_archive(profile, project, archive, ["tester123"])

    again = run_cli(teardown_cli(), project)
    assert again.returncode == 0, again.stderr
    check_torn_down(profile, project)
    assert dumps(project) == [archive]
    check_clean(project, known)


# --- user data: import, migrate-personal-data, delete-user, export ----------------------------------

BIG = {f"k{i:04}": {"text": "ü✓ fake " * 60 + str(i), "n": list(range(20))} for i in range(1500)}


def _exported(profile: Profile, project: Project, tmp_path: Path, username: str = "fake.crash") -> Path:
    """Make a user with a megabyte of preferences, export it to a file, then delete the row again."""
    assert create_test_alpha_user.main(["--username", username, "--env", profile.name]) == 0
    with connection.connect(owner(profile, project)) as conn:
        conn.execute("UPDATE alpha_users SET preferences = %s WHERE username = %s", (Jsonb(BIG), username))
        conn.commit()
    document = tmp_path / f"{username}.json"
    export = run_cli(script("export_user_data", "--username", username, "--output", str(document), "--env",
                            profile.name), project)
    assert export.returncode == 0, export.stderr
    with connection.connect(owner(profile, project)) as conn:
        conn.execute("DELETE FROM alpha_users WHERE username = %s", (username,))
        conn.commit()
    return document


def import_cli(document: Path, username: str = "fake.crash") -> list[str]:
    return script("import_user_data", "--username", username, "--data", str(document), "--yes", "--env", "tester")


def events(profile: Profile, project: Project, event: str, username: str) -> int:
    return query(profile, project, "SELECT count(*) FROM user_data_events WHERE event = %s AND username = %s",
                 (event, username))[0][0]


def preferences(profile: Profile, project: Project, username: str) -> object:
    rows = query(profile, project, "SELECT preferences FROM alpha_users WHERE username = %s", (username,))
    return rows[0][0] if rows else None


def test_import_killed_in_its_transaction_writes_nothing(fresh_tester, tmp_path: Path) -> None:
    profile, project = fresh_tester
    document = _exported(profile, project, tmp_path)
    known = secrets(project)
    # The user's row is inserted; the record of the import waits for the table the test holds.
    with Lock(owner(profile, project), "LOCK TABLE user_data_events IN SHARE MODE"):
        kill_at(import_cli(document), project,
                waiting_at("INSERT INTO user_data_events", lambda: admin(profile, project)))
    settle(profile, project)
    check_after_kill(project, known, profile)
    assert preferences(profile, project, "fake.crash") is None
    assert events(profile, project, "import", "fake.crash") == 0

    again = run_cli(import_cli(document), project)
    assert again.returncode == 0, again.stderr
    assert preferences(profile, project, "fake.crash") == BIG
    assert events(profile, project, "import", "fake.crash") == 1
    check_clean(project, known)


def test_migrate_personal_data_killed_in_its_transaction_writes_nothing(fresh_tester, tmp_path: Path) -> None:
    profile, project = fresh_tester
    data = tmp_path / "tester_data.json"
    data.write_text(json.dumps({"piper_personal_data": 1, "username": "tester123",
                                "preferences": {"tone": "fake-tone", "projects": ["fake-one"]}}))
    argv = script("migrate_personal_data", "--username", "tester123", "--data-file", str(data), "--env", "tester")
    before = preferences(profile, project, "tester123")
    known = secrets(project)
    with Lock(owner(profile, project), "LOCK TABLE user_data_events IN SHARE MODE"):
        kill_at(argv, project, waiting_at("INSERT INTO user_data_events", lambda: admin(profile, project)))
    settle(profile, project)
    check_after_kill(project, known, profile)
    assert preferences(profile, project, "tester123") == before
    assert events(profile, project, "migrate", "tester123") == 0

    for _ in range(2):  # the next run migrates; the one after finds it done
        again = run_cli(argv, project)
        assert again.returncode == 0, again.stderr
    assert "already migrated" in again.stdout
    assert preferences(profile, project, "tester123") == {**before, "tone": "fake-tone", "projects": ["fake-one"]}
    assert events(profile, project, "migrate", "tester123") == 1
    check_clean(project, known)


def _deleted_exports(project: Project) -> list[Path]:
    return sorted((project.root / "private" / "deleted-users" / "tester").glob("*.json"))


def _check_export(path: Path, username: str) -> None:
    document = documents.parse_export(path.read_bytes(), str(path))  # the checksum holds: complete
    assert document.user["username"] == username
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_delete_user_killed_before_its_delete_commits_keeps_the_user(fresh_tester) -> None:
    profile, project = fresh_tester
    argv = script("delete_user", "--username", "tester123", "--yes", "--env", "tester")
    known = secrets(project)
    # The export is written and recorded; the DELETE waits for the table the test holds.
    with Lock(owner(profile, project), "LOCK TABLE alpha_users IN SHARE MODE"):
        kill_at(argv, project, waiting_at("DELETE FROM", lambda: admin(profile, project)))
    settle(profile, project)
    check_after_kill(project, known, profile)
    assert [r[0] for r in query(profile, project, "SELECT username FROM alpha_users")] == ["tester123"]
    assert query(profile, project, "SELECT count(*) FROM user_data_events WHERE event = 'delete'") == [(0,)]
    # What a killed delete leaves is its complete export (the user is still there): nothing is lost.
    [first] = _deleted_exports(project)
    _check_export(first, "tester123")

    again = run_cli(argv, project)
    assert again.returncode == 0, again.stderr
    assert query(profile, project, "SELECT username FROM alpha_users") == []
    assert query(profile, project, "SELECT count(*) FROM user_data_events WHERE event = 'delete'") == [(1,)]
    for path in _deleted_exports(project):
        _check_export(path, "tester123")
    check_clean(project, known)


def test_delete_user_killed_while_publishing_its_export_keeps_the_user(fresh_tester) -> None:
    profile, project = fresh_tester
    argv = script("delete_user", "--username", "tester123", "--yes", "--env", "tester")
    known = secrets(project)
    kill_at(argv, project, at_step("publish the export", ("os.link", "deleted-users", 1)))
    check_after_kill(project, known, profile)
    assert [r[0] for r in query(profile, project, "SELECT username FROM alpha_users")] == ["tester123"]
    assert _deleted_exports(project) == []

    again = run_cli(argv, project)
    assert again.returncode == 0, again.stderr
    assert query(profile, project, "SELECT username FROM alpha_users") == []
    check_clean(project, known)


def _document(text: str):  # type: ignore[no-untyped-def]
    return documents.parse_export(text.encode("utf-8"), "standard output")


def export_cli(username: str = "fake.crash") -> list[str]:
    return script("export_user_data", "--username", username, "--env", "tester")


def test_export_to_standard_output_killed_before_the_document_is_made(fresh_tester, tmp_path: Path) -> None:
    profile, project = fresh_tester
    document = _exported(profile, project, tmp_path)
    assert run_cli(import_cli(document), project).returncode == 0
    known = secrets(project)
    recorded = events(profile, project, "export", "fake.crash")
    # psql's check of the user waits for the row the test holds: the private partial is made, still empty.
    with Lock(owner(profile, project), "SELECT 1 FROM alpha_users WHERE username = 'fake.crash' FOR UPDATE"):
        killed = kill_at(export_cli(), project, waiting_at("SELECT (SELECT value FROM public.piper_metadata",
                                                            lambda: admin(profile, project)))
    settle(profile, project)
    left = check_after_kill(project, known, profile)
    assert [p.parent.name for p in left if p.name.startswith(".export.")] == ["private"]
    assert killed.stdout == b""
    assert events(profile, project, "export", "fake.crash") == recorded

    again = run_cli(export_cli(), project)
    assert again.returncode == 0, again.stderr
    assert _document(again.stdout).preferences == BIG
    assert events(profile, project, "export", "fake.crash") == recorded + 1
    check_clean(project, known)


def test_export_to_standard_output_killed_while_writing_it_is_refused_by_import(fresh_tester, tmp_path: Path) -> None:
    profile, project = fresh_tester
    document = _exported(profile, project, tmp_path)
    assert run_cli(import_cli(document), project).returncode == 0
    known = secrets(project)
    received = bytearray()

    def some_output(popen: subprocess.Popen, process: psutil.Process) -> str | None:
        if select.select([popen.stdout], [], [], 0)[0]:
            received.extend(os.read(popen.stdout.fileno(), 4096))
        return f"{len(received)} bytes on standard output" if received else None

    running = start(export_cli(), project, stdout=subprocess.PIPE)
    kill_running(running, Point("the document half-way through standard output", some_output))
    received.extend(running.popen.stdout.read())
    running.popen.stdout.close()
    check_after_kill(project, known, profile)
    partial = tmp_path / "partial.json"
    partial.write_bytes(bytes(received))
    assert 0 < len(received) < document.stat().st_size
    # A reader gets a cut document; import sees it is cut and writes nothing.
    refused = run_cli(script("import_user_data", "--username", "fake.crash", "--data", str(partial), "--yes",
                             "--replace", "--env", "tester"), project)
    assert refused.returncode == 2, refused.stderr
    one_error(refused.stderr)

    again = run_cli(export_cli(), project)
    assert again.returncode == 0, again.stderr
    assert _document(again.stdout).preferences == BIG
    check_clean(project, known)


# --- backups of config/PIPER.md and of the database; restores --------------------------------------


def _config_backups(project: Project) -> list[Path]:
    return sorted(project.config_dir.glob("PIPER.md.backup-*"))


@pytest.mark.parametrize("where", ["before-the-link", "after-the-link"])
def test_backup_config_killed_leaves_no_backup_or_a_whole_one(project: Project, where: str) -> None:
    argv = script("backup_config")
    points = {"before-the-link": at_step(where, ("os.link", ".PIPER.md.", 1)),
              "after-the-link": at_step(where, ("os.remove", ".PIPER.md.", 1))}
    kill_at(argv, project, points[where])
    check_after_kill(project, set())
    made = _config_backups(project)
    content = (project.config_dir / "PIPER.md").read_bytes()
    assert [p.read_bytes() == content for p in made] == ([] if where == "before-the-link" else [True])

    again = run_cli(argv, project)
    assert again.returncode == 0, again.stderr
    [backup] = _config_backups(project)
    assert backup.read_bytes() == content
    check_clean(project, set())


def test_db_backup_killed_during_pg_dump_leaves_no_archive(fresh_tester) -> None:
    profile, project = fresh_tester
    known = secrets(project)
    argv = [*INVOKE, "db-backup", "--env", "tester"]
    with Lock(owner(profile, project), "LOCK TABLE alpha_users IN ACCESS EXCLUSIVE MODE"):
        kill_at(argv, project, waiting_at("LOCK TABLE", lambda: admin(profile, project)))
    settle(profile, project)
    check_after_kill(project, known, profile)
    assert dumps(project) == []

    again = run_cli(argv, project)
    assert again.returncode == 0, again.stderr
    [archive] = dumps(project)
    check_archive(profile, project, archive, ["tester123"])
    check_clean(project, known)


def _restorable(profile: Profile, project: Project) -> Path:
    """Take an archive of the environment, then add a user the restore must take away again."""
    taken = run_cli([*INVOKE, "db-backup", "--env", "tester"], project)
    assert taken.returncode == 0, taken.stderr
    assert create_test_alpha_user.main(["--username", "fake.after", "--env", "tester"]) == 0
    return dumps(project)[-1]


def restore_cli(archive: Path) -> list[str]:
    return [*INVOKE, "db-restore", "--env", "tester", "--file", str(archive), "--yes"]


def _restore_points(profile: Profile, project: Project) -> dict[str, tuple[Lock, Point]]:
    return {
        # The restore's SQL has begun (pg_restore --clean's first DROP on alpha_users waits).
        "restore-sql": (Lock(owner(profile, project), "LOCK TABLE alpha_users IN ACCESS SHARE MODE"),
                        waiting_at("DROP POLICY IF EXISTS alpha_users_acting_user", lambda: admin(profile, project))),
        # The data and grants are restored in the transaction; the default privileges, then the
        # application role's limits, are still to come.
        "before-the-limits": (Lock(admin(profile, project), "LOCK TABLE pg_catalog.pg_default_acl IN EXCLUSIVE MODE"),
                              waiting_at("ALTER DEFAULT PRIVILEGES", lambda: admin(profile, project))),
    }


@pytest.mark.parametrize("where", ["restore-sql", "before-the-limits"])
def test_db_restore_killed_in_its_transaction_leaves_the_database_as_it_was(fresh_tester, where: str) -> None:
    profile, project = fresh_tester
    archive = _restorable(profile, project)
    known = secrets(project)
    lock, point = _restore_points(profile, project)[where]
    with lock:
        kill_at(restore_cli(archive), project, point)
    settle(profile, project)
    check_after_kill(project, known, profile)
    check_environment(profile, project, ["fake.after", "tester123"])
    # The backup the restore took first is complete.
    before = [p for p in dumps(project) if p != archive]
    assert len(before) == 1
    check_archive(profile, project, before[0], ["fake.after", "tester123"])

    again = run_cli(restore_cli(archive), project)
    assert again.returncode == 0, again.stderr
    check_environment(profile, project, ["tester123"])
    check_clean(project, known)


def test_db_restore_whose_own_process_alone_is_killed_commits_nothing(fresh_tester) -> None:
    """`kill -9 PID` of the command alone (the OOM killer's way) while pg_restore still writes the
    restore's SQL: pg_restore and psql go on to the end of it, but only the command could let the
    transaction commit (once pg_restore had ended well), so nothing is committed."""
    profile, project = fresh_tester
    with connection.connect(owner(profile, project)) as conn:  # more SQL than a pipe holds: pg_restore is still
        conn.execute("CREATE TABLE filler AS SELECT repeat(md5(g::text), 32) AS pad FROM generate_series(1, 2000) g")
        conn.commit()  # writing when psql waits at the first DROP
    archive = _restorable(profile, project)
    known = secrets(project)
    lock, point = _restore_points(profile, project)["restore-sql"]
    with lock:
        killed = start(restore_cli(archive), project, pause=point.pause)
        kill_running(killed, point, what="db-restore", only_parent=True)
        assert any("pg_restore" in p.name() for p in psutil.process_iter() if _in_group(p, killed.popen.pid))
    wait_group_gone(killed.popen.pid, timeout=60)  # pg_restore and psql ran to the end of their input
    settle(profile, project)
    check_after_kill(project, known, profile)
    check_environment(profile, project, ["fake.after", "tester123"])
    again = run_cli(restore_cli(archive), project)
    assert again.returncode == 0, again.stderr
    check_environment(profile, project, ["tester123"])
    check_clean(project, known)


# --- db-backup --verify-restore and the automatic backup (issue 13) ---------------------------------


def scratch_exists(profile: Profile, project: Project) -> bool:
    with connection.connect(admin(profile, project, "postgres")) as conn:
        return conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s",
                            (db_backups.scratch_name(profile),)).fetchone() == (1,)


def records(project: Project, env: str = "tester") -> list[Path]:
    return sorted((project.root / "backups" / env).glob("*.json"))


@pytest.mark.parametrize("next_run", ["verify-restore", "db-backup"])
def test_verify_restore_killed_in_its_restore_leaves_a_scratch_database_the_next_run_drops(
        fresh_tester, next_run: str) -> None:
    profile, project = fresh_tester
    taken = run_cli([*INVOKE, "db-backup", "--env", "tester"], project)
    assert taken.returncode == 0, taken.stderr
    [archive] = dumps(project)
    known = secrets(project)
    scratch = db_backups.scratch_name(profile)
    # Stopped as it is about to start psql on the scratch database; the test then locks that database's default
    # privileges, so the restore's transaction waits at ALTER DEFAULT PRIVILEGES, and is killed there.
    # (The client password file is made just before psql starts, once pg_restore runs and the scratch database exists.)
    before = at_step("psql about to start on the scratch database", ("open", ".pgpass.", 1))
    point = waiting_at("ALTER DEFAULT PRIVILEGES", lambda: admin(profile, project, scratch), before=before,
                       then=lambda: _hold(Lock(lambda: admin(profile, project, scratch),
                                               "LOCK TABLE pg_catalog.pg_default_acl IN EXCLUSIVE MODE")))
    kill_at([*INVOKE, "db-backup", "--env", "tester", "--verify-restore"], project, point)
    _release_held()
    settle(profile, project)
    check_after_kill(project, known, profile)
    assert scratch_exists(profile, project)  # what the kill left: private to the server's roles
    assert dumps(project) == [archive]
    check_environment(profile, project, ["tester123"])

    argv = [*INVOKE, "db-backup", "--env", "tester"] + (["--verify-restore"] if next_run == "verify-restore" else [])
    again = run_cli(argv, project)
    assert again.returncode == 0, again.stderr
    if next_run == "verify-restore":
        assert "dropped the scratch database a killed verification left" in again.stdout
        assert "restores: 6 tables" in again.stdout
    assert not scratch_exists(profile, project)
    check_clean(project, known)


def _due_backup_points(profile: Profile, project: Project) -> dict[str, tuple[Lock | None, Point]]:
    return {
        # pg_dump of the scheduled backup waits for the table the test holds.
        "pg_dump": (Lock(owner(profile, project), "LOCK TABLE alpha_users IN ACCESS EXCLUSIVE MODE"),
                    waiting_at("LOCK TABLE", lambda: admin(profile, project))),
        # The archive's record has its name; the archive itself is not linked to its name yet.
        "record-written": (None, at_step("record written", ("os.link", "-scheduled.dump", 2))),
    }


@pytest.mark.parametrize("where", ["pg_dump", "record-written"])
def test_the_automatic_backup_killed_is_taken_by_the_next_db_start(fresh_tester, where: str) -> None:
    profile, project = fresh_tester
    assert profile.backups.auto == "daily" and dumps(project) == []
    known = secrets(project)
    lock, point = _due_backup_points(profile, project)[where]
    argv = [*INVOKE, "db-start", "--env", "tester"]
    with lock if lock is not None else contextlib.nullcontext():
        kill_at(argv, project, point)
    settle(profile, project)
    left = check_after_kill(project, known, profile)
    assert dumps(project) == []  # no archive, or a whole one: here none, it was not published
    assert len(records(project)) == (1 if where == "record-written" else 0)
    assert [p for p in left if "-scheduled.dump" in p.name]  # its partial archive (0600), for the next run to sweep
    check_environment(profile, project, ["tester123"])

    again = run_cli(argv, project)
    assert again.returncode == 0 and "automatic backup (backups.auto: daily)" in again.stdout, again.stderr
    [archive] = dumps(project)
    assert archive.name.endswith("-scheduled.dump")
    check_archive(profile, project, archive, ["tester123"])
    assert records(project) == [archive.with_name(archive.name + ".json")]  # the orphan record is gone
    quiet = run_cli(argv, project)
    assert quiet.returncode == 0 and "automatic backup" not in quiet.stdout, quiet.stderr
    check_clean(project, known)


# --- the server killed under a command ------------------------------------------------------------


def wait_until(running: Running, point: Point, timeout: float = _TIMEOUT) -> str:
    """Wait until a started command reaches point (without killing it); return what was seen."""
    deadline = time.monotonic() + timeout
    process = psutil.Process(running.pid)
    try:
        while True:
            if running.popen.poll() is not None:
                pytest.fail(f"the command finished (exit {running.popen.returncode}) before {point.name}; "
                            f"stderr: {running.stderr()[-800:]}")
            saw = point.reached(running.popen, process)
            if saw is not None:
                return saw
            if time.monotonic() > deadline:
                pytest.fail(f"the command did not reach {point.name} in {timeout:.0f} s")
            point.wait(_POLL)
    finally:
        point.close()


def _server_killed_under(profile: Profile, project: Project, argv: list[str], lock: Lock, point: Point, *,
                         restart: bool = True) -> str:
    """Run the command to point, SIGKILL the server under it; return what the command said (exit 1).

    With restart, `invoke db-start` then recovers the server (the command is one that expects it
    running); without, the next run of the command must start it itself. The caller checks the
    message last (`one_error`), after what matters more: nothing lost, the next run works.
    """
    with lock:
        running = start(argv, project)
        wait_until(running, point)
        kill_server(profile, project)
        code, errors = running.finish()
    assert code == 1, errors
    if restart:
        started = run_cli([*INVOKE, "db-start", "--env", profile.name], project)
        assert started.returncode == 0, started.stderr
    return errors


def _killed_then_finished_by_the_next_run(profile: Profile, project: Project, argv: list[str], lock: Lock,
                                          point: Point) -> None:
    """The server killed under the command at point; the next run of the command (which starts the server
    itself) leaves the environment whole, its user there, and nothing behind."""
    known = secrets(project)
    errors = _server_killed_under(profile, project, argv, lock, point, restart=False)
    check_after_kill(project, known)

    again = run_cli(argv, project)
    assert again.returncode == 0, again.stderr
    check_environment(profile, project, ["tester123"])
    check_clean(project, known)
    one_error(errors)


def test_server_killed_under_an_import_loses_nothing(fresh_tester, tmp_path: Path) -> None:
    profile, project = fresh_tester
    document = _exported(profile, project, tmp_path)
    known = secrets(project)
    lock = Lock(owner(profile, project), "LOCK TABLE user_data_events IN SHARE MODE")
    point = waiting_at("INSERT INTO user_data_events", lambda: admin(profile, project))
    errors = _server_killed_under(profile, project, import_cli(document), lock, point)
    check_after_kill(project, known, profile)
    assert preferences(profile, project, "fake.crash") is None
    assert events(profile, project, "import", "fake.crash") == 0

    again = run_cli(import_cli(document), project)
    assert again.returncode == 0, again.stderr
    assert preferences(profile, project, "fake.crash") == BIG
    check_clean(project, known)
    one_error(errors)


def test_server_killed_under_a_restore_loses_nothing(fresh_tester) -> None:
    profile, project = fresh_tester
    archive = _restorable(profile, project)
    lock, point = _restore_points(profile, project)["restore-sql"]
    _killed_then_finished_by_the_next_run(profile, project, restore_cli(archive), lock, point)


def test_server_killed_under_a_migration_loses_nothing(fresh_tester) -> None:
    profile, project = fresh_tester
    with connection.engine(owner(profile, project)) as eng, eng.begin() as conn:
        schema.downgrade(conn, project.migrations_dir, "0001")
    lock = Lock(owner(profile, project), "LOCK TABLE alpha_users IN ACCESS SHARE MODE")
    point = waiting_at("ALTER TABLE alpha_users ENABLE ROW LEVEL SECURITY", lambda: admin(profile, project))
    _killed_then_finished_by_the_next_run(profile, project, setup_cli("tester"), lock, point)


def test_server_killed_under_a_delete_user_loses_nothing(fresh_tester) -> None:
    profile, project = fresh_tester
    argv = script("delete_user", "--username", "tester123", "--yes", "--env", "tester")
    known = secrets(project)
    lock = Lock(owner(profile, project), "LOCK TABLE alpha_users IN SHARE MODE")
    point = waiting_at("DELETE FROM", lambda: admin(profile, project))
    errors = _server_killed_under(profile, project, argv, lock, point)
    check_after_kill(project, known, profile)
    assert [r[0] for r in query(profile, project, "SELECT username FROM alpha_users")] == ["tester123"]
    for path in _deleted_exports(project):
        _check_export(path, "tester123")

    again = run_cli(argv, project)
    assert again.returncode == 0, again.stderr
    assert query(profile, project, "SELECT username FROM alpha_users") == []
    check_clean(project, known)
    one_error(errors)


def test_server_killed_under_a_teardown_deletes_nothing(fresh_tester) -> None:
    profile, project = fresh_tester
    known = secrets(project)
    lock = Lock(owner(profile, project), "LOCK TABLE alpha_users IN ACCESS EXCLUSIVE MODE")
    point = waiting_at("LOCK TABLE", lambda: admin(profile, project))
    errors = _server_killed_under(profile, project, teardown_cli(), lock, point, restart=False)
    check_after_kill(project, known)
    assert (servers.locate(profile, project).data_dir / "PG_VERSION").exists()
    assert dumps(project) == []

    again = run_cli(teardown_cli(), project)  # it starts the server itself to take the backup
    assert again.returncode == 0, again.stderr
    check_torn_down(profile, project)
    [archive] = dumps(project)
    check_archive(profile, project, archive, ["tester123"])
    check_clean(project, known)
    one_error(errors)


# --- concurrency ----------------------------------------------------------------------------------


def test_five_setups_of_one_environment_at_once(project: Project) -> None:
    profile = load_profile("tester", project)
    runs = [start(setup_cli("tester"), project) for _ in range(5)]
    results = [run.finish() for run in runs]
    assert [code for code, _ in results] == [0] * 5, [errors for _, errors in results]
    check_environment(profile, project, ["tester123"])
    assert len(secrets(project)) == 3
    again = run_cli(setup_cli("tester"), project)
    assert again.returncode == 0 and "nothing changed" in again.stdout, again.stdout + again.stderr
    check_clean(project, secrets(project))


def test_setups_of_two_environments_at_once(project: Project) -> None:
    runs = {env: start(setup_cli(env), project) for env in ("alpha", "tester")}
    results = {env: run.finish() for env, run in runs.items()}
    assert {env: code for env, (code, _) in results.items()} == {"alpha": 0, "tester": 0}, results
    check_environment(load_profile("alpha", project), project, ["alfy"])
    check_environment(load_profile("tester", project), project, ["tester123"])
    assert len(secrets(project)) == 6
    assert envfile.read(project.env_file)["PIPER_ENV"] in ("alpha", "tester")
    check_clean(project, secrets(project))


def test_two_imports_of_one_user_at_once(fresh_tester, tmp_path: Path) -> None:
    profile, project = fresh_tester
    document = _exported(profile, project, tmp_path)
    known = secrets(project)
    # Both plan to create the user and wait at their INSERT; then they race for it.
    with Lock(owner(profile, project), "LOCK TABLE alpha_users IN SHARE MODE") as lock:
        runs = [start(import_cli(document), project) for _ in range(2)]
        wait_until(runs[0], waiting_at('INSERT INTO "alpha_users"', lambda: admin(profile, project), count=2))
        lock.release()
        results = sorted(run.finish() for run in runs)
    assert [code for code, _ in results] == [0, 1], results
    assert "run it again" in one_error(results[1][1])
    assert preferences(profile, project, "fake.crash") == BIG
    assert events(profile, project, "import", "fake.crash") == 1
    again = run_cli(import_cli(document), project)
    assert again.returncode == 0 and "already holds this data" in again.stdout, again.stderr
    check_clean(project, known)


def test_a_db_backup_during_a_teardown_waits_and_then_finds_nothing_to_back_up(fresh_tester, tmp_path: Path) -> None:
    profile, project = fresh_tester
    known = secrets(project)
    with Lock(owner(profile, project), "LOCK TABLE alpha_users IN ACCESS EXCLUSIVE MODE") as lock:
        teardown = start(teardown_cli(), project)
        wait_until(teardown, waiting_at("LOCK TABLE", lambda: admin(profile, project)))
        # The backup tries the environment's lock a second time: the first try found the teardown holding it.
        tried = tmp_path / "tried-twice"
        backup = start([*INVOKE, "db-backup", "--env", "tester"], project, mark=tried,
                       pause=f"open|.{profile.name}.lock|2")
        wait_until(backup, Point("waiting for the environment's lock",
                                 lambda popen, process: "tried the lock twice" if tried.exists() else None))
        lock.release()
        torn = teardown.finish()
        backed = backup.finish()
    assert torn[0] == 0, torn[1]
    assert backed[0] != 0, backed
    one_error(backed[1])
    check_torn_down(profile, project)
    [archive] = dumps(project)
    check_archive(profile, project, archive, ["tester123"])
    check_clean(project, known)
    # And the next commands work: set up again, back up.
    for argv in (setup_cli("tester"), [*INVOKE, "db-backup", "--env", "tester"]):
        result = run_cli(argv, project)
        assert result.returncode == 0, result.stderr
    assert len(dumps(project)) == 2
    check_clean(project, known | secrets(project))

