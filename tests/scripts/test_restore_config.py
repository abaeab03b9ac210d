"""scripts/restore_config.py: backs up the current PIPER.md first; messages and exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import restore_config
from services.project import CODE_ROOT
from tests.support.fakes import config_backup_names

_backups = config_backup_names


def test_restore_backs_up_first(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (root / "config" / "PIPER.md.backup-20240101").write_text("# older generic\n")
    assert restore_config.main(["--date", "20240101"]) == 0
    out = capsys.readouterr().out
    assert "backed up config/PIPER.md to" in out and "restored config/PIPER.md from config/PIPER.md.backup-20240101" in out
    assert (root / "config" / "PIPER.md").read_text() == "# older generic\n"
    assert any((root / "config" / n).read_text() == "# generic\n" for n in _backups(root))
    assert restore_config.main(["--date", "1999"]) == 2
    assert capsys.readouterr().err.startswith("error: --date '1999' is not a date")


def test_subprocess_restore(root: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PIPER_ENV"} | {"PIPER_ROOT": str(root)}
    result = subprocess.run([sys.executable, str(CODE_ROOT / "scripts" / "restore_config.py"), "--date", "20000101"],
                            env=env, capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith("error: no backup of config/PIPER.md for 20000101")
