"""Every command in README.md and the operational guide, run exactly as written in a fresh checkout.

Each document gets a checkout of its own: the repository's files (tracked, and untracked but not
ignored, as .ci/run copies them) committed to a scratch git repository and cloned from it, so it
is a fresh clone of `main` with an `origin`. Its `.env` moves the local environments to free
ports (local overrides, `PIPER_<ENV>_PORT`); a scratch project a document makes (`PIPER_ROOT=...`)
must give itself a port the same way. One bash runs the document's blocks in
order (```sh, ```bash: every line; ```console: the `$ ` lines), standard input closed, and each
command must exit 0 unless a marker says otherwise. A marker is an HTML comment on the line
before the block:

    <!-- docs-test: skip — why it is not run -->       (a reason is required)
    <!-- docs-test: needs production (hosted) -->     (not run; the need is the reason)
    <!-- docs-test: exit 1 — why -->                  (every command of the block exits 1)

Only the installation is shortened: the checkout's `.venv` is seeded (hard links) with the test
virtualenv's packages except pip, setuptools and piper-ops, so the documents' own
`python3 -m venv .venv` and `pip install -e .` run as written but download nothing.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from services.profiles import load_profiles
from services.project import Project
from tests.support.cli import KEPT_VARIABLES
from tests.support.projects import REPO, free_port, register_project, remove_servers

DOCUMENTS = ("README.md", "docs/ALPHA_DATABASE_ARCHITECTURE.md")
#: Fenced blocks in these languages are run; any other block must not look like a transcript.
RUN_LANGUAGES = ("sh", "bash", "console")
_FENCE = re.compile(r"(?P<indent> *)(?P<fence>`{3,})\s*(?P<info>[^`\s]*)[^`]*")
_MARKER = re.compile(r"\s*<!--\s*docs-test:\s*(?P<text>.*?)\s*-->\s*")
_EXIT = re.compile(r"exit (?P<code>[0-9]{1,3})(?:\s*[—:-]\s*(?P<why>.+))?")
_SKIP = re.compile(r"skip\s*(?:[—:-]\s*(?P<why>.*))?")
_TIMEOUT = 300


@dataclass
class Block:
    document: str
    line: int
    language: str
    commands: list[tuple[int, str]] = field(default_factory=list)
    skip: str | None = None
    expected: int = 0


class MarkupError(Exception):
    """A block whose marker is wrong, or a transcript in a block that is not run."""


def parse_document(path: Path) -> list[Block]:
    """Return the runnable blocks of a Markdown document, with their markers, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    name = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else path.name
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.fullmatch(lines[index])
        if not opening:
            index += 1
            continue
        fence, language, start = opening["fence"], opening["info"].lower(), index + 1
        body: list[tuple[int, str]] = []
        index += 1
        while index < len(lines) and lines[index].strip() != fence:
            body.append((index + 1, lines[index]))
            index += 1
        index += 1
        marker = _marker_before(lines, start - 1)
        where = f"{name}:{start}"
        if language not in RUN_LANGUAGES:
            if any(text.strip().startswith("$ ") for _, text in body):
                raise MarkupError(f"{where}: a ```{language or ' '} block holds `$ ` commands; make it ```console "
                                  "so that tests/test_docs.py runs them (with a docs-test marker if needed)")
            if marker is not None:
                raise MarkupError(f"{where}: a docs-test marker before a block that is not run (```{language})")
            continue
        block = Block(name, start, language, _commands(body, language))
        if marker is not None:
            _apply_marker(block, marker, where)
        blocks.append(block)
    return blocks


def _marker_before(lines: list[str], fence_index: int) -> str | None:
    """Return the docs-test marker on the nearest non-blank line above a fence, if it is one."""
    above = fence_index - 1
    while above >= 0 and not lines[above].strip():
        above -= 1
    found = _MARKER.fullmatch(lines[above]) if above >= 0 else None
    return found["text"] if found else None


def _apply_marker(block: Block, text: str, where: str) -> None:
    exit_code, skip = _EXIT.fullmatch(text), _SKIP.fullmatch(text)
    if exit_code:
        block.expected = int(exit_code["code"])
    elif skip:
        if not (skip["why"] or "").strip():
            raise MarkupError(f"{where}: `docs-test: skip` needs a reason (`<!-- docs-test: skip — why -->`)")
        block.skip = skip["why"].strip()
    elif text.startswith("needs "):
        block.skip = text
    else:
        raise MarkupError(f"{where}: unknown docs-test marker {text!r}; use `skip — why`, `needs ...` or `exit N`")


def _commands(body: list[tuple[int, str]], language: str) -> list[tuple[int, str]]:
    """Return a block's commands with their line numbers: `$ ` lines of a console block, else every line."""
    commands: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, raw in body:
        text = raw.strip()
        if pending is not None:  # a line continued with a backslash
            text = text[2:] if language == "console" and text.startswith("> ") else text
            pending = (pending[0], f"{pending[1]}\n{text}")
        elif language == "console":
            if not text.startswith("$ "):
                continue
            pending = (number, text[2:])
        else:
            if not text or text.startswith("#"):
                continue
            pending = (number, text)
        if not pending[1].endswith("\\"):
            commands.append(pending)
            pending = None
    if pending is not None:
        commands.append(pending)
    return commands


