"""`exported`: a user of the test's own in the shared alpha environment, with hostile preferences, exported to a file."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts import create_test_alpha_user
from tests.support.cli import export_user
from tests.support.databases import set_preferences
from tests.support.fakes import HOSTILE


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
