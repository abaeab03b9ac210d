"""The suite's own helpers (tests/support, conftest.py): projects leave no server behind, and a run keeps
everything it makes in one private directory that it removes at the end."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from services.postgres import server_account, servers
from services.profiles import load_profile
from tests.support import temp_root
from tests.support.projects import make_project, remove_servers, set_up


def test_fixture_projects_are_removed(tmp_path) -> None:
    project = make_project(tmp_path / "p")
    profile = load_profile("alpha", project)
    set_up(profile, project)
    data = servers.locate(profile, project).data_dir
    remove_servers(project)
    assert not data.exists()


def test_everything_of_the_run_lives_in_one_private_directory(tmp_path: Path, tmp_path_factory) -> None:
    root = temp_root.current()
    assert root is not None and stat.S_IMODE(root.stat().st_mode) == 0o700
    for inside in (tmp_path, tmp_path_factory.getbasetemp(), Path(tempfile.gettempdir()), Path(os.environ["TMPDIR"]),
                   Path(os.environ["PIPER_YAML_CACHE"])):
        assert inside.is_relative_to(root), inside
    if not server_account.needed():  # as root the templates are the product's cache in /var/lib/piper-ops
        assert Path(os.environ["PIPER_TEMPLATE_CACHE"]).is_relative_to(root)