# --- the fresh checkout -------------------------------------------------------------------------

def _fresh_checkout(base: Path) -> Path:
    """Return a fresh clone of `main` holding the working tree's files (tracked and untracked, not ignored)."""
    origin, checkout = base / "origin", base / "checkout"
    origin.mkdir()
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout
    subprocess.run(["tar", "--null", "-T", "-", "-cf", "-"], cwd=REPO, input=files, check=True,
                   stdout=open(base / "files.tar", "wb"))  # noqa: SIM115 (closed when the process ends)
    subprocess.run(["tar", "-C", str(origin), "-xf", str(base / "files.tar")], check=True)
    (base / "files.tar").unlink()
    git = {**_base_env(), "GIT_AUTHOR_NAME": "Fake Tester", "GIT_AUTHOR_EMAIL": "fake.tester@example.invalid",
           "GIT_COMMITTER_NAME": "Fake Tester", "GIT_COMMITTER_EMAIL": "fake.tester@example.invalid"}
    for argv in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                 ["git", "commit", "-q", "--no-verify", "-m", "the working tree, for tests/test_docs.py"]):
        subprocess.run(argv, cwd=origin, env=git, check=True, capture_output=True)
    subprocess.run(["git", "clone", "-q", str(origin), str(checkout)], env=git, check=True, capture_output=True)
    return checkout


def _seed_virtualenv(checkout: Path) -> None:
    """Make checkout/.venv a virtualenv holding the test virtualenv's packages (hard links), but for pip,
    setuptools and piper-ops: the document's `python3 -m venv .venv` adds pip, its `pip install -e .`
    installs piper-ops from the checkout and finds every dependency already there."""
    venv = checkout / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    source = Path(sysconfig.get_paths()["purelib"])
    target = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    own = re.compile(r"(pip|setuptools|_distutils_hack|piper_ops|__editable__|distutils-precedence)\b", re.I)
    for entry in source.iterdir():
        if own.match(entry.name) or entry.name == "__pycache__":
            continue
        _link_tree(entry, target / entry.name)
    prefix = Path(sys.prefix)
    for script in (prefix / "bin").iterdir():
        if not script.is_file() or script.name.startswith(("pip", "python", "activate", "Activate", "piper")):
            continue
        head = script.read_bytes()[:200]
        shebang = f"#!{prefix}/bin/python".encode()
        if head.startswith(shebang):
            body = script.read_bytes().split(b"\n", 1)[1]
            new = venv / "bin" / script.name
            new.write_bytes(f"#!{venv}/bin/python\n".encode() + body)
            new.chmod(0o755)


