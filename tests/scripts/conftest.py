"""Fixtures of the script tests: `exported` (a user of the test's own in the shared alpha environment, with
hostile preferences, exported to a file) and `root` (a database-free PIPER.md project)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts import create_test_alpha_user
from tests.support.cli import export_user
from tests.support.databases import set_preferences
from tests.support.fakes import HOSTILE, fake_profile, fake_root


@pytest.fixture
def exported(alpha_env, tmp_path, request) -> tuple[str, Path]:
    profile, project = alpha_env
    name = "xfer-" + str(abs(hash(request.node.nodeid)) % 10**8)
    assert create_test_alpha_user.main(["--username", name, "--env", "alpha"]) == 0
    set_preferences(profile, project, name, HOSTILE)
    result = export_user(project, "alpha", name)
    assert result.returncode == 0, result.stderr
    path = tmp_path / f"{name}.json"
    path.write_bytes(result.stdout)
    return name, path


#: A PIPER.md project whose only profile keeps one backup: what backup-config and restore-config see.
_CONFIG_PROFILE = fake_profile("term: zquux, kind: username", extra="backups: {keep_last: 1, keep_daily: 0, keep_weekly: 0}")


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A database-free project with a generic PIPER.md and one fake profile, selected through $PIPER_ROOT."""
    return fake_root(tmp_path, monkeypatch, _CONFIG_PROFILE, "# generic\n")
