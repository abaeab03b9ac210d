"""scripts/backup_config.py: messages, exit codes, --list, --dry-run, --private."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import backup_config
from services.project import CODE_ROOT
from tests.support.fakes import config_backup_names

_backups = config_backup_names


def test_backup_without_environment_uses_default_policy(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert backup_config.main([]) == 0
    out = capsys.readouterr().out
    assert "backed up config/PIPER.md to config/PIPER.md.backup-" in out and "(default, no environment selected)" in out
    assert len(_backups(root)) == 1
    assert backup_config.main([]) == 0
    assert "is identical to config/PIPER.md.backup-" in capsys.readouterr().out
    assert len(_backups(root)) == 1


def test_dry_run_and_profile_policy(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (root / "config" / "PIPER.md.backup-20240101").write_text("old\n")
    assert backup_config.main(["--env", "fake", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would back up" in out and "would remove config/PIPER.md.backup-20240101" in out and "profile fake" in out
    assert _backups(root) == ["PIPER.md.backup-20240101"]
    assert backup_config.main(["--env", "fake"]) == 0
    assert "remove config/PIPER.md.backup-20240101" in capsys.readouterr().out
    assert len(_backups(root)) == 1 and _backups(root) != ["PIPER.md.backup-20240101"]


def test_list_shows_dates_and_sizes(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (root / "config" / "PIPER.md.backup-20240101-101500").write_text("old\n")
    assert backup_config.main(["--list"]) == 0
    assert "2024-01-01 10:15:00          4  config/PIPER.md.backup-20240101-101500" in capsys.readouterr().out


def test_flagged_is_refused_with_exit_1_then_private(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    (root / ".gitignore").write_text("private/\n")
    (root / "config" / "PIPER.md").write_text("owner zquux\n")
    assert backup_config.main([]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: config/PIPER.md has 1 audit finding(s)") and "zquux" not in err
    assert _backups(root) == []
    assert backup_config.main(["--private"]) == 0
    assert "private/config-backups/PIPER.md.backup-" in capsys.readouterr().out
    assert len(list((root / "private" / "config-backups").iterdir())) == 1


def test_subprocess_backup(root: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PIPER_ENV"} | {"PIPER_ROOT": str(root)}
    run = [sys.executable, str(CODE_ROOT / "scripts" / "backup_config.py")]
    assert subprocess.run(run, env=env, capture_output=True, text=True).returncode == 0
