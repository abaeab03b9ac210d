"""What the audit scans: PIPER.md and its backups, named files, or what git tracks, stages or keeps.

A target's label is what reports show: the path for a file, `:path` for staged (index) content,
`<commit[:12]>:path` for a past version (see label_path).
"""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from services.audit.rules import RuleSet
from services.errors import AuditError
from services.project import Project

PIPER_MD = "config/PIPER.md"
#: Git pathspecs (and globs) of PIPER.md and its backups in config/.
PIPER_MD_PATTERNS = ("config/PIPER.md", "config/PIPER.md.backup-*")


@dataclass(frozen=True)
class ScanTarget:
    """One thing to scan: a label for reports and how to get its bytes."""

    label: str
    path: Path | str | None = None
    content: bytes | None = None
    #: A git-tracked path: skipped, not an error, when the working tree has a symlink, a directory or
    #: nothing there (git tracks symlinks and submodules; a file may be deleted but not yet staged).
    tracked: bool = False
    #: A file that must be text (PIPER.md and its backups): scanned even with a NUL byte in it, which
    #: makes other files "binary" and skipped. Personal data beside a NUL is still personal data.
    text: bool = False


def piper_md_targets(project: Project) -> list[ScanTarget]:
    """Return config/PIPER.md and every backup of it in config/, oldest first.

    A missing PIPER.md is an error (exit 2): an audit that cannot read what it must audit did not run.
    """
    config = project.config_dir
    if not (config / "PIPER.md").exists() and not (config / "PIPER.md").is_symlink():
        raise AuditError(f"{PIPER_MD} does not exist; the audit has nothing to audit (restore it with "
                         "`invoke restore-config`, or pass the files to scan)")
    targets = [ScanTarget(PIPER_MD, config / "PIPER.md", text=True)]
    for path in sorted(config.glob("PIPER.md.backup-*")):
        if path.is_file() and not path.name.startswith("."):
            targets.append(ScanTarget(f"config/{path.name}", path, text=True))
    return targets


def path_targets(project: Project, paths: Iterable[str]) -> list[ScanTarget]:
    """Return targets for files named on the command line (relative to the current directory).

    Labels are relative to the project's root (what --all and SARIF show), or absolute outside it.
    """
    targets = []
    for name in paths:
        path = Path(name)
        if not path.exists():
            raise AuditError(f"{name}: no such file; check the path")
        targets.append(ScanTarget(root_label(project, name), path))
    return targets


def hook_targets(project: Project, rules: RuleSet, paths: Iterable[str]) -> list[ScanTarget]:
    """Return targets for the files pre-commit passes: its staged files on a commit, every tracked one with --all-files.

    pre-commit runs a hook from the repository's root with unstaged changes stashed, so the working
    tree holds what is being committed. The files that define the rules are skipped (they hold the
    terms), and so are symlinks, directories and paths that are gone, as with --all.
    """
    skip = {root_label(project, str(source)) for source in rules.sources}
    # pre-commit passes plain paths relative to the root it runs in: no per-file path arithmetic then.
    at_root = os.getcwd() in (str(project.root), os.path.realpath(project.root)) and os.sep == "/"
    targets = []
    for name in paths:
        plain = at_root and not name.startswith(("/", "./", "../")) and "/../" not in name
        label = name if plain else root_label(project, name)
        if label not in skip:
            targets.append(ScanTarget(label, name, tracked=True))
    return targets


def root_label(project: Project, name: str) -> str:
    """Return a path named relative to the current directory as a label: relative to the project root, POSIX."""
    full = os.path.abspath(name)
    for root in (str(project.root), os.path.realpath(project.root)):
        relative = os.path.relpath(full, root)
        if relative != os.pardir and not relative.startswith(os.pardir + os.sep):
            return Path(relative).as_posix()
    return Path(full).as_posix()


def git_root(start: Path) -> Path:
    """Return the top level of the git repository holding start (start itself outside git, or without git)."""
    try:
        result = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=start, capture_output=True, check=False)
    except OSError:
        return start.resolve()
    top = result.stdout.decode("utf-8", "surrogateescape").strip()
    return Path(top).resolve() if result.returncode == 0 and top else start.resolve()


def has_profiles(project: Project) -> bool:
    """Return True when the repository is laid out as ADR-040 says (environments/ and config/PIPER.md),
    so its environments/*.yaml are piper-ops profiles whose terms the hook must look for; another
    repository's environments/ folder (Kubernetes values, say) is none of the hook's business."""
    return project.environments_dir.is_dir() and (project.config_dir / "PIPER.md").is_file()


