"""Dated backups of config/PIPER.md: take, list, rotate and restore, never leaking personal data.

Backups are `config/PIPER.md.backup-YYYYMMDD`; a second backup on the same day with different
content is `config/PIPER.md.backup-YYYYMMDD-HHMMSS`. A backup is written to a temporary file and
then hard-linked to its name, which fails if the name exists: no backup is ever overwritten, even
by two backups running at once. Content the audit flags never goes to config/ (a path git
tracks); on explicit request it goes to `private/config-backups/` (git-ignored, mode 0700).
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from services import audit
from services.errors import PersonalDataRefused, PiperError, UsageError
from services.files import fsync_directory, read_regular_file, sweep_partials, write_atomic
from services.project import Project
from services.rotation import Rotation, RotationPlan, plan_rotation, policy_from_mapping

BACKUP_NAME = re.compile(r"PIPER\.md\.backup-(\d{8})(?:-(\d{6}))?")
PRIVATE_DIR = "private/config-backups"
#: More than a PIPER.md could reasonably hold: a bigger file is not the right one (and reads are bounded).
MAX_BYTES = 16 << 20
#: The rotation used when the project has no config/backup-policy.yaml.
DEFAULT_ROTATION = Rotation()
#: The project's one rotation policy for PIPER.md backups, in config/ (tracked: shared like PIPER.md).
POLICY_FILE = "backup-policy.yaml"
MAX_POLICY_BYTES = 64 << 10


@dataclass(frozen=True)
class Backup:
    """One backup file: where it is, when it was taken (from its name), its size."""

    path: Path
    taken: datetime
    size: int
    private: bool = False
    #: False for the backup a dry run would create.
    exists: bool = True

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class BackupResult:
    """What backup_config did (or, in a dry run, would do)."""

    source: Path
    created: Backup | None
    identical_to: Backup | None
    rotation: RotationPlan[Backup]
    removed: tuple[Path, ...] = ()
    dry_run: bool = False
    findings: tuple[audit.Finding, ...] = field(default=())


@dataclass(frozen=True)
class RestoreResult:
    restored_from: Backup
    changed: bool
    backup_of_current: BackupResult | None


def rotation_policy(project: Project) -> tuple[Rotation, str]:
    """Return the project's rotation policy for PIPER.md backups and where it came from.

    PIPER.md is shared by every environment, so its policy is the project's: config/backup-policy.yaml
    (tracked in git), or the built-in default when the project has none.
    """
    path = project.config_dir / POLICY_FILE
    if not path.exists() and not path.is_symlink():
        return DEFAULT_ROTATION, f"default; config/{POLICY_FILE} not found"
    import yaml

    def fail(key: str, problem: str) -> None:
        raise UsageError(f"config/{POLICY_FILE}: key '{key}' {problem}; fix the file (see docs/BACKUPS.md)")

    try:
        raw = yaml.safe_load(read_regular_file(path, MAX_POLICY_BYTES, what="backup policy", allow_link=False))
    except yaml.YAMLError:
        raise UsageError(f"config/{POLICY_FILE} is not valid YAML; fix the syntax (see docs/BACKUPS.md)") from None
    return policy_from_mapping({} if raw is None else raw, fail), f"config/{POLICY_FILE}"


def list_backups(project: Project, *, private: bool = False) -> list[Backup]:
    """Return the backups in config/ (or private/config-backups/), newest first."""
    directory = _directory(project, private)
    backups = []
    if directory.is_dir():
        for path in directory.iterdir():
            taken = _taken(path.name)
            if taken is not None and path.is_file():
                backups.append(Backup(path, taken, path.stat().st_size, private))
    return sorted(backups, key=lambda b: (b.taken, b.name), reverse=True)


def backup_config(project: Project, policy: Rotation = DEFAULT_ROTATION, *, now: datetime | None = None,
                  dry_run: bool = False, private: bool = False, rules: audit.RuleSet | None = None) -> BackupResult:
    """Back up config/PIPER.md (unless the newest backup is identical), then rotate; return what happened."""
    source = project.config_dir / "PIPER.md"
    for folder in (project.config_dir, _directory(project, True)):
        sweep_partials(folder, "PIPER.md")  # what a backup killed before, at any point, left
    content = _read(source)
    rules = rules if rules is not None else audit.load_rules(project)
    findings = tuple(audit.audit_content(content, rules, "config/PIPER.md"))
    if findings and not private:
        first = findings[0]
        raise PersonalDataRefused(
            f"config/PIPER.md has {len(findings)} audit finding(s) (first: line {first.line}, column {first.column}, "
            f"rule {first.rule}, {first.redacted}), so a backup in config/ would put personal data in git; remove it "
            f"(run `invoke audit-piper-md`) or pass --private to write the backup to {PRIVATE_DIR}/ (git-ignored)"
        )
    if private:
        _check_private_dir(project)
    now = now or datetime.now()
    existing = list_backups(project, private=private)
    if existing and _same(existing[0].path, content):
        plan = plan_rotation([(b.taken, b) for b in existing], policy)
        removed = () if dry_run else _remove(plan.drop)
        return BackupResult(source, None, existing[0], plan, removed, dry_run, findings)
    directory = _directory(project, private)
    if dry_run:
        name = _names(now)[0]
        if (directory / name).exists():
            name = _names(now)[1]
        created = Backup(directory / name, _taken(name) or now, len(content), private, exists=False)
    else:
        if private:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(directory, 0o700)
        created = _write_new(directory, content, now, private, _backup_mode(source, private))
        if created is None:  # a concurrent backup wrote this very content first
            existing = list_backups(project, private=private)
            plan = plan_rotation([(b.taken, b) for b in existing], policy)
            return BackupResult(source, None, existing[0], plan, _remove(plan.drop), dry_run, findings)
    items = [(b.taken, b) for b in existing if b.path != created.path] + [(created.taken, created)]
    plan = plan_rotation(items, policy)
    removed = () if dry_run else _remove(plan.drop)
    return BackupResult(source, created, None, plan, removed, dry_run, findings)


def plan_config_rotation(project: Project, policy: Rotation = DEFAULT_ROTATION) -> RotationPlan[Backup]:
    """Return which backups in config/ the policy keeps and drops (nothing is deleted)."""
    return plan_rotation([(b.taken, b) for b in list_backups(project)], policy)


def restore_config(project: Project, date: str, policy: Rotation = DEFAULT_ROTATION, *, private: bool = False,
                   now: datetime | None = None, rules: audit.RuleSet | None = None) -> RestoreResult:
    """Restore config/PIPER.md from the backup of date (YYYYMMDD or YYYYMMDD-HHMMSS), backing up first."""
    if not re.fullmatch(r"\d{8}(-\d{6})?", date) or _taken(f"PIPER.md.backup-{date}") is None:
        raise UsageError(f"--date {date!r} is not a date; give YYYYMMDD or YYYYMMDD-HHMMSS (see --list)")
    backups = list_backups(project)
    chosen = [b for b in backups if b.name == f"PIPER.md.backup-{date}" or (len(date) == 8 and b.name.startswith(
        f"PIPER.md.backup-{date}"))]
    if not chosen:
        dates = ", ".join(b.name.removeprefix("PIPER.md.backup-") for b in backups) or "none"
        raise UsageError(f"no backup of config/PIPER.md for {date}; available: {dates}")
    backup = chosen[0]
    content = _read(backup.path)
    rules = rules if rules is not None else audit.load_rules(project)
    flagged = audit.audit_content(content, rules, f"config/{backup.name}")
    if flagged:
        raise PersonalDataRefused(
            f"config/{backup.name} has {len(flagged)} audit finding(s), and restoring it would put personal data "
            f"in config/PIPER.md, which git tracks; choose a clean backup (see --list)"
        )
    source = project.config_dir / "PIPER.md"
    if source.exists() and _same(source, content):
        return RestoreResult(backup, False, None)
    before = None
    if source.exists():
        before = backup_config(project, policy, now=now, private=private, rules=rules)
    write_atomic(source, content, mode=_backup_mode(source, False) if source.exists() else 0o644)
    return RestoreResult(backup, True, before)


def _directory(project: Project, private: bool) -> Path:
    return project.root / PRIVATE_DIR if private else project.config_dir


def _taken(name: str) -> datetime | None:
    match = BACKUP_NAME.fullmatch(name)
    if not match:
        return None
    try:
        return datetime.strptime(match.group(1) + (match.group(2) or "000000"), "%Y%m%d%H%M%S")
    except ValueError:
        return None


def _names(now: datetime) -> tuple[str, str]:
    return f"PIPER.md.backup-{now:%Y%m%d}", f"PIPER.md.backup-{now:%Y%m%d-%H%M%S}"


def _read(path: Path) -> bytes:
    """Return the bytes of a PIPER.md or a backup: a regular file of the repository, not a link.

    A link could copy a private file from elsewhere into config/, which git tracks; a FIFO or a
    device would hang or never end; a file too big to be a PIPER.md is not the right one.
    """
    if not path.exists() and not path.is_symlink():
        raise UsageError(f"{path} does not exist; create config/PIPER.md first")
    return read_regular_file(path, MAX_BYTES, what="PIPER.md", allow_link=False)


def _backup_mode(path: Path, private: bool) -> int:
    """Return the mode for a copy of path: 0600 when private, else path's own, never more open than 0644."""
    return 0o600 if private else stat.S_IMODE(os.stat(path).st_mode) & 0o644


