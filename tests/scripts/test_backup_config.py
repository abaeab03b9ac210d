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


def test_backup_without_a_policy_file_uses_the_default(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert backup_config.main([]) == 0
    out = capsys.readouterr().out
    assert "backed up config/PIPER.md to config/PIPER.md.backup-" in out
    assert "keep_last=10, keep_daily=7, keep_weekly=4 (default; config/backup-policy.yaml not found)" in out
    assert len(_backups(root)) == 1
    assert backup_config.main([]) == 0
    assert "is identical to config/PIPER.md.backup-" in capsys.readouterr().out
    assert len(_backups(root)) == 1


def _policy(root: Path, text: str) -> None:
    (root / "config" / "backup-policy.yaml").write_text(text)


def test_the_policy_is_the_projects_whatever_the_environment(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The fake profile keeps one backup; the project's policy keeps two: the project's counts, --env or not.
    _policy(root, "keep_last: 2\nkeep_daily: 0\nkeep_weekly: 0\n")
    for old in ("PIPER.md.backup-20240101", "PIPER.md.backup-20240102"):
        (root / "config" / old).write_text(f"{old}\n")
    assert backup_config.main(["--env", "fake", "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert "would back up" in captured.out and "would remove config/PIPER.md.backup-20240101" in captured.out
    assert "would remove config/PIPER.md.backup-20240102" not in captured.out
    assert "(config/backup-policy.yaml)" in captured.out
    assert captured.out.endswith("note: --env fake does not change the rotation of PIPER.md backups: PIPER.md is "
                                 "shared, its policy is config/backup-policy.yaml's\n") and captured.err == ""
    assert _backups(root) == ["PIPER.md.backup-20240101", "PIPER.md.backup-20240102"]
    assert backup_config.main([]) == 0
    assert "remove config/PIPER.md.backup-20240101" in capsys.readouterr().out
    assert len(_backups(root)) == 2 and "PIPER.md.backup-20240102" in _backups(root)


@pytest.mark.parametrize(("text", "problem"), [
    ("keep_last: 2\nauto: daily\n", "key 'auto' is unknown; known keys: keep_last, keep_daily, keep_weekly"),
    ("keep_last: 0\n", "key 'keep_last' must keep at least the newest backup (1 or more)"),
    ("keep_daily: seven\n", "key 'keep_daily' must be a whole number, not str ('seven')"),
    ("keep_last: [1\n", "is not valid YAML; fix the syntax"),
    ("- 1\n", "key '(top level)' must be a mapping"),
])
def test_a_wrong_policy_file_is_refused_and_nothing_is_written(root: Path, capsys: pytest.CaptureFixture[str],
                                                               text: str, problem: str) -> None:
    _policy(root, text)
    assert backup_config.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: config/backup-policy.yaml") and problem in err and len(err.splitlines()) == 1
    assert _backups(root) == []


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
