"""The hostile-input corpus (tests/data/hostile/): every case is a real command, run as a subprocess.

Each case is a small YAML description (format: tests/data/hostile/README.md): the files to make,
the command line, and what must come of it. One parametrised test runs them all and asserts, for
every case, the contract of DESIGN.md:

- the exit code (2 bad usage or input, 1 refused or failed);
- exactly one line on stderr, starting `error: ` (and holding the case's message);
- no `Traceback` anywhere;
- nothing written: the project (`.env` byte for byte, postgres_data/, backups/, private/, config/
  and the rest), the environments' data directories (as root, their homes under
  /var/lib/piper-ops/data), the case's scratch directory and the command's $TMPDIR are exactly as
  before (every path with its type, size, mode and mtime_ns).

A case handled badly stays in the corpus with `xfail: <what goes wrong>` (strict: once fixed,
the case fails until the mark is removed).

Where a case runs (its `project:`):
- shared: one project per pytest-xdist worker with alpha set up, for cases that change nothing
  in it (their files live in a scratch directory of their own);
- bare: a fresh project with nothing set up, for cases that put files into the project
  (profiles, PIPER.md, `.env`, postgres_data/) or need an environment never set up;
- fresh: a fresh project with alpha set up, for cases that need both.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.postgres import server_account
from services.profiles import load_profile, load_profiles
from services.project import Project
from tests.support.cli import INVOKE, cli_env
from tests.support.projects import REPO, make_project, remove_servers, set_up

CORPUS = Path(__file__).parent / "data" / "hostile"
#: A command that has not answered in this long hangs: that is a failure, not a stuck suite.
TIMEOUT = 60
#: What a command may map: enough for any of them, far too little to swallow /dev/zero whole.
MEMORY_LIMIT = 1 << 30
_CASE_KEYS = {"about", "project", "files", "remove", "argv", "stdin", "stdout", "env", "exit", "message",
              "timeout", "touches", "xfail", "finding_ok"}
_FILE_KINDS = {"text", "bytes", "export", "fifo", "symlink", "directory"}
_PROJECTS = ("shared", "bare", "fresh")


# --- the corpus -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One hostile input: what to make, what to run, and what must come of it."""

    id: str
    group: str
    about: str
    argv: list[str]
    exit: tuple[int, ...]
    message: str
    project: str = "shared"
    files: list[dict[str, Any]] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    stdin: str | None = None
    stdout: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = TIMEOUT
    touches: list[str] = field(default_factory=list)
    xfail: str | None = None
    finding_ok: bool = False


