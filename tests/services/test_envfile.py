"""services/envfile.py: `.env` read and updated in place, every other line kept, always private."""

from __future__ import annotations

import stat
from pathlib import Path

from services import envfile


def test_an_absent_file_is_empty_and_lines_it_does_not_manage_are_read_as_people_write_them(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    assert envfile.read(path) == {}
    path.write_text("# a comment\nexport PIPER_ENV=alpha\n  SPACED = 'quoted value'  \nDOUBLE=\"x=y\"\nnot a line\n"
                    "#PIPER_OLD=commented\nEMPTY=\n")
    assert envfile.read(path) == {"PIPER_ENV": "alpha", "SPACED": "quoted value", "DOUBLE": "x=y", "EMPTY": ""}


def test_update_sets_and_removes_keys_keeps_every_other_line_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("# mine, keep me\nDATABASE_URL=postgresql://x\nPIPER_ENV=dev\nOTHER=1\n")
    path.chmod(0o644)
    envfile.update(path, {"PIPER_ENV": "alpha", "OTHER": None, "PIPER_ALPHA_APP_PASSWORD": "new-secret"})
    assert path.read_text() == ("# mine, keep me\nDATABASE_URL=postgresql://x\nPIPER_ENV=alpha\n"
                                "PIPER_ALPHA_APP_PASSWORD=new-secret\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == [".env"]


def test_a_new_file_says_what_it_holds(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    envfile.update(path, {"PIPER_ENV": "tester", "NOTHING": None})
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# Written by piper-ops") and "never commit" in lines[0]
    assert lines[1:] == ["PIPER_ENV=tester"] and stat.S_IMODE(path.stat().st_mode) == 0o600
