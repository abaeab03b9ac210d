"""Dated PIPER.md backups: never overwritten, same-day suffix, identical skipped, rotation, restore, privacy."""

from __future__ import annotations

import stat
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from services import config_backups
from services.errors import PersonalDataRefused, UsageError
from services.profiles import Rotation
from services.project import Project
from tests.support.fakes import fake_profile, fake_root

FAKE_PROFILE = fake_profile("term: Zanzibar Quuxley, kind: name")
DAY = datetime(2025, 3, 14, 9, 30, 0)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    return Project(fake_root(tmp_path, monkeypatch, FAKE_PROFILE, "# generic v1\n"))


def _names(project: Project) -> list[str]:
    return sorted(p.name for p in project.config_dir.glob("PIPER.md.backup-*"))


def test_backup_is_dated_and_identical_content_makes_no_new_file(project: Project) -> None:
    first = config_backups.backup_config(project, now=DAY)
    assert first.created is not None and first.created.name == "PIPER.md.backup-20250314"
    assert (project.config_dir / "PIPER.md.backup-20250314").read_text() == "# generic v1\n"
    again = config_backups.backup_config(project, now=DAY.replace(hour=10))
    assert again.created is None and again.identical_to is not None
    assert _names(project) == ["PIPER.md.backup-20250314"]
    assert not list(project.config_dir.glob(".*.tmp"))


def test_same_day_different_content_gets_a_time_suffix_and_never_overwrites(project: Project) -> None:
    config_backups.backup_config(project, now=DAY)
    (project.config_dir / "PIPER.md").write_text("# generic v2\n")
    result = config_backups.backup_config(project, now=DAY.replace(hour=17, minute=5, second=9))
    assert result.created is not None and result.created.name == "PIPER.md.backup-20250314-170509"
    assert (project.config_dir / "PIPER.md.backup-20250314").read_text() == "# generic v1\n"
    (project.config_dir / "PIPER.md").write_text("# generic v3\n")
    with pytest.raises(Exception, match="already exists"):
        config_backups.backup_config(project, now=DAY.replace(hour=17, minute=5, second=9))
    assert (project.config_dir / "PIPER.md.backup-20250314-170509").read_text() == "# generic v2\n"


def test_rotation_dry_run_changes_nothing_then_rotation_removes(project: Project) -> None:
    for day in range(1, 6):
        (project.config_dir / f"PIPER.md.backup-202503{day:02d}").write_text(f"old {day}\n")
    (project.config_dir / "notes-PIPER.md.backup-20250301.txt").write_text("not a backup\n")
    policy = Rotation(keep_last=2, keep_daily=0, keep_weekly=0)
    dry = config_backups.backup_config(project, policy, now=DAY, dry_run=True)
    assert dry.created is not None and not dry.created.path.exists()
    assert [b.name for b in dry.rotation.drop] == [f"PIPER.md.backup-202503{d:02d}" for d in (4, 3, 2, 1)]
    assert len(_names(project)) == 5
    real = config_backups.backup_config(project, policy, now=DAY)
    assert _names(project) == ["PIPER.md.backup-20250305", "PIPER.md.backup-20250314"]
    assert len(real.removed) == 4
    assert (project.config_dir / "notes-PIPER.md.backup-20250301.txt").exists()


def test_list_backups_newest_first_with_sizes(project: Project) -> None:
    (project.config_dir / "PIPER.md.backup-20250101").write_text("a\n")
    (project.config_dir / "PIPER.md.backup-20250101-120000").write_text("bbb\n")
    listed = config_backups.list_backups(project)
    assert [(b.name, b.size) for b in listed] == [("PIPER.md.backup-20250101-120000", 4), ("PIPER.md.backup-20250101", 2)]


def test_flagged_content_is_refused_or_written_to_private_when_asked(project: Project) -> None:
    subprocess.run(["git", "init", "-q"], cwd=project.root, check=True)
    (project.root / ".gitignore").write_text("private/\n")
    (project.config_dir / "PIPER.md").write_text("owner: Zanzibar\nQuuxley\n")
    with pytest.raises(PersonalDataRefused, match="--private") as refused:
        config_backups.backup_config(project, now=DAY)
    assert "Quuxley" not in str(refused.value)
    assert _names(project) == []
    result = config_backups.backup_config(project, now=DAY, private=True)
    private_dir = project.root / "private" / "config-backups"
    assert result.created is not None and result.created.path == private_dir / "PIPER.md.backup-20250314"
    assert stat.S_IMODE(private_dir.stat().st_mode) == 0o700
    assert _names(project) == []


def test_private_folder_that_git_does_not_ignore_is_refused(project: Project) -> None:
    subprocess.run(["git", "init", "-q"], cwd=project.root, check=True)
    (project.config_dir / "PIPER.md").write_text("owner: Zanzibar Quuxley\n")
    with pytest.raises(PersonalDataRefused, match="not ignored by git"):
        config_backups.backup_config(project, now=DAY, private=True)


def test_restore_backs_up_the_current_file_first(project: Project) -> None:
    (project.config_dir / "PIPER.md.backup-20250101").write_text("# old generic\n")
    result = config_backups.restore_config(project, "20250101", now=DAY)
    assert result.changed and (project.config_dir / "PIPER.md").read_text() == "# old generic\n"
    assert (project.config_dir / "PIPER.md.backup-20250314").read_text() == "# generic v1\n"
    assert not config_backups.restore_config(project, "20250101", now=DAY).changed


def test_restore_errors(project: Project) -> None:
    with pytest.raises(UsageError, match="not a date"):
        config_backups.restore_config(project, "2025-01-01")
    with pytest.raises(UsageError, match="no backup of config/PIPER.md for 20250102"):
        config_backups.restore_config(project, "20250102")
    (project.config_dir / "PIPER.md.backup-20250101").write_text("by Zanzibar Quuxley\n")
    with pytest.raises(PersonalDataRefused, match="restoring it would put personal data"):
        config_backups.restore_config(project, "20250101", now=DAY)
    assert (project.config_dir / "PIPER.md").read_text() == "# generic v1\n"


def test_missing_piper_md_is_a_usage_error(project: Project) -> None:
    (project.config_dir / "PIPER.md").unlink()
    with pytest.raises(UsageError, match="does not exist"):
        config_backups.backup_config(project, now=DAY)


def test_a_linked_piper_md_is_refused_and_a_private_one_stays_private(project: Project, tmp_path: Path) -> None:
    source = project.config_dir / "PIPER.md"
    outside = tmp_path / "elsewhere.md"
    outside.write_text("# generic, but not the repository's\n")
    source.unlink()
    source.symlink_to(outside)
    with pytest.raises(UsageError, match="is a symbolic link"):
        config_backups.backup_config(project, now=DAY)
    assert _names(project) == []
    source.unlink()
    source.write_text("# generic v2\n")
    source.chmod(0o600)
    created = config_backups.backup_config(project, now=DAY).created
    assert created is not None and stat.S_IMODE(created.path.stat().st_mode) == 0o600


def test_a_killed_backups_partial_file_is_removed_by_the_next_backup(project: Project) -> None:
    left = project.config_dir / ".PIPER.md.999999999.abcdefgh.partial"
    left.write_text("# 80 MB, half written\n")
    config_backups.backup_config(project, now=DAY)
    assert not left.exists()