def load_case(path: Path) -> Case:
    """Return the case a corpus file describes; a malformed description fails loudly."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(raw, dict), f"{path}: a case is a mapping"
    unknown = set(raw) - _CASE_KEYS
    assert not unknown, f"{path}: unknown keys {sorted(unknown)}"
    project = raw.get("project", "shared")
    assert project in _PROJECTS, f"{path}: project must be one of {_PROJECTS}"
    files = raw.get("files") or []
    for spec in files:
        assert len(set(spec) & _FILE_KINDS) == 1, f"{path}: each file needs exactly one of {sorted(_FILE_KINDS)}"
        if project == "shared":
            assert not spec["path"].startswith("project/"), f"{path}: files in the project need project: bare or fresh"
    if project == "shared":
        assert not raw.get("remove"), f"{path}: removing project files needs project: bare or fresh"
    expected = raw["exit"]
    return Case(
        id=path.stem, group=path.parent.name, about=raw["about"], argv=[str(a) for a in raw["argv"]],
        exit=tuple(expected) if isinstance(expected, list) else (int(expected),), message=raw.get("message", ""),
        project=project, files=files, remove=raw.get("remove") or [], stdin=raw.get("stdin"),
        stdout=raw.get("stdout"), env=raw.get("env") or {}, timeout=float(raw.get("timeout", TIMEOUT)),
        touches=raw.get("touches") or [], xfail=raw.get("xfail"), finding_ok=bool(raw.get("finding_ok")),
    )


def corpus() -> list[Case]:
    """Return every case of the corpus, sorted by group and id; ids are unique."""
    cases = [load_case(path) for path in sorted(CORPUS.glob("*/*.yaml"))]
    ids = [case.id for case in cases]
    assert len(ids) == len(set(ids)), "two corpus files share a name"
    return cases


def _params() -> Iterator[Any]:
    for case in corpus():
        marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
        yield pytest.param(case, id=case.id, marks=marks)


# --- export documents with a valid checksum -------------------------------------------------

DEFAULT_USER = {"display_name": "Fake Person", "is_active": True, "is_verified": False, "alpha_wave": None,
                "created_at": None, "notes": None}
DEFAULT_SOURCE = {"environment": "alpha", "database": "piper_alpha", "schema_revision": None}


def payload_checksum(payload: bytes) -> str:
    """The export's checksum as services/users/documents.py defines it: SHA-256 of the payload's bytes as they stand."""
    return hashlib.sha256(payload).hexdigest()


def export_document(payload: bytes, *, envelope: dict[str, Any] | None = None, extra: bytes = b"") -> bytes:
    """Return an export document around payload (JSON text, as bytes) with the payload's valid checksum.

    The layout is export's: an envelope written one key a line, then `,\\n "payload": ` and the
    payload, then the checksum; `extra` goes between the payload and the checksum (a second key, say).
    Written here, not by build_export, so the corpus does not trust the code it tests.
    """
    head = {"format": "piper-user-export", "format_version": 1, "exported_at": "2000-01-01T00:00:00+00:00",
            "source": DEFAULT_SOURCE, **(envelope or {})}
    lines = "".join(f" {json.dumps(key)}: {json.dumps(value)},\n" for key, value in head.items())
    checksum = json.dumps({"algorithm": "sha256", "value": payload_checksum(payload)})
    return b"{\n" + lines[:-2].encode() + b',\n "payload": ' + payload + extra + b',\n "checksum": ' + checksum.encode() + b"\n}\n"


def export_payload(spec: dict[str, Any], expand: Any) -> bytes:
    """Return the payload text an `export:` spec describes (export's key order: keys, learning_data, preferences, user)."""
    if "payload" in spec:
        text = expand(spec["payload"])
    else:
        user = {**DEFAULT_USER, **(spec.get("user") or {})}
        user.setdefault("username", "zquux")
        user.setdefault("email", f"{user['username']}@example.invalid")
        for key in spec.get("user_drop") or []:
            del user[key]
        parts = {
            "keys": expand(spec.get("keys", "null")),
            "learning_data": expand(spec.get("learning_data", "null")),
            "preferences": expand(spec.get("preferences", '{"tone": "plain"}')),
            "user": expand(spec["user_text"] if "user_text" in spec else json.dumps(user)),
        }
        for key in spec.get("drop") or []:
            del parts[key]
        text = "{" + ", ".join(f"{json.dumps(key)}: {value}" for key, value in parts.items()) + "}"
    return text.encode(spec.get("encoding", "utf-8"), "surrogatepass")


# --- making a case's files ------------------------------------------------------------------


def _expander(spec: dict[str, Any], places: dict[str, str]) -> Any:
    repeats = spec.get("repeat") or {}

    def expand(text: str) -> str:
        for name, value in places.items():
            text = text.replace(name, value)
        for marker, (unit, times) in repeats.items():
            text = text.replace(marker, unit * int(times))
        return text

    return expand


def _where(name: str, project: Project, scratch: Path) -> Path:
    return project.root / name[len("project/"):] if name.startswith("project/") else scratch / name


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.is_symlink() or path.exists():
        path.unlink()


def remove_project_files(case: Case, project: Project, scratch: Path) -> None:
    """Delete what the case put into the project, so that removing its servers afterwards meets nothing hostile."""
    for spec in case.files:
        if spec["path"].startswith("project/"):
            _delete(_where(spec["path"], project, scratch))


def make_files(case: Case, project: Project, scratch: Path) -> None:
    """Create the case's files (and remove what it removes) before the snapshot is taken."""
    places = {"{scratch}": str(scratch), "{project}": str(project.root)}
    for name in case.remove:
        _delete(_where(name, project, scratch))
    for spec in case.files:
        path = _where(spec["path"], project, scratch)
        path.parent.mkdir(parents=True, exist_ok=True)
        _delete(path)
        expand = _expander(spec, places)
        if "text" in spec:
            path.write_bytes(expand(spec["text"]).encode(spec.get("encoding", "utf-8"), "surrogatepass"))
        elif "bytes" in spec:
            path.write_bytes(expand(spec["bytes"]).encode("latin-1"))
        elif "export" in spec:
            export = spec["export"]
            document = export_document(export_payload(export, expand), envelope=export.get("envelope"),
                                       extra=expand(export.get("extra", "")).encode())
            document = expand(export.get("prefix", "")).encode("latin-1") + document
            if "truncate" in export:
                document = document[:int(export["truncate"])]
            path.write_bytes(document)
        elif "fifo" in spec:
            os.mkfifo(path)
        elif "symlink" in spec:
            path.symlink_to(expand(spec["symlink"]))
        elif "directory" in spec:
            path.mkdir()
            for child, text in (spec.get("holding") or {}).items():
                (path / child).write_text(text)


# --- the snapshot: nothing written ----------------------------------------------------------


def _entry(path: Path, info: os.stat_result) -> tuple[Any, ...]:
    kind = stat.S_IFMT(info.st_mode)
    return (kind, info.st_size, stat.S_IMODE(info.st_mode), info.st_mtime_ns)


def _walk(path: Path, key: str, out: dict[str, tuple[Any, ...]]) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        out[key] = ("absent",)
        return
    if stat.S_ISLNK(info.st_mode):
        out[key] = ("link", os.readlink(path), stat.S_IMODE(info.st_mode))
        return
    if not stat.S_ISDIR(info.st_mode):
        out[key] = _entry(path, info)
        return
    names = sorted(os.listdir(path))
    if "PG_VERSION" in names:
        # A live cluster: its server writes inside it all the time (WAL, statistics). What a command
        # must not change is the cluster itself: its mode, its top-level files, which entries it has.
        out[key] = ("cluster", stat.S_IMODE(info.st_mode))
        for name in names:
            child = os.lstat(path / name)
            if stat.S_ISDIR(child.st_mode):
                out[f"{key}/{name}"] = ("dir", stat.S_IMODE(child.st_mode))
            elif name.endswith(".log"):  # the server's own log: it writes there whenever it likes
                out[f"{key}/{name}"] = ("log", stat.S_IMODE(child.st_mode))
            else:
                out[f"{key}/{name}"] = _entry(path / name, child)
        return
    out[key] = _entry(path, info)
    for name in names:
        _walk(path / name, f"{key}/{name}", out)


def watched(project: Project, scratch: Path, tmpdir: Path) -> dict[str, Path]:
    """Return what a case must leave as it was, by label: project, scratch, tmp, and the data homes."""
    roots = {"project": project.root, "scratch": scratch, "tmp": tmpdir}
    if server_account.needed():
        # As root a cluster lives in a home of its own under /var/lib/piper-ops/data, named after the
        # project's data directory (services/postgres/data_dirs.py, _data_home).
        for name in ("alpha", "dev", "tester"):
            project_dir = project.root / "postgres_data" / name
            digest = hashlib.sha256(str(project_dir.absolute()).encode()).hexdigest()[:12]
            roots[f"home-{name}"] = server_account.RUNTIME_ROOT / "data" / digest
    return roots


def snapshot(roots: dict[str, Path]) -> dict[str, tuple[Any, ...]]:
    """Return every path under the roots with its type, size, mode and mtime_ns, and the bytes of `.env`."""
    out: dict[str, tuple[Any, ...]] = {}
    for label, root in roots.items():
        _walk(root, label, out)
    env = roots["project"] / ".env"
    if env.is_file():
        out["project/.env (bytes)"] = (hashlib.sha256(env.read_bytes()).hexdigest(),)
    return out


#: Directories whose own mtime may change in every case: Python's tempfile.gettempdir() proves $TMPDIR
#: writable by making and removing a file in it (a path too long for a socket sends the socket there).
#: A file left in it is still a change.
ALWAYS_TOUCHED = ("tmp",)


def changes(before: dict[str, tuple[Any, ...]], after: dict[str, tuple[Any, ...]], touches: list[str]) -> list[str]:
    """Return what differs between two snapshots, one line a path (a touched directory's mtime aside)."""
    found = []
    touches = [*touches, *ALWAYS_TOUCHED]
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key, ("absent",)), after.get(key, ("absent",))
        if key in touches and old[:3] == new[:3] and isinstance(old[0], int) and stat.S_ISDIR(old[0]):
            continue
        if old != new:
            found.append(f"{key}: {old} -> {new}")
    return found


