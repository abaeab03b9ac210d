"""The `project` fixture: a temporary project with dev.yaml and the fake profile, selected by $PIPER_ROOT."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from services.project import CODE_ROOT, Project
from tests.services.audit import FAKE_PROFILE


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    (tmp_path / "environments").mkdir()
    (tmp_path / "config").mkdir()
    shutil.copy(CODE_ROOT / "environments" / "dev.yaml", tmp_path / "environments" / "dev.yaml")
    (tmp_path / "environments" / "fake.yaml").write_text(FAKE_PROFILE)
    monkeypatch.setenv("PIPER_ROOT", str(tmp_path))
    monkeypatch.delenv("PIPER_ENV", raising=False)
    return Project(tmp_path)