def _link_tree(source: Path, target: Path) -> None:
    """Hard-link a file or folder (a copy where links cannot be made); the test virtualenv is never written."""
    if source.is_dir() and not source.is_symlink():
        shutil.copytree(source, target, copy_function=_link_or_copy, symlinks=True)
    else:
        _link_or_copy(str(source), str(target))


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _base_env() -> dict[str, str]:
    """Return this process's environment without the developer's PIPER_* selection, secrets or virtualenv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPER_") or k in KEPT_VARIABLES}
    for key in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"):
        env.pop(key, None)
    return env


# --- running one document -------------------------------------------------------------------------

def _script(blocks: list[Block], status: Path) -> str:
    lines = [f"exec 3>{_quote(str(status))}"]
    for block in blocks:
        if block.skip is not None:
            continue
        for number, command in block.commands:
            header = f"printf '\\n### docs-test line {number} (at %s)\\n' \"${{EPOCHREALTIME:-}}\""
            lines += [header, command, "__rc=$?",
                      f"printf '%s %s\\n' {number} \"$__rc\" >&3",
                      f"if [ \"$__rc\" -ne {block.expected} ]; then exit 97; fi"]
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def run_blocks(name: str, blocks: list[Block], cwd: Path, env: dict[str, str], workdir: Path) -> str | None:
    """Run the blocks in one bash, in order; return None when every command exited as written, else why not.

    Prints how many commands ran and which blocks were skipped, and why.
    """
    status, output = workdir / "status", workdir / "output.log"
    (workdir / "doc.sh").write_text(_script(blocks, status))
    with open(output, "wb") as log:
        shell = subprocess.Popen(["bash", str(workdir / "doc.sh")], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            returncode = shell.wait(timeout=_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(shell.pid, signal.SIGKILL)  # the shell's own process group: what the document started
            shell.wait()
            returncode = -1
    results = dict(line.split() for line in status.read_text().splitlines()) if status.exists() else {}
    run = sum(len(b.commands) for b in blocks if b.skip is None)
    skipped = [b for b in blocks if b.skip is not None]
    print(f"{name}: {len(results)} of {run} commands run; {sum(len(b.commands) for b in skipped)} commands in "
          f"{len(skipped)} blocks skipped")
    for block in skipped:
        print(f"  skipped {name}:{block.line}: {block.skip}")
    if returncode == 0 and len(results) == run:
        return None
    failed = [(b, n, c) for b in blocks if b.skip is None for n, c in b.commands
              if str(n) in results and int(results[str(n)]) != b.expected]
    if failed:
        block, number, command = failed[0]
        where = (f"{name}:{number}: `{command}` exited {results[str(number)]}, expected {block.expected} (mark the "
                 "block `<!-- docs-test: exit N -->` if that is what it does, or `skip — why`)")
    else:
        killed = f", killed after {_TIMEOUT} s" if returncode == -1 else ""
        where = f"{name}: the shell stopped after {len(results)} of {run} commands (exit {returncode}{killed})"
    tail = output.read_text(errors="replace").rsplit("### docs-test line", 1)[-1][-4000:]
    return f"{where}\n--- its output ---\n{tail}"


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_command_runs_as_written(document: str, tmp_path: Path) -> None:
    blocks = parse_document(REPO / document)
    checkout = _fresh_checkout(tmp_path)
    project = register_project(checkout)
    # The documents' own temporary files (mktemp -d) land here, to be found and cleaned up. A short
    # path: an ordinary user's server puts its socket under $TMPDIR when the data directory's is too long.
    scratch = Path(tempfile.mkdtemp(prefix="docs-"))
    piper_ops = importlib.metadata.distribution("piper-ops").read_text("direct_url.json")
    env = _base_env()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["TMPDIR"] = str(scratch)
    ports = {}
    for profile in load_profiles(Project(checkout), overrides=False):
        if not profile.hosted:
            ports[f"PIPER_{profile.name.upper()}_PORT"] = str(free_port())
    fd = os.open(checkout / ".env", os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("".join(f"{key}={value}\n" for key, value in ports.items()))
    _seed_virtualenv(checkout)
    try:
        problem = run_blocks(document, blocks, checkout, env, tmp_path)
    finally:
        remove_servers(project)
        for made in scratch.iterdir():
            if (made / "environments").is_dir():
                remove_servers(Project(made))
        shutil.rmtree(scratch, ignore_errors=True)
    assert importlib.metadata.distribution("piper-ops").read_text("direct_url.json") == piper_ops, \
        "the test virtualenv's piper-ops install was changed by a document's command"
    if problem is not None:
        pytest.fail(problem)


def test_a_failing_command_fails_unless_its_marker_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "page.md"
    page.write_text("```sh\ncd sub\n```\n\n<!-- docs-test: exit 3 — it says so -->\n```console\n$ sh -c 'exit 3'\n"
                    "```\n\n<!-- docs-test: skip — not here -->\n```sh\nfalse\n```\n\n```console\n$ test -f here\n"
                    "$ echo after\n```\n")
    (tmp_path / "sub").mkdir()
    work = tmp_path / "work"
    work.mkdir()
    problem = run_blocks("page.md", parse_document(page), tmp_path, _base_env(), work)
    assert problem is not None and problem.startswith("page.md:16: `test -f here` exited 1, expected 0 (mark the block")
    assert "page.md: 3 of 4 commands run; 1 commands in 1 blocks skipped" in capsys.readouterr().out
    (tmp_path / "sub" / "here").write_text("one shell: the cd of the first block holds in the last\n")
    assert run_blocks("page.md", parse_document(page), tmp_path, _base_env(), work) is None


@pytest.mark.parametrize("document", DOCUMENTS)
def test_documents_mark_their_blocks(document: str) -> None:
    """Every transcript is in a block that is run, every marker is known, every skip says why."""
    blocks = parse_document(REPO / document)
    assert any(b.skip is None and b.commands for b in blocks), f"{document} has no command the test runs"
    for block in blocks:
        assert block.commands, f"{document}:{block.line}: a ```{block.language} block with no command"


def test_markers_are_checked(tmp_path: Path) -> None:
    cases = {
        "<!-- docs-test: skip -->\n```sh\nfalse\n```\n": "needs a reason",
        "<!-- docs-test: sometimes -->\n```sh\nfalse\n```\n": "unknown docs-test marker",
        "```\n$ invoke status\n```\n": "make it ```console",
    }
    for text, message in cases.items():
        page = tmp_path / "page.md"
        page.write_text(text)
        with pytest.raises(MarkupError, match=re.escape(message)):
            parse_document(page)
    page.write_text("<!-- docs-test: exit 2 — a usage error -->\n```console\n$ invoke stup\nerror: ...\n"
                    "$ a \\\n> b\n```\n<!-- docs-test: needs production (hosted) -->\n\n```sh\n"
                    "invoke setup --env production  # hosted\n```\n")
    first, second = parse_document(page)
    assert (first.expected, first.commands) == (2, [(3, "invoke stup"), (5, "a \\\nb")])
    assert second.skip == "needs production (hosted)"
    assert second.commands == [(11, "invoke setup --env production  # hosted")]