def tracked_targets(project: Project, rules: RuleSet) -> list[ScanTarget]:
    """Return every git-tracked file of the project, except the profiles that define the rules."""
    # Names as git prints them (relative to the root), resolved or not: no per-file stat or Path here,
    # which cost more than the scan itself on 20,000 files; the workers check each file as they open it.
    root, real_root = str(project.root), os.path.realpath(project.root)
    skip = set()
    for source in rules.sources:
        skip.add(os.path.relpath(source, root))
        skip.add(os.path.relpath(os.path.realpath(source), real_root))
    return [ScanTarget(name, os.path.join(root, name), tracked=True)
            for name in _git_lines(project, ["ls-files", "-z"], "--all") if name not in skip]


def staged_targets(project: Project, rules: RuleSet, everything: bool) -> list[ScanTarget]:
    """Return the staged (index) content of PIPER.md and its backups, or of every staged file."""
    names = _git_lines(project, ["diff", "--cached", "--name-only", "-z", "--diff-filter=ACMR"], "--staged")
    skip = {source.resolve() for source in rules.sources}
    targets = []
    for name in names:
        if not everything and not _is_piper_md(name):
            continue
        if (project.root / name).resolve() in skip:
            continue
        targets.append(ScanTarget(f":{name}", content=_git_bytes(project, ["show", f":{name}"], "--staged")))
    return targets


def history_targets(project: Project, rules: RuleSet, everything: bool) -> Iterator[ScanTarget]:
    """Yield every distinct past version of PIPER.md and its backups (or of every file) in git."""
    args = ["log", "--all", "--no-renames", "--format=@%H", "--name-only", "-z"]
    if not everything:
        args += ["--", *PIPER_MD_PATTERNS]
    skip = {str(source.resolve().relative_to(project.root)) for source in rules.sources
            if source.resolve().is_relative_to(project.root)}
    raw = _git_bytes(project, args, "--history").decode("utf-8", "surrogateescape")
    pairs: list[tuple[str, str]] = []
    commit = ""
    for token in re.split(r"[\0\n]", raw):
        if token.startswith("@") and len(token) == 41:
            commit = token[1:]
        elif token and commit and (everything or _is_piper_md(token)) and token not in skip:
            pairs.append((commit, token))
    seen: set[bytes] = set()
    for commit, name, blob, content in _cat_blobs(project, pairs):
        if blob in seen:
            continue
        seen.add(blob)
        yield ScanTarget(f"{commit[:12]}:{name}", content=content)


def _cat_blobs(project: Project, pairs: list[tuple[str, str]]) -> Iterator[tuple[str, str, bytes, bytes]]:
    # One `git cat-file --batch` for all versions; a path deleted in a commit reports "missing".
    if not pairs:
        return
    request = "".join(f"{commit}:{name}\n" for commit, name in pairs).encode("utf-8", "surrogateescape")
    try:
        out = subprocess.run(["git", "cat-file", "--batch"], cwd=project.root, input=request,
                             capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise AuditError(f"--history: git cat-file failed in {project.root} ({exc}); check the repository") from None
    pos = 0
    for commit, name in pairs:
        header_end = out.index(b"\n", pos)
        header = out[pos:header_end].split()
        pos = header_end + 1
        if len(header) == 3 and header[1] == b"blob":
            size = int(header[2])
            content = out[pos:pos + size]
            pos += size + 1
            yield commit, name, header[0], content
        elif len(header) == 3:
            pos += int(header[2]) + 1


def _is_piper_md(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in PIPER_MD_PATTERNS)


def split_label(label: str) -> tuple[str, str]:
    """Return (version, path) of a target's label: ("", p) working tree, ("staged", p), or (commit, p)."""
    head, colon, rest = label.partition(":")
    if colon and head == "":
        return "staged", rest
    if colon and len(head) == 12 and all(c in "0123456789abcdef" for c in head):
        return head, rest
    return "", label


def label_path(label: str) -> str:
    """Return the path a target's label names, without the commit or index prefix of a git version."""
    return split_label(label)[1]


def _git_bytes(project: Project, args: list[str], flag: str) -> bytes:
    try:
        result = subprocess.run(["git", *args], cwd=project.root, capture_output=True, check=False)
    except OSError:
        raise AuditError(f"{flag} needs git, which was not found; install git or drop {flag}") from None
    if result.returncode != 0:
        message = result.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = message[0] if message else f"exit {result.returncode}"
        raise AuditError(f"{flag}: git failed in {project.root} ({detail}); run it inside a git checkout")
    return result.stdout


def _git_lines(project: Project, args: list[str], flag: str) -> list[str]:
    raw = _git_bytes(project, args, flag)
    return [name for name in raw.decode("utf-8", "surrogateescape").split("\0") if name]