# --- running a case -------------------------------------------------------------------------


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _placed(text: str, project: Project, scratch: Path) -> str:
    return text.replace("{scratch}", str(scratch)).replace("{project}", str(project.root))


def command_line(case: Case, project: Project, scratch: Path) -> list[str]:
    """Return the case's argv with its door: `invoke TASK ...` or `python scripts/X.py ...`."""
    argv = [_placed(a, project, scratch) for a in case.argv]
    if argv[0] == "invoke":
        return [*INVOKE, *argv[1:]]
    assert argv[0].startswith("scripts/") and argv[0].endswith(".py"), f"{case.id}: argv starts with invoke or scripts/X.py"
    return [sys.executable, *argv]


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str


def run_case(case: Case, project: Project, scratch: Path, tmpdir: Path) -> Outcome:
    """Run the case's command in the project, with its own $TMPDIR; a hang fails the case."""
    env = cli_env(project, TMPDIR=str(tmpdir), **{key: _placed(value, project, scratch) for key, value in case.env.items()})
    stdout = open(case.stdout, "wb") if case.stdout else subprocess.PIPE  # noqa: SIM115 - closed below
    try:
        result = subprocess.run(command_line(case, project, scratch), cwd=REPO, env=env, stdout=stdout,
                                stderr=subprocess.PIPE, input=(case.stdin or "").encode(), timeout=case.timeout,
                                preexec_fn=_limit_memory, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{case.id}: the command hung (no answer in {case.timeout:.0f} s)")
    finally:
        if case.stdout:
            stdout.close()  # type: ignore[union-attr]
    out = result.stdout.decode("utf-8", "replace") if result.stdout else ""
    return Outcome(result.returncode, out, result.stderr.decode("utf-8", "replace"))


def problems(case: Case, outcome: Outcome) -> list[str]:
    """Return what is wrong with the outcome: the exit code, the one `error: ` line and its message, a traceback."""
    found = []
    if "Traceback" in outcome.stderr + outcome.stdout:
        last = (outcome.stderr + outcome.stdout).strip().splitlines()[-1]
        found.append(f"a traceback, ending: {last}")
    if outcome.code not in case.exit:
        found.append(f"exit {outcome.code}, not {' or '.join(map(str, case.exit))}")
    if case.finding_ok and outcome.code == 1:  # the audit found something: findings on stdout, no error
        if "finding" not in outcome.stdout or outcome.stderr.strip():
            found.append("exit 1 without findings on stdout and nothing on stderr")
        return found
    lines = outcome.stderr.splitlines()
    if len(lines) != 1:
        found.append(f"{len(lines)} lines on stderr, not one")
    elif not lines[0].startswith("error: "):
        found.append("the line on stderr does not start with 'error: '")
    elif case.message not in lines[0]:
        found.append(f"the error does not say {case.message!r}")
    return found


# --- projects -------------------------------------------------------------------------------


def _set_up_alpha(root: Path) -> Project:
    project = make_project(root)
    set_up(load_profile("alpha", project), project)
    return project


@pytest.fixture(scope="module")
def shared_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """One project with alpha set up, shared by this worker's cases that change nothing in it."""
    project = _set_up_alpha(tmp_path_factory.mktemp("hostile") / "proj")
    yield project
    remove_servers(project)


@pytest.fixture
def case_project(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Project]:
    """The project a case asks for: the shared one, a bare one, or a fresh one with alpha set up."""
    case: Case = request.node.callspec.params["case"]
    if case.project == "shared":
        yield request.getfixturevalue("shared_project")
        return
    project = _set_up_alpha(tmp_path / "proj") if case.project == "fresh" else make_project(tmp_path / "proj")
    try:
        yield project
    finally:
        remove_project_files(case, project, tmp_path / "scratch")
        remove_servers(project)


@pytest.mark.parametrize("case", list(_params()))
def test_hostile_input(case: Case, case_project: Project, tmp_path: Path) -> None:
    project = case_project
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    make_files(case, project, scratch)
    tmpdir = Path(tempfile.mkdtemp(prefix="hostile-"))
    try:
        roots = watched(project, scratch, tmpdir)
        before = snapshot(roots)
        outcome = run_case(case, project, scratch, tmpdir)
        after = snapshot(roots)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    wrong = problems(case, outcome) + [f"wrote {line}" for line in changes(before, after, case.touches)]
    assert not wrong, (f"{case.id}: " + "; ".join(wrong) + f"\n--- exit {outcome.code}\n--- stderr:\n{outcome.stderr[-3000:]}"
                       f"\n--- stdout:\n{outcome.stdout[:1000]}")


# --- the harness itself ---------------------------------------------------------------------


def test_the_corpus_is_big_enough_and_covers_every_class() -> None:
    groups: dict[str, int] = {}
    for case in corpus():
        groups[case.group] = groups.get(case.group, 0) + 1
    assert sum(groups.values()) >= 80
    assert set(groups) == {"names", "documents", "not-regular", "missing", "refusals", "edges"}
    assert min(groups.values()) >= 5, groups


def test_a_document_built_here_is_one_the_import_accepts() -> None:
    """The corpus' documents fail for the reason they name, not for a checksum this file got wrong."""
    from services.users import documents

    payload = export_payload({"preferences": '{"tone": "plain", "n": [1, 2.5, null]}'}, lambda text: text)
    parsed = documents.parse_export(export_document(payload), "doc.json")
    assert parsed.user["username"] == "zquux" and parsed.preferences == {"tone": "plain", "n": [1, 2.5, None]}
    assert parsed.checksum == payload_checksum(payload)


def test_the_snapshot_sees_a_new_file_a_changed_file_and_a_changed_mode(tmp_path: Path) -> None:
    project = Project(tmp_path / "proj")
    (project.root / "private").mkdir(parents=True)
    (project.root / ".env").write_text("A=1\n")
    roots = {"project": project.root, "scratch": tmp_path / "scratch", "tmp": tmp_path / "tmp"}
    before = snapshot(roots)
    (project.root / ".env").write_text("A=2\n")
    os.utime(project.root / ".env", ns=(0, before["project/.env"][3]))  # same size and mtime: only the bytes differ
    (project.root / "private" / "new").write_text("x")
    (tmp_path / "tmp").mkdir()
    found = changes(before, snapshot(roots), [])
    assert any(line.startswith("project/.env (bytes)") for line in found)
    assert any(line.startswith("project/private/new") for line in found)
    assert any(line.startswith("tmp:") for line in found)


def test_the_profiles_of_a_made_project_load() -> None:
    """Cases rely on the repository's profiles: alpha, dev, tester (local) and production (hosted)."""
    names = {profile.name: profile.hosted for profile in load_profiles(Project(REPO))}
    assert names == {"alpha": False, "dev": False, "tester": False, "production": True}