def _same(path: Path, content: bytes) -> bool:
    try:
        return path.stat().st_size == len(content) and path.read_bytes() == content
    except OSError:
        return False


def _write_new(directory: Path, content: bytes, now: datetime, private: bool, mode: int) -> Backup | None:
    # Write a temporary file, then hard-link it to the first free name: link() fails if the name
    # exists, so a backup is never overwritten, whoever else is writing one at the same moment.
    # The temporary file is 0600 until complete; one a killed run left is removed by backup_config.
    fd, tmp_name = tempfile.mkstemp(prefix=f".PIPER.md.{os.getpid()}.", suffix=".partial", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
            os.fchmod(handle.fileno(), mode)
        for name in _names(now):
            target = directory / name
            try:
                os.link(tmp_name, target)
            except FileExistsError:
                if _same(target, content):
                    return None
                continue
            fsync_directory(directory)
            return Backup(target, _taken(name) or now, len(content), private)
        raise PiperError(f"{directory / _names(now)[1]} already exists with other content; wait a second and rerun")
    finally:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass


def _remove(drop: list[Backup]) -> tuple[Path, ...]:
    removed = []
    for backup in drop:
        # Only files named like a backup are ever deleted.
        if backup.exists and BACKUP_NAME.fullmatch(backup.name):
            try:
                backup.path.unlink()
            except FileNotFoundError:
                continue
            removed.append(backup.path)
    return tuple(removed)


def _check_private_dir(project: Project) -> None:
    # The private folder must be ignored by git, or a "private" backup would be committed.
    probe = f"{PRIVATE_DIR}/PIPER.md.backup-probe"
    try:
        result = subprocess.run(["git", "check-ignore", "-q", "--no-index", probe], cwd=project.root,
                                capture_output=True, check=False)
    except OSError:
        return  # no git: nothing can be tracked
    if result.returncode == 1:
        raise PersonalDataRefused(
            f"{PRIVATE_DIR}/ is not ignored by git in {project.root}; add 'private/' to .gitignore and rerun"
        )
